"""benchmarks/learning.py and benchmarks/plot.py: the study table, a real tiny study through the local
process pool and through a local Ray, resuming, failures, peer jobs (peer.run_learning mocked), and
the statistics that the plots and the table show, against numbers computed by hand."""

import csv
import importlib.util
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from script_runner import run_script

from benchmarks import learning, plot

TAGS_OF_A_RUN = {"eval/centralized_episodic_return", "eval/decentralized_episodic_return",
                 "charts/episodic_return", "charts/SPS"}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def study_flags(tmp_path: Path, *flags: str) -> list[str]:
    return [*flags, "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]


def test_the_study_table_expands_to_the_grid_with_its_budgets():
    jobs = learning.expand("lbf")
    assert len(jobs) == 2 * 3 * (3 * 2 + 2) and len({job.name for job in jobs}) == len(jobs)
    for env_id in ("lbforaging:Foraging-8x8-2p-3f-v3", "lbforaging:Foraging-2s-8x8-2p-3f-v3"):
        for seed in (1, 2, 3):
            algos = {job.algo for job in jobs if job.env_id == env_id and job.seed == seed}
            assert algos == {"cadp_qmix", "qmix", "cadp_vdn", "vdn", "cadp_mappo", "mappo", "peer_qmix", "peer_mappo"}
    by_algo = {job.algo: job for job in jobs if job.seed == 1 and "2s" not in job.env_id}
    assert by_algo["cadp_qmix"].budget.total_timesteps == by_algo["peer_qmix"].budget.total_timesteps == 100_000
    assert by_algo["cadp_mappo"].budget.total_timesteps == by_algo["peer_mappo"].budget.total_timesteps == 200_000
    flags = by_algo["cadp_vdn"].flags()
    assert flags[:4] == ["--env-id", "lbforaging:Foraging-8x8-2p-3f-v3", "--seed", "1"]
    assert " --torch-threads 1 --checkpoint-interval 0" in " ".join(flags) and "--no-advice" not in flags
    assert by_algo["vdn"].flags() == [*flags, "--no-advice"] and by_algo["vdn"].script == "cadp_vdn"
    assert by_algo["peer_qmix"].script == learning.PEER and not by_algo["peer_qmix"].advice

    rware = learning.expand("rware")
    assert len(rware) == 3 * 6 and not any(job.script == learning.PEER for job in rware)
    assert all("--buffer-size" in job.flags() for job in rware if job.script in ("cadp_qmix", "cadp_vdn"))
    assert len(learning.expand("mpe")) == 18 and len(learning.expand("smoke")) == 6


def test_seeds_budget_and_only_filters():
    jobs = learning.expand("lbf", seeds=[7], total_timesteps=500, only="Foraging-2s")
    assert len(jobs) == 8
    assert all(job.seed == 7 and job.budget.total_timesteps == 500 and "2s" in job.env_id for job in jobs)
    assert {job.algo for job in learning.expand("lbf", only="qmix")} == {"cadp_qmix", "qmix", "peer_qmix"}
    job = learning.expand("smoke", only="cadp_mappo")[0]
    assert job.signature() != replace(job, budget=replace(job.budget, total_timesteps=300)).signature()


def test_dry_run_lists_the_jobs_longest_first_and_runs_nothing(tmp_path, capsys):
    assert learning.main(study_flags(tmp_path, "--study", "lbf", "--dry-run", "--workers", "2")) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("48 jobs: 0 finished, 48 to run, 6,600,000 env steps; roughly")
    assert "cadp_qmix" in out[0] and "peer_mappo" in out[-2]  # ROUGH_SPS: CADP-QMIX is the slowest
    assert not (tmp_path / "runs").exists()


def check_study_csv(path: Path, algos: set[str]) -> list[dict]:
    rows = read_csv(path)
    assert list(rows[0]) == learning.CSV_COLUMNS
    assert {row["algo"] for row in rows} == algos
    for algo in algos:
        mine = [row for row in rows if row["algo"] == algo]
        assert {row["tag"] for row in mine} == TAGS_OF_A_RUN
        assert {(row["study"], row["env_id"], row["script"], row["seed"]) for row in mine} == \
            {("smoke", "matrix:two_step", "cadp_qmix", "1")}
        assert {row["advice"] for row in mine} == {"true" if algo == "cadp_qmix" else "false"}
        evals = [row for row in mine if row["tag"] == "eval/decentralized_episodic_return"]
        assert max(int(row["step"]) for row in evals) >= 200 and len(evals) >= 3  # every 100 steps and the end
        assert all(0 <= float(row["value"]) <= 8 for row in evals)  # the two-step game's returns
        walls = [float(row["wall_time_s"]) for row in evals]
        assert walls == sorted(walls) and 0 <= walls[0] and walls[-1] < 120
        if algo == "qmix":  # without advice, CADP(C) and CADP(D) are one network: plot.py shows D only
            centralized = [row for row in mine if row["tag"] == "eval/centralized_episodic_return"]
            assert [(r["step"], r["value"]) for r in centralized] == [(r["step"], r["value"]) for r in evals]
    return rows


def test_smoke_study_runs_in_the_process_pool_collects_plots_and_resumes(tmp_path):
    flags = study_flags(tmp_path, "--study", "smoke", "--only", "qmix", "--workers", "2")
    result = run_script("benchmarks/learning", tmp_path, *flags, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 jobs, 0 already finished, running 2 on 2 workers" in result.stdout
    csv_path = tmp_path / "results" / "learning_smoke.csv"
    rows = check_study_csv(csv_path, {"cadp_qmix", "qmix"})
    assert (tmp_path / "results" / "learning_smoke_matrix-two_step_qmix.png").read_bytes()[:4] == b"\x89PNG"
    assert "| cadp_qmix | 1 | 200 |" in (tmp_path / "results" / "learning_smoke.md").read_text()

    job_dirs = {name: tmp_path / "runs" / "smoke" / f"matrix-two_step__{name}__1" for name in ("cadp_qmix", "qmix")}
    markers = {name: (path / "done").stat().st_mtime_ns for name, path in job_dirs.items()}
    result = run_script("benchmarks/learning", tmp_path, *flags, timeout=240)
    assert result.returncode == 0 and "2 already finished, running 0" in result.stdout
    assert {name: (path / "done").stat().st_mtime_ns for name, path in job_dirs.items()} == markers
    assert read_csv(csv_path) == rows

    # an interrupted job (no marker, a half-written run) runs again, from an emptied directory
    (job_dirs["qmix"] / "done").unlink()
    (job_dirs["qmix"] / "runs" / "an_interrupted_run").mkdir()
    result = run_script("benchmarks/learning", tmp_path, *flags[:-4], "--workers", "1", *flags[-4:], timeout=240)
    assert result.returncode == 0 and "1 already finished, running 1" in result.stdout
    assert len(list((job_dirs["qmix"] / "runs").iterdir())) == 1
    assert (job_dirs["cadp_qmix"] / "done").stat().st_mtime_ns == markers["cadp_qmix"]
    check_study_csv(csv_path, {"cadp_qmix", "qmix"})


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the benchmarks extra: "
                    "pip install -r requirements-bench.txt (CI installs it)")
def test_smoke_study_runs_as_tasks_of_a_local_ray(tmp_path):
    flags = study_flags(tmp_path, "--study", "smoke", "--only", "qmix", "--workers", "2", "--ray")
    result = run_script("benchmarks/learning", tmp_path, *flags, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "running 2 on Ray" in result.stdout
    check_study_csv(tmp_path / "results" / "learning_smoke.csv", {"cadp_qmix", "qmix"})


def test_a_failing_script_job_is_reported_with_its_log_and_the_study_exits_non_zero(tmp_path, monkeypatch, capsys):
    bad = replace(learning.SMOKE, flags=("--num-envs", "0"))
    monkeypatch.setitem(learning.BUDGETS, ("cadp_qmix", "matrix"), bad)
    monkeypatch.delitem(sys.modules, "benchmarks.peer", raising=False)
    code = learning.main(study_flags(tmp_path, "--study", "smoke", "--only", "cadp_qmix", "--workers", "1"))
    assert "benchmarks.peer" not in sys.modules  # imported only for studies with peer jobs
    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED matrix-two_step__cadp_qmix__1 (RuntimeError: exit code 2)" in err
    assert "error:" in err and "num-envs" in err  # the script's own message, from the log's tail
    assert not (tmp_path / "runs" / "smoke" / "matrix-two_step__cadp_qmix__1" / "done").exists()


def test_a_run_stopped_by_a_signal_is_not_finished_although_it_exits_0(tmp_path):
    # a stand-in script: what the scripts print when SIGINT stops them (they checkpoint and exit 0)
    (tmp_path / "cadp_qmix.py").write_text("print('stopped by SIGINT at step 120; checkpoint written to ...')\n")
    job = learning.expand("smoke", only="cadp_qmix")[0]
    result = learning.run_job(job, str(tmp_path / "job"), str(tmp_path))
    assert not result["ok"] and "without the final evaluation" in result["error"]
    assert "stopped by SIGINT" in result["log"] and result["rows"] == []
    learning.record(job, tmp_path / "job", result)
    assert not learning.is_finished(job, tmp_path / "job")


def fake_peer(calls: list) -> types.ModuleType:
    """A stand-in for benchmarks/peer.py: writes a TensorBoard run as the real one does (wall times
    from its own start), and fails for MAPPO's seed 2 after printing a line."""
    from torch.utils.tensorboard import SummaryWriter

    def run_learning(algo, env_id, seed, total_timesteps, eval_interval, eval_episodes, run_dir):
        calls.append((algo, env_id, seed, total_timesteps, eval_interval, eval_episodes))
        if (algo, seed) == ("mappo", 2):
            print("pymarlzooplus: training collapsed")
            Path(run_dir).mkdir(parents=True)
            Path(run_dir, "peer.log").write_text("Traceback: the peer's own last words\n")
            raise RuntimeError("peer training failed")
        writer = SummaryWriter(run_dir)
        for step in (0, 100, 200):
            writer.add_scalar("eval/decentralized_episodic_return", seed + step / 100, step, walltime=1000.0 + step / 10)
            writer.add_scalar("losses/loss", 1.0, step, walltime=1000.0 + step / 10)  # not kept
        writer.close()
        Path(run_dir, "done").write_text("")

    module = types.ModuleType("benchmarks.peer")
    module.run_learning = run_learning
    return module


def test_peer_jobs_call_run_learning_with_their_counterparts_budget(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setitem(sys.modules, "benchmarks.peer", fake_peer(calls))
    monkeypatch.setitem(learning.STUDIES, "peers", learning.Study(env_ids=("matrix:two_step",), scripts=(),
                                                                  seeds=(1, 2), peers=("qmix", "mappo")))
    assert learning.main(study_flags(tmp_path, "--study", "peers", "--workers", "1")) == 1
    err = capsys.readouterr().err
    assert "FAILED matrix-two_step__peer_mappo__2 (RuntimeError: peer training failed)" in err
    assert "pymarlzooplus: training collapsed" in err and "Traceback: the peer's own last words" in err
    assert sorted(calls) == [("mappo", "matrix:two_step", 1, 200, 100, 2), ("mappo", "matrix:two_step", 2, 200, 100, 2),
                             ("qmix", "matrix:two_step", 1, 200, 100, 2), ("qmix", "matrix:two_step", 2, 200, 100, 2)]

    rows = read_csv(tmp_path / "results" / "learning_peers.csv")
    assert {(row["algo"], row["seed"]) for row in rows} == {("peer_qmix", "1"), ("peer_qmix", "2"), ("peer_mappo", "1")}
    assert {(row["script"], row["advice"], row["tag"]) for row in rows} == {("peer", "false", "eval/decentralized_episodic_return")}
    seed_2 = [(int(r["step"]), float(r["wall_time_s"]), float(r["value"])) for r in rows if r["algo"] == "peer_qmix" and r["seed"] == "2"]
    assert seed_2 == [(0, 0.0, 2.0), (100, 10.0, 3.0), (200, 20.0, 4.0)]

    calls.clear()  # again: only the failed job runs
    assert learning.main(study_flags(tmp_path, "--study", "peers", "--workers", "1")) == 1
    assert calls == [("mappo", "matrix:two_step", 2, 200, 100, 2)]


def test_collected_scalars_keep_eval_tags_whole_and_thin_the_training_ones(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for step in range(1000):
        writer.add_scalar("charts/episodic_return", step % 2, step, walltime=5000.0 + step)
        writer.add_scalar("losses/td_loss", 1.0, step, walltime=5000.0 + step)
    for step in (0, 500, 999):
        writer.add_scalar("eval/decentralized_episodic_return", step, step, walltime=5000.0 + step)
    writer.close()
    rows = learning.read_scalars(tmp_path)
    assert {tag for tag, *_ in rows} == {"charts/episodic_return", "eval/decentralized_episodic_return"}
    assert [row for row in rows if row[0].startswith("eval/")] == \
        [("eval/decentralized_episodic_return", step, float(step), float(step)) for step in (0, 500, 999)]
    training = [row for row in rows if row[0] == "charts/episodic_return"]
    assert len(training) == learning.TRAINING_POINTS  # 5 steps per bin: the mean of 0 1 0 1 0 or 1 0 1 0 1
    assert {value for *_, value in training} == {0.4, 0.6} and training[-1][1:3] == (999, 999.0)


def test_t_quantiles_and_mean_ci():
    assert [plot.t_975(df) for df in (1, 2, 4, 29, 30, 35, 1000)] == [12.706, 4.303, 2.776, 2.045, 2.042, 2.042, 1.980]
    mean, half = plot.mean_ci(np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]]))
    assert mean.tolist() == [2.0, 5.0] and half == pytest.approx([4.303 / np.sqrt(3), 0.0])
    assert plot.mean_ci(np.array([[4.0]]))[1].tolist() == [0.0]


def write_synthetic_csv(path: Path) -> None:
    """Eval curves at steps 0, 50, 100 (wall time 0.3 s per step) for which the table's numbers are
    easy by hand, and a peer whose seeds evaluated at other steps."""
    curves = {  # (algo, tag, seed): values
        ("cadp_qmix", "eval/decentralized_episodic_return", 1): [0, 4, 1],
        ("cadp_qmix", "eval/decentralized_episodic_return", 2): [0, 2, 2],
        ("cadp_qmix", "eval/decentralized_episodic_return", 3): [0, 3, 3],
        ("cadp_qmix", "eval/centralized_episodic_return", 1): [0, 1, 2],
        ("cadp_qmix", "eval/centralized_episodic_return", 2): [0, 1, 2],
        ("cadp_qmix", "eval/centralized_episodic_return", 3): [0, 1, 2],
        ("qmix", "eval/decentralized_episodic_return", 1): [0, 1, 1],
        ("qmix", "eval/decentralized_episodic_return", 2): [0, 3, 3],
    }
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(learning.CSV_COLUMNS)
        for (algo, tag, seed), values in curves.items():
            for step, value in zip((0, 50, 100), values):
                writer.writerow(["synth", "x:y", algo, "cadp_qmix", str(algo == "cadp_qmix").lower(), seed, tag, step, step * 0.3 * seed, value])
        for seed, steps, slope in ((1, (0, 60, 110), 0.1), (2, (0, 40, 100), 0.2)):
            for step in steps:
                writer.writerow(["synth", "x:y", "peer_qmix", "peer", "false", seed, "eval/decentralized_episodic_return",
                                 step, step * 0.4, step * slope])


def test_plot_writes_the_curves_and_a_table_of_mean_and_95_ci_over_seeds(tmp_path):
    csv_path = tmp_path / "learning_synth.csv"
    write_synthetic_csv(csv_path)
    runs = plot.read_runs(csv_path)
    steps, wall, values = plot.align(runs["x:y", "peer_qmix"]["eval/decentralized_episodic_return"])
    assert steps.tolist() == [0, 40, 60, 100]  # where both seeds have data, interpolated
    assert values.tolist() == [[0, 4, 6, 10], [0, 8, 12, 20]] and wall.tolist() == [[0, 16, 24, 40]] * 2

    result = run_script("benchmarks/plot", tmp_path, str(csv_path), "--machine", "a test machine", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "learning_synth_x-y_qmix.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list(tmp_path.glob("*.png"))) == 1
    table = (tmp_path / "learning_synth.md").read_text()
    assert "Machine: a test machine." in table and "## x:y" in table
    # final (D) per seed 1, 2, 3: mean 2, sd 1, t(2) = 4.303 -> 4.303 / sqrt(3) = 2.484; max (D) 4, 2, 3;
    # final (C) 2, 2, 2; wall time: the last event of seeds 1-3 at 30, 60, 90 s
    assert "| cadp_qmix | 3 | 100 | 2.000 ± 2.484 | 3.000 ± 2.484 | 2.000 ± 0.000 | 60 s |" in table
    # seeds 1 and 3: sd sqrt(2), t(1) = 12.706 -> 12.706; no centralized column for a baseline
    assert "| qmix | 2 | 100 | 2.000 ± 12.706 | 2.000 ± 12.706 |  | 45 s |" in table
    # final 11 and 20 at the seeds' own last steps (110, 100: the steps column shows the largest), sd 9 / sqrt(2),
    # t(1) = 12.706 -> 12.706 * 4.5 = 57.177; wall time 44 and 40 s
    assert "| peer_qmix | 2 | 110 | 15.500 ± 57.177 | 15.500 ± 57.177 |  | 42 s |" in table
    assert table.index("| cadp_qmix |") < table.index("| qmix |") < table.index("| peer_qmix |")
