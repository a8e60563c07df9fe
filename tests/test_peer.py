"""benchmarks/peer.py without the peer's venv: the driver's JSON lines, the event file and its wall
times, the venv's reuse and remaking, failures and their messages, and run_learning end to end
against a stand-in driver (a small script that prints what the real one prints)."""

import json
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks import peer, peer_driver

LBF = "lbforaging:Foraging-8x8-2p-3f-v3"
START = 1_800_000_000.25


def records_of_a_run() -> list[dict]:
    return [
        {"event": "config", "config": {"name": "qmix", "env_args": {"key": LBF, "time_limit": 50}}},
        {"event": "start", "time": START},
        {"event": "train", "step": 50, "elapsed": 0.5, "return_mean": 0.25, "episodes": 1},
        {"event": "eval", "step": 50, "elapsed": 0.75, "return_mean": 0.0, "episodes": 8},
        {"event": "train", "step": 100, "elapsed": 2.0, "return_mean": 0.5, "episodes": 1},
        {"event": "eval", "step": 100, "elapsed": 2.5, "return_mean": 1.0, "episodes": 8},
        {
            "event": "summary",
            "env_steps": 100,
            "act_s": 1.5,
            "update_s": 0.5,
            "updates": 4,
            "test_s": 0.25,
            "loop_s": 2.5,
            "threads": 1,
            "startup_s": 3.0,
            "peak_rss_mib": 600.0,
            "peak_rss_worker_mib": None,
            "workers": 0,
            "test_nepisode": 8,
            "batch_size_run": 1,
        },
    ]


def read_events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return accumulator


# ---- JSON lines ----------------------------------------------------------------------------------
def test_parse_record_keeps_event_objects_and_drops_everything_else():
    assert peer.parse_record('{"event": "eval", "step": 50, "return_mean": 0.5}\n') == {
        "event": "eval",
        "step": 50,
        "return_mean": 0.5,
    }
    assert peer.parse_record('  {"event": "start", "time": 1.5}  ') == {"event": "start", "time": 1.5}
    for line in [
        "",
        "\n",
        "INFO t_env: 50 / 100",
        '{"event": "eval", "step": ',
        '{"step": 50}',
        "[1, 2]",
        '"event"',
        "{not json}",
    ]:
        assert peer.parse_record(line) is None, line


def test_speed_result_counts_acting_and_updates_only():
    summary = records_of_a_run()[-1]
    result = peer.speed_result(summary, wall_s=9.0)
    assert result["env_steps"] == 100
    assert result["env_steps_per_s"] == pytest.approx(100 / 2.0)  # act 1.5 s + updates 0.5 s; tests excluded
    assert result["update_ms"] == pytest.approx(125.0)
    assert result["loop_steps_per_s"] == pytest.approx(100 / 2.25)  # the loop's 2.5 s less 0.25 s of tests
    assert (result["updates"], result["peak_rss_mib"], result["wall_s"], result["threads"]) == (4, 600.0, 9.0, 1)
    assert {"env_steps", "env_steps_per_s", "update_ms", "updates", "peak_rss_mib", "wall_s", "threads"} <= set(result)
    no_updates = peer.speed_result({**summary, "updates": 0, "update_s": 0.0}, wall_s=1.0)
    assert no_updates["update_ms"] != no_updates["update_ms"]  # NaN, not a division error


# ---- The event file ------------------------------------------------------------------------------
def test_event_file_has_the_tags_at_env_steps_with_wall_times_from_the_training_start(tmp_path):
    writer = peer.EventWriter(tmp_path, {"algo": "qmix", "seed": 1})
    for record in records_of_a_run():
        writer(record)
    writer.close()

    events = read_events(tmp_path)
    assert set(events.Tags()["scalars"]) == {
        "eval/decentralized_episodic_return",
        "charts/episodic_return",
        "charts/SPS",
    }
    evals = events.Scalars("eval/decentralized_episodic_return")
    assert [(e.step, e.value) for e in evals] == [(50, 0.0), (100, 1.0)]
    assert [e.wall_time - START for e in evals] == pytest.approx([0.75, 2.5])
    returns = events.Scalars("charts/episodic_return")
    assert [(e.step, e.value) for e in returns] == [(50, 0.25), (100, 0.5)]
    assert [e.wall_time - START for e in returns] == pytest.approx([0.5, 2.0])
    assert [e.value for e in events.Scalars("charts/SPS")] == [100, 50]  # steps / seconds since the start
    text = events.Tensors("hyperparameters/text_summary")[0]
    assert text.wall_time == pytest.approx(START)
    table = text.tensor_proto.string_val[0].decode()
    assert "|algo|qmix|" in table and f"|peer_config.env_args.key|{LBF}|" in table


def test_event_writer_refuses_results_before_the_start(tmp_path):
    writer = peer.EventWriter(tmp_path)
    with pytest.raises(peer.PeerError, match="before the peer's start"):
        writer({"event": "eval", "step": 50, "elapsed": 1.0, "return_mean": 0.0, "episodes": 8})
    assert not list(tmp_path.iterdir())  # no writer, no file


