"""benchmarks/learning.py, studies.py and plot.py: the study table and its pinned signatures, a real tiny study
through the local process pool and through a local Ray, resuming (a stopped study, an interrupted job from its
checkpoint, a job carried to another clone), failures, peer jobs (peer.run_learning mocked), and the statistics that
the plots and the table show, against numbers computed by hand. The ablation: its arms, a study stopped and resumed in
a fresh clone (results/ only), its paired differences."""

import csv
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import run_script

from benchmarks import learning, plot, studies

TAGS_OF_A_RUN = {
    "eval/centralized_episodic_return",
    "eval/decentralized_episodic_return",
    "charts/episodic_return",
    "charts/SPS",
}
ADVICE_TAGS = {"charts/self_attention_weight", "charts/prune_coef", "losses/prune_loss"}  # logged by advice runs
# the Q-learning scripts' losses that the study keeps (learning.KEPT_TAGS), logged once training has begun
Q_LOSS_TAGS = {"losses/td_loss", "losses/q_values", "losses/target_q_values", "losses/grad_norm"}


def read_csv(path: Path) -> list[dict]:
    with plot.open_csv(path) as f:
        return list(csv.DictReader(f))


def study_flags(tmp_path: Path, *flags: str) -> list[str]:
    return [*flags, "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]


def test_the_study_table_expands_to_the_grid_with_its_budgets():
    jobs = studies.expand("lbf")
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
    assert by_algo["peer_qmix"].script == studies.PEER and not by_algo["peer_qmix"].advice

    rware = studies.expand("rware")
    assert len(rware) == 3 * 6 and not any(job.script == studies.PEER for job in rware)
    assert all("--buffer-size" in job.flags() for job in rware if job.script in ("cadp_qmix", "cadp_vdn"))
    assert len(studies.expand("mpe")) == 18 and len(studies.expand("smoke")) == 6


def test_seeds_budget_and_only_filters():
    jobs = studies.expand("lbf", seeds=[7], total_timesteps=500, only="Foraging-2s")
    assert len(jobs) == 8
    assert all(job.seed == 7 and job.budget.total_timesteps == 500 and "2s" in job.env_id for job in jobs)
    assert {job.algo for job in studies.expand("lbf", only="qmix")} == {"cadp_qmix", "qmix", "peer_qmix"}
    job = studies.expand("smoke", only="cadp_mappo")[0]
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
        assert {row["tag"] for row in mine} == TAGS_OF_A_RUN | Q_LOSS_TAGS | (
            ADVICE_TAGS if algo == "cadp_qmix" else set()
        )
        assert {(row["study"], row["env_id"], row["script"], row["seed"]) for row in mine} == {
            ("smoke", "matrix:two_step", "cadp_qmix", "1")
        }
        assert {row["advice"] for row in mine} == {"true" if algo == "cadp_qmix" else "false"}
        evals = [row for row in mine if row["tag"] == "eval/decentralized_episodic_return"]
        assert max(int(row["step"]) for row in evals) >= 200 and len(evals) >= 3  # every 100 steps and the end
        assert all(0 <= float(row["value"]) <= 8 for row in evals)  # the two-step game's returns
        walls = [float(row["wall_time_s"]) for row in evals]
        # seconds since the run's start, not epoch times (a loose bound: loaded machines are slow)
        assert walls == sorted(walls) and 0 <= walls[0] and walls[-1] < 3600
        if algo == "qmix":  # without advice, CADP(C) and CADP(D) are one network: plot.py shows D only
            centralized = [row for row in mine if row["tag"] == "eval/centralized_episodic_return"]
            assert [(r["step"], r["value"]) for r in centralized] == [(r["step"], r["value"]) for r in evals]
    return rows


def test_smoke_study_runs_in_the_process_pool_collects_plots_and_resumes(tmp_path):
    flags = study_flags(tmp_path, "--study", "smoke", "--only", "qmix", "--workers", "2")
    result = run_script("benchmarks/learning", tmp_path, *flags, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 jobs, 0 already finished, running 2 on 2 workers" in result.stdout
    csv_path = tmp_path / "results" / "learning_smoke.csv.gz"
    rows = check_study_csv(csv_path, {"cadp_qmix", "qmix"})
    assert (tmp_path / "results" / "learning_smoke_matrix-two_step_qmix.png").read_bytes()[:4] == b"\x89PNG"
    assert "| cadp_qmix | 1 | 200 |" in (tmp_path / "results" / "learning_smoke.md").read_text()

    job_dirs = {name: tmp_path / "runs" / "smoke" / f"matrix-two_step__{name}__1" for name in ("cadp_qmix", "qmix")}
    markers = {name: (path / "done").stat().st_mtime_ns for name, path in job_dirs.items()}
    result = run_script("benchmarks/learning", tmp_path, *flags, timeout=240)
    assert result.returncode == 0 and "2 already finished, running 0" in result.stdout
    assert {name: (path / "done").stat().st_mtime_ns for name, path in job_dirs.items()} == markers
    assert read_csv(csv_path) == rows

    # an interrupted job (no marker, a half-written run, not in the manifest) runs again, from an emptied directory
    (job_dirs["qmix"] / "done").unlink()
    manifest_path = tmp_path / "results" / "learning_smoke.jobs.json"
    assert list(json.loads(manifest_path.read_text())) == ["matrix-two_step__cadp_qmix__1", "matrix-two_step__qmix__1"]
    manifest_path.unlink()  # cadp_qmix: finished by its marker alone
    (job_dirs["qmix"] / "runs" / "an_interrupted_run").mkdir()
    result = run_script("benchmarks/learning", tmp_path, *flags[:-4], "--workers", "1", *flags[-4:], timeout=240)
    assert result.returncode == 0 and "1 already finished, running 1" in result.stdout
    assert len(list((job_dirs["qmix"] / "runs").iterdir())) == 1
    assert (job_dirs["cadp_qmix"] / "done").stat().st_mtime_ns == markers["cadp_qmix"]
    check_study_csv(csv_path, {"cadp_qmix", "qmix"})


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="needs the benchmarks extra: pip install -r requirements-bench.txt (CI installs it)",
)
def test_smoke_study_runs_as_tasks_of_a_local_ray(tmp_path):
    flags = study_flags(tmp_path, "--study", "smoke", "--only", "qmix", "--workers", "2", "--ray")
    result = run_script("benchmarks/learning", tmp_path, *flags, timeout=600)  # Ray starts slowly on a loaded machine
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "running 2 on Ray" in result.stdout
    check_study_csv(tmp_path / "results" / "learning_smoke.csv.gz", {"cadp_qmix", "qmix"})


def test_a_failing_script_job_is_reported_with_its_log_and_the_study_exits_non_zero(tmp_path, monkeypatch, capsys):
    bad = replace(studies.SMOKE, flags=("--num-envs", "0"))
    monkeypatch.setitem(studies.BUDGETS, ("cadp_qmix", "matrix"), bad)
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
    job = studies.expand("smoke", only="cadp_qmix")[0]
    result = learning.run_job(job, str(tmp_path / "job"), str(tmp_path))
    assert not result["ok"] and "without the final evaluation" in result["error"]
    assert "stopped by SIGINT" in result["log"] and result["rows"] == []
    learning.record(job, tmp_path / "job", result)
    assert not learning.is_finished(job, tmp_path / "job")


@pytest.fixture
def checkpointing_job(monkeypatch) -> studies.Job:
    """The smoke study's CADP-QMIX, long enough to be killed after a checkpoint: the job of a study `checkpointing`."""
    budget = replace(studies.SMOKE, total_timesteps=4_000, eval_interval=1_000)
    study = studies.Study(
        env_ids=("matrix:two_step",), scripts=("cadp_qmix",), seeds=(1,), budgets={("cadp_qmix", "matrix"): budget}
    )
    monkeypatch.setitem(studies.STUDIES, "checkpointing", replace(study, checkpoint_interval=500))
    return studies.expand("checkpointing", only="cadp_qmix")[0]


def killed_after_a_checkpoint(job: studies.Job, job_dir: Path) -> list[Path]:
    """The job started in job_dir and SIGKILLed (a machine that went away) once it has written a checkpoint.
    Returns its checkpoints."""
    learning.start_job_dir(job, job_dir)
    script = subprocess.Popen(
        [sys.executable, str(learning.ROOT / "cadp_qmix.py"), *job.flags()],
        cwd=job_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while (
        not list(job_dir.glob("runs/*/checkpoints/*.cadp_model")) and time.time() < deadline and script.poll() is None
    ):
        time.sleep(0.05)
    script.send_signal(signal.SIGKILL)  # no chance to write a last checkpoint
    script.wait()
    checkpoints = list(job_dir.glob("runs/*/checkpoints/*.cadp_model"))
    assert checkpoints and not (job_dir / "done").exists()
    return checkpoints


def test_an_interrupted_job_resumes_from_its_checkpoint(tmp_path, checkpointing_job):
    """A job killed mid-run continues from its newest periodic checkpoint when the study is rerun, in the same run
    directory, and ends as a whole run would; a job dir of another signature, or of a job without checkpoints,
    starts over."""
    job, job_dir = checkpointing_job, tmp_path / "job"
    checkpoints = killed_after_a_checkpoint(job, job_dir)
    base = studies.expand("smoke", only="cadp_qmix")[0]
    run_dir = checkpoints[0].parent.parent
    assert learning.resumable_run(job, job_dir) == str(run_dir.relative_to(job_dir))
    assert learning.resumable_run(base, job_dir) is None  # another signature
    assert learning.resumable_run(replace(job, checkpoint_interval=0), job_dir) is None

    result = learning.run_job(job, str(job_dir), str(learning.ROOT))
    assert result["ok"], result["log"][-2000:]
    assert f"--resume {run_dir.relative_to(job_dir)}" in result["log"]
    assert sorted(p.name for p in (job_dir / "runs").iterdir()) == [run_dir.name]  # the same run, continued
    eval_steps = {step for tag, step, _, _ in result["rows"] if tag == "eval/decentralized_episodic_return"}
    assert max(eval_steps) >= 4_000 and min(eval_steps) < 1_000  # the run's whole curve, before and after the kill

    # the run ended but its driver stopped before recording it (no done marker): collected as it is, not retrained
    assert not (job_dir / "done").exists()
    again = learning.run_job(job, str(job_dir), str(learning.ROOT))
    assert again["ok"] and again["rows"] == result["rows"], again["log"][-2000:]
    assert again["log"].count("$ python") == result["log"].count("$ python")  # no script started
    assert again["log"].endswith("collected without training\n")


def test_an_unfinished_job_is_carried_to_another_clone_and_its_checkpoint_deleted_once_it_finished(
    tmp_path, monkeypatch, checkpointing_job
):
    """--export-checkpoints copies an unfinished job's newest checkpoint and its rows so far into the results (for
    git, with add -f); a clone with those results only continues the job from there, its rows are the whole run's,
    and once it has finished, its carried folder is deleted."""
    job, here, elsewhere = checkpointing_job, tmp_path / "here", tmp_path / "elsewhere"  # two clones
    job_dir = here / "runs" / "checkpointing" / job.name
    killed_after_a_checkpoint(job, job_dir)
    step, _ = learning.newest_checkpoint(job_dir, learning.resumable_run(job, job_dir))
    monkeypatch.setattr(learning, "CARRY_MAX_BYTES", 1)  # a checkpoint that holds a replay buffer stays
    (refused,) = learning.export_checkpoints([job], {job: job_dir}, here / "results")
    assert "not carried" in refused and not (here / "results" / "checkpoints").exists()
    monkeypatch.setattr(learning, "CARRY_MAX_BYTES", 64 << 20)
    monkeypatch.setattr(plot, "make_report", lambda *args, **kwargs: [])  # the report is tested elsewhere
    flags = ["--study", "checkpointing", "--only", "cadp_qmix", "--workers", "1"]
    assert learning.main([*flags, *study_flags(here), "--export-checkpoints"]) == 0
    carried = learning.carry_dir(here / "results", job)
    assert (carried / f"step_{step}.cadp_model").exists()
    carried_rows = learning.read_rows(carried / "scalars.csv")
    assert carried_rows and max(s for _, s, _, _ in carried_rows) <= step

    # a clone whose own run got as far keeps it; a carried job of other flags is not continued from
    own = sorted(job_dir.rglob("*"))
    learning.import_carried(job, job_dir, here / "results")
    assert sorted(job_dir.rglob("*")) == own and not (job_dir / "carried").exists()
    other_flags = replace(job, budget=replace(job.budget, total_timesteps=5_000))
    learning.import_carried(other_flags, tmp_path / "other", here / "results")
    assert not (tmp_path / "other").exists()

    shutil.copytree(here / "results", elsewhere / "results")  # the next clone: the results, no job directory
    assert learning.main([*flags, *study_flags(elsewhere)]) == 0
    log = (elsewhere / "runs" / "checkpointing" / job.name / "log.txt").read_text()
    assert log.startswith(f"carried from another clone at step {step}") and "--resume" in log
    csv_rows = read_csv(elsewhere / "results" / "learning_checkpointing.csv.gz")
    rows = [(row["tag"], int(row["step"]), float(row["wall_time_s"]), float(row["value"])) for row in csv_rows]
    assert rows[: len(carried_rows)] == carried_rows  # the carried part as it was
    evals = [(s, wall) for tag, s, wall, _ in rows if tag == "eval/decentralized_episodic_return"]
    assert min(s for s, _ in evals) < step < max(s for s, _ in evals) == 4_000
    walls = [wall for _, wall in sorted(evals)]
    assert walls == sorted(walls)  # running time counted on from the carried part's
    assert not learning.carry_dir(elsewhere / "results", job).exists()  # its rows are in the CSV


def test_a_carried_checkpoint_of_a_job_finished_elsewhere_is_deleted_by_the_next_call(tmp_path, monkeypatch, capsys):
    """Results copied in from the clone where a carried job finished leave its carried folder behind (as a commit
    still holds it): the next call of the study deletes it, without running the job; a dry run touches nothing."""
    monkeypatch.setattr(learning, "run_job", fake_ablation_job([], tmp_path / "results" / "learning_smoke.csv.gz"))
    monkeypatch.setattr(plot, "make_report", lambda *args, **kwargs: [])
    flags = study_flags(tmp_path, "--study", "smoke", "--only", "qmix", "--workers", "1")
    assert learning.main(flags) == 0
    shutil.rmtree(tmp_path / "runs")  # the results only, as committed
    job = studies.expand("smoke", only="cadp_qmix")[0]
    carried = learning.carry_dir(tmp_path / "results", job)
    carried.mkdir(parents=True)
    (carried / "carried").write_text(json.dumps({"signature": job.signature(), "run": "a_run", "step": 100}))
    assert learning.main([*flags, "--dry-run"]) == 0 and carried.exists()
    calls = []
    monkeypatch.setattr(learning, "run_job", fake_ablation_job(calls, tmp_path / "results" / "learning_smoke.csv.gz"))
    assert learning.main(flags) == 0
    assert calls == [] and not carried.exists() and "2 already finished, running 0" in capsys.readouterr().out


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
            writer.add_scalar(
                "eval/decentralized_episodic_return", seed + step / 100, step, walltime=1000.0 + step / 10
            )
            writer.add_scalar("losses/loss", 1.0, step, walltime=1000.0 + step / 10)  # not kept
        writer.close()
        Path(run_dir, "done").write_text("")

    module = types.ModuleType("benchmarks.peer")
    module.run_learning = run_learning
    return module


def test_peer_jobs_call_run_learning_with_their_counterparts_budget(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setitem(sys.modules, "benchmarks.peer", fake_peer(calls))
    monkeypatch.setitem(
        studies.STUDIES,
        "peers",
        studies.Study(env_ids=("matrix:two_step",), scripts=(), seeds=(1, 2), peers=("qmix", "mappo")),
    )
    assert learning.main(study_flags(tmp_path, "--study", "peers", "--workers", "1")) == 1
    err = capsys.readouterr().err
    assert "FAILED matrix-two_step__peer_mappo__2 (RuntimeError: peer training failed)" in err
    assert "pymarlzooplus: training collapsed" in err and "Traceback: the peer's own last words" in err
    assert sorted(calls) == [
        ("mappo", "matrix:two_step", 1, 200, 100, 2),
        ("mappo", "matrix:two_step", 2, 200, 100, 2),
        ("qmix", "matrix:two_step", 1, 200, 100, 2),
        ("qmix", "matrix:two_step", 2, 200, 100, 2),
    ]

    rows = read_csv(tmp_path / "results" / "learning_peers.csv.gz")
    assert {(row["algo"], row["seed"]) for row in rows} == {("peer_qmix", "1"), ("peer_qmix", "2"), ("peer_mappo", "1")}
    assert {(row["script"], row["advice"], row["tag"]) for row in rows} == {
        ("peer", "false", "eval/decentralized_episodic_return")
    }
    seed_2 = [
        (int(r["step"]), float(r["wall_time_s"]), float(r["value"]))
        for r in rows
        if r["algo"] == "peer_qmix" and r["seed"] == "2"
    ]
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
        writer.add_scalar("losses/clipfrac", 0.1, step, walltime=5000.0 + step)  # not kept
    for step in (0, 500, 999):
        writer.add_scalar("eval/decentralized_episodic_return", step, step, walltime=5000.0 + step)
    writer.close()
    rows = learning.read_scalars(tmp_path)
    assert {tag for tag, *_ in rows} == {
        "charts/episodic_return",
        "losses/td_loss",
        "eval/decentralized_episodic_return",
    }
    assert [row for row in rows if row[0].startswith("eval/")] == [
        ("eval/decentralized_episodic_return", step, float(step), float(step)) for step in (0, 500, 999)
    ]
    training = [row for row in rows if row[0] == "charts/episodic_return"]
    assert len(training) == learning.TRAINING_POINTS  # 5 steps per bin: the mean of 0 1 0 1 0 or 1 0 1 0 1
    assert {value for *_, value in training} == {0.4, 0.6} and training[-1][1:3] == (999, 999.0)
    assert len([row for row in rows if row[0] == "losses/td_loss"]) == learning.TRAINING_POINTS


def test_wall_times_leave_out_the_time_a_run_was_stopped_or_paused(tmp_path):
    """A run stopped at step 80 (its last checkpoint at step 60), resumed 2 hours later from that checkpoint,
    and paused 10 minutes at step 150: its wall times are those of one uninterrupted run at 1 step a second."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    for step in range(81):
        writer.add_scalar("eval/decentralized_episodic_return", step, step, walltime=1000.0 + step)
    writer.close()
    resumed_at = 1000.0 + 80 + 7200
    writer = SummaryWriter(str(tmp_path), purge_step=61)  # as common/logger.py does: steps 61-80 are redone
    for step in range(61, 201):
        pause = 600.0 if step > 150 else 0.0
        writer.add_scalar("eval/decentralized_episodic_return", step, step, walltime=resumed_at + step - 61 + pause)
    writer.close()
    rows = learning.read_scalars(tmp_path)
    assert [step for _, step, _, _ in rows] == list(range(201))  # the redone steps once, from the resumed run
    # the second between the last event before each silence and the first after it goes with the silence
    assert [wall for _, _, wall, _ in rows] == [float(step - (step > 60) - (step > 150)) for step in range(201)]


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
                advice = str(algo == "cadp_qmix").lower()
                writer.writerow(["synth", "x:y", algo, "cadp_qmix", advice, seed, tag, step, step * 0.3 * seed, value])
        for seed, steps, slope in ((1, (0, 60, 110), 0.1), (2, (0, 40, 100), 0.2)):
            for step in steps:
                tag = "eval/decentralized_episodic_return"
                writer.writerow(
                    ["synth", "x:y", "peer_qmix", "peer", "false", seed, tag, step, step * 0.4, step * slope]
                )


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

    # paired by seed (1 and 2): final (D) 1-1, 2-3; no breakpoint known: (C) at the last eval, 2-1, 2-3
    assert "| `cadp_qmix` − `qmix` | return | 0.000 ± 12.706 (2) | -0.500 ± 6.353 (2) |" in table
    assert "Win rate" not in table  # this env reports no wins


def test_a_study_with_wins_plots_and_tables_the_win_rates_and_pairs_them_at_the_breakpoint(tmp_path):
    csv_path = tmp_path / "learning_wins.csv.gz"
    curves = {  # (algo, tag, seed): values at steps 0, 50, 100
        ("cadp_qmix", plot.DECENTRALIZED, 1): [0, 1, 2],
        ("cadp_qmix", plot.DECENTRALIZED, 2): [0, 1, 4],
        ("cadp_qmix", plot.CENTRALIZED, 1): [0, 2, 2],
        ("cadp_qmix", plot.CENTRALIZED, 2): [0, 2, 4],
        ("cadp_qmix", plot.DECENTRALIZED_WINS, 1): [0.0, 0.25, 0.5],
        ("cadp_qmix", plot.DECENTRALIZED_WINS, 2): [0.0, 0.5, 0.75],
        ("cadp_qmix", plot.CENTRALIZED_WINS, 1): [0.0, 0.75, 0.5],
        ("cadp_qmix", plot.CENTRALIZED_WINS, 2): [0.0, 0.75, 0.75],
        ("cadp_qmix", plot.SELF_WEIGHT, 1): [0.5, 0.5, 0.9],
        ("cadp_qmix", plot.SELF_WEIGHT, 2): [0.5, 0.5, 0.9],
        ("qmix", plot.DECENTRALIZED, 1): [0, 1, 1],
        ("qmix", plot.DECENTRALIZED, 2): [0, 1, 3],
        ("qmix", plot.DECENTRALIZED_WINS, 1): [0.0, 0.25, 0.25],
        ("qmix", plot.DECENTRALIZED_WINS, 2): [0.0, 0.25, 0.25],
    }
    with plot.open_csv(csv_path, "wt") as f:
        writer = csv.writer(f)
        writer.writerow(learning.CSV_COLUMNS)
        for (algo, tag, seed), values in curves.items():
            for step, value in zip((0, 50, 100), values):
                writer.writerow(["wins", "x:y", algo, "cadp_qmix", algo == "cadp_qmix", seed, tag, step, step, value])
    manifest = {  # pruning from step 60 of 100: (C) at the breakpoint is the eval at 50
        f"x-y__cadp_qmix__{seed}": {
            "signature": json.dumps(
                ["cadp_qmix.py", "--env-id", "x:y", "--seed", str(seed), "--total-timesteps", "100"]
                + ["--prune-start-fraction", "0.6"]
            ),
            "finished": True,
        }
        for seed in (1, 2)
    }
    (tmp_path / "learning_wins.jobs.json").write_text(json.dumps(manifest))
    written = plot.make_report(csv_path, machine="m", planned=6)
    assert [path.name for path in written] == ["learning_wins_x-y_qmix.png", "learning_wins.md"]
    png = written[0].read_bytes()
    assert png[:4] == b"\x89PNG" and int.from_bytes(png[20:24], "big") == 840  # two rows: returns; wins, c_ii
    table = written[1].read_text()
    assert "Runs in: 4 of 6 planned." in table
    # win rates: final (D) 0.5, 0.75 (sd 0.177, t(1) = 12.706 -> 1.588); max (C) 0.75, 0.75
    assert "| cadp_qmix | 2 | 0.625 ± 1.588 | 0.625 ± 1.588 | 0.625 ± 1.588 | 0.750 ± 0.000 |" in table
    assert "| qmix | 2 | 0.250 ± 0.000 | 0.250 ± 0.000 |  |  |" in table
    # (C) at step 50 minus qmix at 50: 2-1, 2-1; final (D): 2-1, 4-3
    assert "| `cadp_qmix` − `qmix` | return | 1.000 ± 0.000 (2) | 1.000 ± 0.000 (2) |" in table
    # win rates at 50: 0.75-0.25 twice; final: 0.5-0.25, 0.75-0.25 (sd 0.177 -> 1.588)
    assert "| `cadp_qmix` − `qmix` | win rate | 0.500 ± 0.000 (2) | 0.375 ± 1.588 (2) |" in table


# ---- The ablation ---------------------------------------------------------------------------------
ARM_FLAGS = {  # the flags after the budget's, by arm
    "rnn": ["--no-advice", "--advice-placement", "post-gru", "--prune-start-fraction", "0.67"],
    "gru": ["--no-advice", "--advice-placement", "gru-input", "--prune-start-fraction", "0.67"],
    "post_gru": ["--advice-placement", "post-gru", "--prune-start-fraction", "0.67"],
    "gru_input": ["--advice-placement", "gru-input", "--prune-start-fraction", "0.67"],
    "post_gru_eq3": ["--advice-placement", "post-gru", "--prune-loss-scale", "eq3", "--prune-start-fraction", "0.67"],
    "post_gru_noprune": ["--advice-placement", "post-gru", "--prune-start-fraction", "1"],
}


def test_the_smax_study_runs_the_papers_items_in_order_with_the_release_schedules(capsys):
    jobs = studies.expand("smax")
    items = [(job.env_id, job.script, job.seed) for job in jobs[::2]]
    assert items == [("smax:5m_vs_6m", "cadp_qmix", s) for s in (1, 2, 3)] + [
        ("smax:5m_vs_6m", "cadp_vdn", s) for s in (1, 2, 3)
    ] + [("smax:3s5z_vs_3s6z", "cadp_qmix", s) for s in (1, 2, 3)] + [
        ("smax:5m_vs_6m", "cadp_mappo", s) for s in (1, 2, 3)
    ] + [("smax:5m_vs_6m", "cadp_qmix", s) for s in (4, 5)]
    assert [job.advice for job in jobs] == [True, False] * 14 and len({job.name for job in jobs}) == 28

    def flag(job, name):
        flags = job.flags()
        return flags[flags.index(name) + 1]

    for job in jobs:
        assert flag(job, "--checkpoint-interval") == "50000"  # so an interrupted run continues
        steps, epsilon, prune = {
            ("smax:5m_vs_6m", "cadp_qmix"): ("1050000", "50000", "0.6667"),
            ("smax:5m_vs_6m", "cadp_vdn"): ("1050000", "50000", "0.6667"),
            ("smax:3s5z_vs_3s6z", "cadp_qmix"): ("500000", "62500", "0.75"),  # below the paper's 4M: learning.py
            ("smax:5m_vs_6m", "cadp_mappo"): ("3000000", None, "0.6"),  # below the release's 10M: learning.py
        }[job.env_id, job.script]
        assert flag(job, "--total-timesteps") == steps and flag(job, "--prune-start-fraction") == prune
        assert ("--exploration-steps" in job.flags()) == (epsilon is not None)
        if epsilon:
            assert flag(job, "--exploration-steps") == epsilon
            # the scripts' default: the buffer (GiBs) is left out of the checkpoints, which hold the actions taken,
            # replayed on resume; small enough to carry to another clone (--export-checkpoints)
            assert "--checkpoint-buffer-max-mb" not in job.flags() and "--exploration-steps" in job.signature()
        if job.script == "cadp_mappo":  # the release's rollouts: 8 envs x 400 steps, one minibatch
            assert [flag(job, name) for name in ("--num-envs", "--num-steps", "--num-minibatches")] == ["8", "400", "1"]
    assert [job.seed for job in studies.expand("smax", seeds=[7])[::2]] == [7] * 4  # one per item's (env, script)
    assert (
        learning.main(["--study", "smax", "--dry-run", "--runs-dir", "/nonexistent", "--results-dir", "/nonexistent"])
        == 0
    )
    assert "28 jobs: 0 finished, 28 to run" in capsys.readouterr().out


def test_the_ablation_expands_to_its_arms_script_by_script_then_seed_by_seed(tmp_path, capsys):
    jobs = studies.expand("ablation")
    assert len(jobs) == 2 * 2 * 6 * 5 and len({job.name for job in jobs}) == len(jobs)
    assert [job.script for job in jobs] == ["cadp_qmix"] * 60 + ["cadp_mappo"] * 60
    assert [job.seed for job in jobs] == [seed for _ in range(2) for seed in range(1, 6) for _ in range(12)]
    tasks = ("lbforaging:Foraging-2s-10x10-3p-3f-v3", studies.ABLATION_SMAX)
    for base, first in (("qmix", jobs[:12]), ("mappo", jobs[60:72])):
        labels = [f"{base}_rnn", f"{base}_gru", *(f"cadp_{base}_{arm}" for arm in list(ARM_FLAGS)[2:])]
        assert [(job.env_id, job.algo) for job in first] == [(env_id, label) for env_id in tasks for label in labels]
    for job in jobs:
        arm = job.algo.removeprefix("cadp_").split("_", 1)[1]
        flags = job.flags()
        assert flags[flags.index("--checkpoint-interval") + 2 :] == ARM_FLAGS[arm]
        assert job.advice == job.algo.startswith("cadp_") and job.advice == ("--no-advice" not in flags)
        assert job.budget == studies.ABLATION_BUDGETS[job.script, studies.env_family(job.env_id)]
        assert flags[flags.index("--total-timesteps") + 1] == str(job.budget.total_timesteps)
    assert len(studies.expand("ablation", only="__cadp_qmix_post_gru__")) == 10  # --only picks an arm
    assert {job.algo for job in studies.expand("ablation", only="mappo_rnn")} == {"mappo_rnn"}

    # the dry run keeps the study's order (not longest first)
    assert learning.main(study_flags(tmp_path, "--study", "ablation", "--dry-run", "--workers", "2")) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[:-1]] == [job.name for job in jobs]
    assert out[-1].startswith("120 jobs: 0 finished, 120 to run")


def test_the_committed_studies_keep_their_job_names_and_signatures():
    """The committed results (and runs going on elsewhere) are recognised by these: a study whose jobs' names or
    signatures change reruns every job, so a change here must be deliberate."""
    pinned = {
        "lbf": "4406dc1b501514a5",
        "qplex": "b6dc7625d74746cb",
        "rware": "12537eaa0b1f375a",
        "mpe": "c6d264c673ea87ee",
        "smoke": "6f1ae3628236a249",
        "ablation": "ed0d4fcbf8172a52",
        "smax": "b25722f0e1873b5b",
        "smac_scale": "1e4346277296447f",  # since SMAC's state normalisation joined its reward scale
        "grf": "a970eb87f2b76c37",
    }
    for study, digest in pinned.items():
        text = "\n".join(f"{job.name} {job.signature()}" for job in studies.expand(study))
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == digest, study
    flags = "--env-id matrix:two_step --seed 1 --total-timesteps 200 --eval-interval 100 --eval-episodes 2"
    flags += " --torch-threads 1 --checkpoint-interval 0 --num-envs 2"
    assert studies.expand("smoke")[0].signature() == json.dumps(["cadp_qmix.py", *flags.split()])


def fake_ablation_job(calls: list, csv_path: Path, stop_at: int | None = None):
    """A stand-in for run_job: eval and training curves whose values say which job and which call made them.
    It checks that the CSV holds the calls before it (written after each job), and stops the study with
    KeyboardInterrupt at call `stop_at`, as Ctrl-C does."""

    def run_job(job, job_dir=None, root=None):
        calls.append(job.name)
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        if len(calls) > 1:
            assert {(row["algo"], row["seed"]) for row in read_csv(csv_path)} >= {tuple(calls[-2].split("__")[1:])}
        value = float(len(calls))
        tags = ("eval/decentralized_episodic_return", "eval/centralized_episodic_return", "charts/episodic_return")
        rows = [(tag, step, step / 100, value) for step in (0, 100, 200) for tag in tags]
        if job.advice:
            rows += [("charts/self_attention_weight", step, step / 100, 0.5) for step in (50, 150)]
            rows += [("charts/prune_coef", 50, 0.5, 0.0), ("charts/prune_coef", 150, 1.5, 0.5)]
        return {"ok": True, "error": None, "rows": rows, "log": "fake\n", "seconds": 1.0}

    return run_job


def test_a_call_with_other_seeds_reports_the_runs_in_out_of_the_whole_plan(tmp_path, monkeypatch):
    csv_path = tmp_path / "results" / "learning_ablation-smoke.csv.gz"
    monkeypatch.setattr(learning, "run_job", fake_ablation_job([], csv_path))
    flags = study_flags(tmp_path, "--study", "ablation-smoke", "--workers", "1")
    assert learning.main(flags) == 0  # the plan's seed 1: 2 arms x 2 scripts
    table = (tmp_path / "results" / "learning_ablation-smoke.md").read_text()
    assert f"Machine: {os.cpu_count()} CPU cores, 1 runs at a time" in table  # from this call's --workers
    assert learning.main([*flags, "--seeds", "2", "--only", "cadp_qmix_post_gru"]) == 0
    assert "Runs in: 5 of 8 planned" in (tmp_path / "results" / "learning_ablation-smoke.md").read_text()


def test_a_stopped_ablation_keeps_its_finished_jobs_and_resumes_in_a_fresh_clone(tmp_path, monkeypatch, capsys):
    csv_path = tmp_path / "results" / "learning_ablation-smoke.csv.gz"
    manifest_path = tmp_path / "results" / "learning_ablation-smoke.jobs.json"
    names = [job.name for job in studies.expand("ablation-smoke")]
    flags = study_flags(tmp_path, "--study", "ablation-smoke", "--workers", "1")
    calls = []
    monkeypatch.setattr(learning, "run_job", fake_ablation_job(calls, csv_path, stop_at=3))
    with pytest.raises(KeyboardInterrupt):  # stopped while the third job runs
        learning.main(flags)
    manifest = json.loads(manifest_path.read_text())
    assert list(manifest) == names[:2] and calls == names[:3]
    for job in studies.expand("ablation-smoke")[:2]:
        assert manifest[job.name]["signature"] == job.signature()
        assert manifest[job.name]["seconds"] == 2.0  # its last row's wall time
        assert manifest[job.name]["finished"].endswith("+00:00")
    rows = read_csv(csv_path)
    assert {(row["algo"], row["value"]) for row in rows if row["tag"].startswith("eval/")} == {
        ("qmix_rnn", "1"),
        ("cadp_qmix_post_gru", "2"),
    }  # the calls that made them
    assert "Runs in: 2 of 4 planned" in (tmp_path / "results" / "learning_ablation-smoke.md").read_text()
    assert not list(tmp_path.glob("results/.*"))  # no temporary file left behind

    # a fresh clone: results/ only; the dry run and the study know what finished from the manifest
    shutil.rmtree(tmp_path / "runs")
    capsys.readouterr()
    assert learning.main([*flags, "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [" finished " in line for line in out[:-1]] == [True, True, False, False]
    assert out[-1].startswith("4 jobs: 2 finished, 2 to run")
    calls.clear()
    monkeypatch.setattr(learning, "run_job", fake_ablation_job(calls, csv_path))
    monkeypatch.setattr(plot, "make_report", lambda *args, **kwargs: 1 / 0)  # a failing report only warns
    assert learning.main(flags) == 0
    assert calls == names[2:] and "warning: the report failed (ZeroDivisionError" in capsys.readouterr().err
    assert list(json.loads(manifest_path.read_text())) == names
    resumed = read_csv(csv_path)
    assert resumed[: len(rows)] == rows  # the first two jobs' rows, kept from the CSV
    gzipped = csv_path.read_bytes()
    assert learning.main(flags) == 0 and csv_path.read_bytes() == gzipped  # the same rows, the same bytes: no diff
    assert {row["algo"] for row in resumed} == {"qmix_rnn", "cadp_qmix_post_gru", "mappo_rnn", "cadp_mappo_post_gru"}

    # other seeds add to the study; a job whose signature changed loses its rows, and runs again
    calls.clear()
    assert learning.main([*flags, "--seeds", "2", "--only", "qmix_rnn"]) == 0
    assert calls == [names[0].replace("__1", "__2")] and len(json.loads(manifest_path.read_text())) == 5
    calls.clear()
    assert learning.main([*flags, "--total-timesteps", "300", "--only", "qmix_rnn"]) == 0
    assert calls == names[:1]
    manifest = json.loads(manifest_path.read_text())
    assert list(manifest) == [names[0], names[0].replace("__1", "__2")] and '"300"' in manifest[names[0]]["signature"]
    assert {(row["algo"], row["seed"]) for row in read_csv(csv_path)} == {("qmix_rnn", "1"), ("qmix_rnn", "2")}


def scripts_have_the_ablation_flags() -> bool:
    scripts = ("cadp_qmix", "cadp_mappo")
    return all("advice_placement" in (learning.ROOT / f"{script}.py").read_text() for script in scripts)


@pytest.mark.skipif(not scripts_have_the_ablation_flags(), reason="the scripts do not have --advice-placement yet")
def test_ablation_smoke_study_runs_in_the_process_pool_and_survives_a_fresh_clone(tmp_path):
    flags = study_flags(tmp_path, "--study", "ablation-smoke", "--workers", "2")
    results = tmp_path / "results"
    result = run_script("benchmarks/learning", tmp_path, *flags, "--only", "qmix", timeout=240)  # the QMIX arms
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "4 jobs" not in result.stdout and "2 jobs, 0 already finished, running 2 on 2 workers" in result.stdout
    qmix_rows = read_csv(results / "learning_ablation-smoke.csv.gz")
    assert {row["algo"] for row in qmix_rows} == {"qmix_rnn", "cadp_qmix_post_gru"}
    for algo, advice in (("qmix_rnn", "false"), ("cadp_qmix_post_gru", "true")):
        mine = [row for row in qmix_rows if row["algo"] == algo]
        assert {row["tag"] for row in mine} == TAGS_OF_A_RUN | Q_LOSS_TAGS | (
            ADVICE_TAGS if advice == "true" else set()
        )
        assert {(row["script"], row["advice"], row["seed"]) for row in mine} == {("cadp_qmix", advice, "1")}
    assert len(json.loads((results / "learning_ablation-smoke.jobs.json").read_text())) == 2

    shutil.rmtree(tmp_path / "runs")  # a fresh clone with the results only
    result = run_script("benchmarks/learning", tmp_path, *flags, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "4 jobs, 2 already finished, running 2 on 2 workers" in result.stdout
    rows = read_csv(results / "learning_ablation-smoke.csv.gz")
    assert rows[: len(qmix_rows)] == qmix_rows
    assert {row["algo"] for row in rows} == {"qmix_rnn", "cadp_qmix_post_gru", "mappo_rnn", "cadp_mappo_post_gru"}
    assert ADVICE_TAGS <= {row["tag"] for row in rows if row["algo"] == "cadp_mappo_post_gru"}
    manifest = json.loads((results / "learning_ablation-smoke.jobs.json").read_text())
    assert list(manifest) == [job.name for job in studies.expand("ablation-smoke")]
    for base in ("qmix", "mappo"):
        assert (results / f"learning_ablation-smoke_matrix-two_step_{base}.png").read_bytes()[:4] == b"\x89PNG"
    table = (results / "learning_ablation-smoke.md").read_text()
    assert "Runs in: 4 of 4 planned" in table and "| `cadp_mappo_post_gru` | 1 |" in table
    assert "Against the baseline `qmix_rnn` (the only one with results yet)" in table
    assert table.index("## matrix:two_step: QMIX") < table.index("## matrix:two_step: MAPPO")


def write_ablation_csv(path: Path) -> None:
    """Eval curves at steps 0, 50, 100 of a study whose budget is 100 steps with the breakpoint at 67 (the
    manifest's flags; the last eval before it: step 50); gru_input has no manifest entry: its breakpoint is
    read off charts/prune_coef. Win rates for two arms only, as a partial study may have."""
    curves = {  # (algo, tag, seed): values at steps 0, 50, 100
        ("qmix_rnn", "D", 1): [0, 1, 2],
        ("qmix_rnn", "D", 2): [0, 2, 4],
        ("qmix_rnn", "D", 3): [0, 3, 3],
        ("qmix_gru", "D", 1): [0, 1, 1],
        ("qmix_gru", "D", 2): [0, 1, 1],
        ("cadp_qmix_post_gru", "D", 1): [0, 0, 3],
        ("cadp_qmix_post_gru", "D", 2): [0, 0, 6],
        ("cadp_qmix_post_gru", "D", 3): [0, 0, 6],
        ("cadp_qmix_post_gru", "C", 1): [0, 2, 9],
        ("cadp_qmix_post_gru", "C", 2): [0, 4, 9],
        ("cadp_qmix_post_gru", "C", 3): [0, 3, 9],
        ("cadp_qmix_post_gru_noprune", "D", 1): [0, 1, 1],
        ("cadp_qmix_post_gru_noprune", "D", 2): [0, 1, 3],
        ("cadp_qmix_post_gru_noprune", "C", 1): [0, 5, 7],
        ("cadp_qmix_post_gru_noprune", "C", 2): [0, 5, 9],
        ("cadp_qmix_gru_input", "D", 1): [0, 1, 5],
        ("cadp_qmix_gru_input", "C", 1): [0, 6, 8],
        ("qmix_rnn", "W", 1): [0, 0.5, 0.5],
        ("qmix_rnn", "W", 2): [0, 0.5, 0.5],
        ("cadp_qmix_post_gru", "W", 1): [0, 0.5, 1],
        ("cadp_qmix_post_gru", "W", 2): [0, 0.5, 0.75],
        ("cadp_qmix_post_gru", "CW", 1): [0, 1, 1],
        ("cadp_qmix_post_gru", "CW", 2): [0, 0.75, 1],
    }
    tags = {
        "D": "eval/decentralized_episodic_return",
        "C": "eval/centralized_episodic_return",
        "W": "eval/decentralized_win_rate",
        "CW": "eval/centralized_win_rate",
    }
    rows = [
        (algo, seed, tags[tag], step, value)
        for (algo, tag, seed), values in curves.items()
        for step, value in zip((0, 50, 100), values)
    ]
    rows += [
        (algo, 1, tag, step, value)
        for algo in ("cadp_qmix_post_gru", "cadp_qmix_gru_input")
        for step, value in zip((20, 40, 60, 80, 100), (0, 0, 0, 0.5, 0.5))
        for tag in ("charts/prune_coef", "charts/self_attention_weight")
    ]
    with plot.open_csv(path, "wt") as f:
        writer = csv.writer(f)
        writer.writerow(learning.CSV_COLUMNS)
        for algo, seed, tag, step, value in rows:
            advice = str(algo.startswith("cadp_")).lower()
            writer.writerow(["ablation", "x:y", algo, "cadp_qmix", advice, seed, tag, step, step / 10, value])
    manifest = {}
    for algo, seed in {(algo, seed) for algo, _, seed in curves if algo != "cadp_qmix_gru_input"}:
        fraction = "1" if algo.endswith("noprune") else "0.67"
        command = ["cadp_qmix.py", "--env-id", "x:y", "--seed", str(seed), "--total-timesteps", "100"]
        command += ["--prune-start-fraction", fraction]
        manifest[f"x-y__{algo}__{seed}"] = {"signature": json.dumps(command), "seconds": 1.0, "finished": "2025-01-01"}
    path.with_name("learning_ablation.jobs.json").write_text(json.dumps(manifest))


def test_the_ablation_report_gives_the_paired_differences_computed_by_hand(tmp_path):
    # as the study writes it; the manifest is learning_ablation.jobs.json
    csv_path = tmp_path / "learning_ablation.csv.gz"
    write_ablation_csv(csv_path)
    written = plot.make_report(csv_path, machine="a test machine", planned=20)
    assert [path.name for path in written] == ["learning_ablation_x-y_qmix.png", "learning_ablation.md"]
    assert written[0].read_bytes()[:4] == b"\x89PNG"
    table = written[1].read_text()
    assert "Runs in: 11 of 20 planned." in table and "Machine: a test machine." in table
    returns, wins = table.split("## x:y: QMIX, evaluation return")[1].split("## x:y: QMIX, win rate (secondary)")
    # final (D) of rnn 2, 4, 3 (sd 1, t(2) = 4.303: 4.303 / sqrt(3) = 2.484); of gru 1, 1: rnn is the stronger
    assert "| `qmix_rnn` | 3 | 3.000 ± 2.484 |  |  |  |" in returns
    assert "| `qmix_gru` | 2 | 1.000 ± 0.000 |  |  |  |" in returns
    # final (D) 3, 6, 6 (sd sqrt(3): 4.303); final (C) 9, 9, 9; (C) at the last eval before step 67: 2, 4, 3
    assert "| `cadp_qmix_post_gru` | 3 | 5.000 ± 4.303 | 9.000 ± 0.000 | 3.000 ± 2.484 | 50 |" in returns
    # never pruned: (C) at the breakpoint is the final one, 7 and 9 (sd sqrt(2), t(1) = 12.706)
    assert "| `cadp_qmix_post_gru_noprune` | 2 | 2.000 ± 12.706 | 8.000 ± 12.706 | 8.000 ± 12.706 | 100 |" in returns
    # no manifest entry: prune_coef is still 0 at step 60, on at 80, so (C) is the eval at 50
    assert "| `cadp_qmix_gru_input` | 1 | 5.000 | 8.000 | 6.000 | 50 |" in returns
    assert (
        "Against the stronger baseline, `qmix_rnn` (the higher mean final (D) of `qmix_rnn` and `qmix_gru`)" in returns
    )
    # post_gru - rnn per seed: (C) at 50 minus rnn at 50: 2-1, 4-2, 3-3 = 1, 2, 0; final: 3-2, 6-4, 6-3 = 1, 2, 3
    assert "| `cadp_qmix_post_gru` | 1.000 ± 2.484 (3) | 2.000 ± 2.484 (3) |" in returns
    # noprune, seeds 1 and 2: (C) at 100 minus rnn at 100: 7-2, 9-4; final: 1-2, 3-4
    assert "| `cadp_qmix_post_gru_noprune` | 5.000 ± 0.000 (2) | -1.000 ± 0.000 (2) |" in returns
    assert "| `cadp_qmix_gru_input` | 5.000 (1) | 3.000 (1) |" in returns
    # win rates: gru has none (a partial study); post_gru - rnn, seeds 1 and 2: (C) at 50: 1-0.5, 0.75-0.5;
    # final: 1-0.5, 0.75-0.5 (sd 0.177, t(1) = 12.706 -> 1.588)
    assert "| `qmix_gru` | 0 |  |  |  |  |" in wins
    assert "Against the baseline `qmix_rnn` (the only one with results yet)" in wins
    assert "| `cadp_qmix_post_gru` | 0.375 ± 1.588 (2) | 0.375 ± 1.588 (2) |" in wins
    assert "| `cadp_qmix_gru_input` |  |  |" in wins