# ---- The venv ------------------------------------------------------------------------------------
class FakeInstall:
    """Stands in for subprocess.run in ensure_venv: `python -m venv` makes bin/python, pip does nothing
    (or fails)."""

    def __init__(self, fail_pip: bool = False):
        self.commands, self.fail_pip = [], fail_pip

    def __call__(self, command, **kwargs):
        self.commands.append(command)
        if command[1:3] == ["-m", "venv"]:
            python = Path(command[3]) / "bin" / "python"
            python.parent.mkdir(parents=True)
            python.write_text("")
        failed = self.fail_pip and "pip" in command
        stderr = "ERROR: No matching distribution found for torch==9.9\n" if failed else ""
        return type("Result", (), {"returncode": int(failed), "stdout": "Collecting pymarlzooplus\n", "stderr": stderr})


def test_ensure_venv_installs_once_reuses_and_remakes_when_the_requirements_change(tmp_path, monkeypatch):
    venv, requirements = tmp_path / ".peer-venv", tmp_path / "requirements-peer.txt"
    requirements.write_text("pymarlzooplus==1.1.0\n")
    install = FakeInstall()
    monkeypatch.setattr(peer.subprocess, "run", install)

    assert peer.ensure_venv(venv, requirements) == venv / "bin" / "python"
    assert len(install.commands) == 2
    assert install.commands[1][-4:] == ["--no-deps", "--disable-pip-version-check", "-r", str(requirements)]
    assert peer.venv_is_current(venv, requirements)
    (venv / "installed-package").write_text("")

    peer.ensure_venv(venv, requirements)  # unchanged: reused, nothing run
    assert len(install.commands) == 2 and (venv / "installed-package").exists()

    requirements.write_text("pymarlzooplus==1.1.0\nnumpy==1.26.4\n")
    assert not peer.venv_is_current(venv, requirements)
    peer.ensure_venv(venv, requirements)  # changed: made again from scratch
    assert len(install.commands) == 4 and not (venv / "installed-package").exists()
    assert (venv / peer.MARKER).read_text().strip() == peer.requirements_hash(requirements)


def test_a_failed_install_raises_with_pips_message_and_is_redone_next_time(tmp_path, monkeypatch):
    venv, requirements = tmp_path / ".peer-venv", tmp_path / "requirements-peer.txt"
    requirements.write_text("torch==9.9\n")
    monkeypatch.setattr(peer.subprocess, "run", FakeInstall(fail_pip=True))
    with pytest.raises(peer.PeerError, match="No matching distribution found for torch==9.9"):
        peer.ensure_venv(venv, requirements)
    assert not peer.venv_is_current(venv, requirements)  # no marker: the next call installs again
    install = FakeInstall()
    monkeypatch.setattr(peer.subprocess, "run", install)
    peer.ensure_venv(venv, requirements)
    assert len(install.commands) == 2 and peer.venv_is_current(venv, requirements)


# ---- Requests and failures -----------------------------------------------------------------------
def no_venv():
    raise AssertionError("the venv should not be touched for a bad request")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: peer.measure_speed("iql", LBF, 1000), "unknown algo 'iql'.*qmix, vdn, mappo"),
        (lambda: peer.measure_speed("qmix", "rware:rware-tiny-2ag-v2", 1000), "lbforaging ids only"),
        (lambda: peer.measure_speed("qmix", LBF, 0), "env_steps must be positive"),
        (lambda: peer.run_learning("QMIX", LBF, 1, 1000, 100, 4, "unused"), "unknown algo 'QMIX'"),
        (lambda: peer.run_learning("mappo", LBF, 1, 1000, 0, 4, "unused"), "must be positive"),
    ],
)
def test_bad_requests_fail_at_once_with_a_clear_message(monkeypatch, call, message):
    monkeypatch.setattr(peer, "ensure_venv", no_venv)
    with pytest.raises(ValueError, match=message):
        call()


def test_the_driver_and_peer_agree_on_the_algos():
    assert set(peer.SPEED_ALGOS) | set(peer.LEARN_ALGOS) <= set(peer_driver.ALGOS)
    assert set(peer.ENV_FAMILIES) == set(peer_driver.ENV_TIME_LIMITS)
    assert peer_driver.ENV_TIME_LIMITS["lbforaging"] == 50  # our LBF episodes: 50 steps


def stand_in_driver(tmp_path: Path, records: list[dict], exit_code: int = 0) -> Path:
    """A script that prints what peer_driver.py prints: noise on stderr, JSON lines on stdout."""
    script = tmp_path / "stand_in_driver.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, sys
        request = json.loads(sys.argv[1])
        print("INFO Beginning training for", request["t_max"], "timesteps", file=sys.stderr)
        print("not a record")
        for record in {records!r}:
            print(json.dumps(record), flush=True)
        print("Traceback (most recent call last): ... RuntimeError: boom", file=sys.stderr)
        sys.exit({exit_code})
    """)
    )
    return script


def use_stand_in(monkeypatch, script: Path) -> None:
    monkeypatch.setattr(peer, "ensure_venv", lambda: Path(sys.executable))
    monkeypatch.setattr(peer, "DRIVER", script)


def test_run_learning_writes_events_config_and_done(tmp_path, monkeypatch):
    use_stand_in(monkeypatch, stand_in_driver(tmp_path, records_of_a_run()))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "events.out.tfevents.1.stale").write_text("")  # a previous attempt's: removed
    peer.run_learning("qmix", LBF, seed=3, total_timesteps=100, eval_interval=50, eval_episodes=8, run_dir=str(run_dir))

    assert (run_dir / "done").exists() and not (run_dir / "events.out.tfevents.1.stale").exists()
    info = json.loads((run_dir / "peer.json").read_text())
    assert (info["algo"], info["seed"], info["total_timesteps"], info["eval_interval"]) == ("qmix", 3, 100, 50)
    assert info["peer_config"]["env_args"]["time_limit"] == 50
    assert (info["final_step"], info["final_eval_return"], info["eval_episodes_used"]) == (100, 1.0, 8)
    assert "Beginning training" in (run_dir / "peer.log").read_text()
    evals = read_events(run_dir).Scalars("eval/decentralized_episodic_return")
    assert [(e.step, e.value) for e in evals] == [(50, 0.0), (100, 1.0)]


@pytest.mark.parametrize(
    ("records", "exit_code"),
    [
        (records_of_a_run()[:4], 1),  # crashed mid-run
        (records_of_a_run()[:4], 0),
    ],
)  # ended without a summary
def test_a_failed_peer_run_raises_with_the_tail_of_its_stderr_and_is_not_done(
    tmp_path, monkeypatch, records, exit_code
):
    use_stand_in(monkeypatch, stand_in_driver(tmp_path, records, exit_code))
    run_dir = tmp_path / "run"
    with pytest.raises(peer.PeerError, match=f"exit code {exit_code}(.|\n)*RuntimeError: boom"):
        peer.run_learning("qmix", LBF, 1, 100, 50, 8, str(run_dir))
    assert not (run_dir / "done").exists() and not (run_dir / "peer.json").exists()


def test_measure_speed_passes_the_budget_and_threads_and_reports_the_summary(tmp_path, monkeypatch):
    use_stand_in(monkeypatch, stand_in_driver(tmp_path, records_of_a_run()))
    requests = []
    run_driver = peer.run_driver
    monkeypatch.setattr(
        peer, "run_driver", lambda request, *a, **kw: requests.append(request) or run_driver(request, *a, **kw)
    )
    result = peer.measure_speed("vdn", LBF, env_steps=100, threads=2)
    assert requests[0]["t_max"] == 99 and requests[0]["threads"] == 2  # its loop runs while t_env <= t_max
    assert requests[0]["mode"] == "speed" and requests[0]["test_interval"] > 100
    assert result["env_steps_per_s"] == pytest.approx(50.0) and result["wall_s"] > 0


# ---- The driver's config (a stand-in pymarlzooplus package: YAML files and its merge function) ---
def test_driver_config_layers_defaults_env_algo_then_our_settings(tmp_path, monkeypatch):
    pytest.importorskip("yaml")
    package = tmp_path / "pymarlzooplus"
    for name, text in {
        "default.yaml": "t_max: 10000\nlr: 0.0005\nenv_args: {}\ntest_nepisode: 20\n",
        "envs/gymma.yaml": "env: gymma\nenv_args: {key: null, time_limit: 100, render: false}\ntest_nepisode: 100\n",
        "algs/qmix.yaml": "buffer_size: 5000\nname: qmix\n",
    }.items():
        (package / "config" / name).parent.mkdir(parents=True, exist_ok=True)
        (package / "config" / name).write_text(text)
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(
        textwrap.dedent("""
        def recursive_dict_update(d, u):
            for k, v in u.items():
                d[k] = recursive_dict_update(d.get(k, {}), v) if isinstance(v, dict) else v
            return d
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("pymarlzooplus", "pymarlzooplus.main"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    config = peer_driver.peer_config("qmix", LBF, seed=7, t_max=999, test_interval=500, test_nepisode=8)
    assert config["env_args"] == {"key": LBF, "time_limit": 50, "render": False, "seed": 7}
    assert (config["t_max"], config["test_interval"], config["test_nepisode"], config["seed"]) == (999, 500, 8, 7)
    assert (config["lr"], config["buffer_size"], config["name"], config["env"]) == (0.0005, 5000, "qmix", "gymma")
    with pytest.raises(ValueError, match="unknown algo"):
        peer_driver.peer_config("iql", LBF, 1, 10, 10, 1)
    with pytest.raises(ValueError, match="only"):
        peer_driver.peer_config("qmix", "mpe:SimpleSpread-3-v0", 1, 10, 10, 1)
