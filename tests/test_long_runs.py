"""Long runs: checkpoints, resume after a SIGKILL, SIGINT/SIGTERM, divergence, eval-only, and
every bad input a user can give, each answered with one `error:` line.

The runs are real subprocesses (a kill has to be real); the bad inputs, which all stop before
training, run the scripts in-process with runpy, which is much faster than a fresh interpreter."""

import os
import re
import runpy
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import LBF_ID, ROOT, SCRIPTS, TINY, final_returns, run_script, start_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

LBF = [
    "--env-id",
    LBF_ID,
    "--num-envs",
    "4",
    "--eval-episodes",
    "2",
    "--hidden-dim",
    "16",
    "--prune-start-fraction",
    "0.3",
]


def output(cwd: Path) -> tuple[str, str]:
    return (cwd / "stdout.txt").read_text(), (cwd / "stderr.txt").read_text()


def wait_for_checkpoint(process: subprocess.Popen, cwd: Path, step: int, timeout: float = 120) -> Path:
    """Poll until the run under cwd has written its checkpoint at `step`; the run must still be going."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = list(cwd.glob(f"runs/*/checkpoints/step_{step}.cadp_model"))
        if found:
            assert process.poll() is None, "the run finished before it could be interrupted"
            return found[0]
        assert process.poll() is None, output(cwd)
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint at step {step} after {timeout} s")


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series as TensorBoard shows it (purged events dropped), without wall-clock speed."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if tag not in ("charts/SPS", "charts/update_time_ms")
    }  # wall-clock times differ


RUN = {  # (flags, total steps, the checkpoint the killed run resumes from)
    "cadp_qmix": (
        LBF
        + TINY["cadp_qmix"]
        + ["--total-timesteps", "3000", "--eval-interval", "1000", "--checkpoint-interval", "1000"],
        1000,
    ),
    "cadp_vdn": (  # its buffer left out of the checkpoints: the resume replays the logged actions
        LBF
        + TINY["cadp_vdn"]
        + ["--total-timesteps", "3000", "--eval-interval", "1000", "--checkpoint-interval", "1000"]
        + ["--checkpoint-buffer-max-mb", "0"],
        1000,
    ),
    "cadp_qplex": (  # its buffer left out of the checkpoints: the resume replays the logged actions
        LBF
        + TINY["cadp_qplex"]
        + ["--total-timesteps", "3000", "--eval-interval", "1000", "--checkpoint-interval", "1000"]
        + ["--checkpoint-buffer-max-mb", "0"],
        1000,
    ),
    "cadp_mappo": (
        LBF
        + TINY["cadp_mappo"]
        + ["--total-timesteps", "1200", "--eval-interval", "400", "--checkpoint-interval", "400"],
        400,
    ),
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_killed_and_resumed_run_continues_exactly_like_an_uninterrupted_one(script, tmp_path):
    flags, resume_step = RUN[script]
    uninterrupted = start_script(script, tmp_path / "a", *flags)
    killed = start_script(script, tmp_path / "b", *flags)
    checkpoint = wait_for_checkpoint(killed, tmp_path / "b", resume_step)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert uninterrupted.wait(timeout=300) == 0, output(tmp_path / "a")

    resumed = run_script(script, tmp_path / "b", "--resume", str(checkpoint.relative_to(tmp_path / "b")))
    if "--checkpoint-buffer-max-mb" in flags:  # the episodes were rebuilt, not loaded
        assert torch.load(checkpoint, weights_only=False)["buffer"].keys() == {"replay", "size", "next_index", "digest"}
        assert "the same as when the checkpoint was written" in resumed.stdout, resumed.stdout[-2000:]
    (run_a,), (run_b,) = (tmp_path / "a" / "runs").iterdir(), (tmp_path / "b" / "runs").iterdir()
    # the same run directory, continued: every series equal, the killed run's events after the checkpoint dropped
    expected, actual = scalars(run_a), scalars(run_b)
    assert actual.keys() == expected.keys()
    for tag in expected:
        assert actual[tag] == expected[tag], tag
    assert max(step for step, _ in actual["charts/episodic_return"]) > resume_step
    stdout_a, _ = output(tmp_path / "a")
    assert (
        re.search(r"CADP\(C\) return .*", resumed.stdout).group() == re.search(r"CADP\(C\) return .*", stdout_a).group()
    )
    # the confidence heatmaps, as files and as TensorBoard images, at every evaluation
    assert sorted(p.name for p in (run_a / "confidence").iterdir()) == sorted(
        p.name for p in (run_b / "confidence").iterdir()
    )
    events = EventAccumulator(str(run_a), size_guidance={"images": 0}).Reload()
    assert len(events.Images("eval/confidence_matrix")) == len(list((run_a / "confidence").iterdir())) >= 3


@pytest.mark.parametrize("script, signum", [("cadp_qmix", signal.SIGINT), ("cadp_mappo", signal.SIGTERM)])
def test_a_stop_signal_writes_a_checkpoint_and_prints_the_command_that_resumes(script, signum, tmp_path):
    flags = (
        LBF
        + TINY[script]
        + ["--total-timesteps", "10000000", "--eval-interval", "1000000", "--checkpoint-interval", "400"]
    )
    process = start_script(script, tmp_path, *flags)
    wait_for_checkpoint(process, tmp_path, 400)
    process.send_signal(signum)
    assert process.wait(timeout=120) == 0, output(tmp_path)
    stdout, _ = output(tmp_path)
    match = re.search(r"stopped by (\w+) at step (\d+); checkpoint written to (\S+)\nresume with: (.+)", stdout)
    assert match and match.group(1) == signal.Signals(signum).name, stdout
    step, path, command = int(match.group(2)), match.group(3), shlex.split(match.group(4))
    assert (tmp_path / path).is_file() and path.endswith(f"step_{step}.cadp_model")
    assert command[0] == "python" and command[-2:] == ["--resume", path]

    # the printed command, as a user runs it; a lower budget only so that the test ends
    resumed = subprocess.run(
        [sys.executable, *command[1:], "--total-timesteps", str(step + 400)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    final_returns(resumed)
    assert f"final eval after {step + 400} steps" in resumed.stdout


@pytest.mark.parametrize("script, term", [("cadp_qmix", "td_loss"), ("cadp_mappo", "loss")])
def test_divergence_stops_the_run_naming_step_and_term_and_keeps_the_last_good_checkpoint(script, term, tmp_path):
    # a real overflow: Adam's first steps move every weight by ~1e10, so the next losses overflow to inf/NaN
    flags = [
        "--env-id",
        "matrix:two_step",
        "--num-envs",
        "4",
        "--total-timesteps",
        "2000",
        "--learning-rate",
        "1e10",
        "--checkpoint-interval",
        "40",
        "--eval-episodes",
        "2",
    ]
    if script == "cadp_qmix":
        flags += ["--learning-starts", "80"]  # checkpoints before the first update
    result = run_script(script, tmp_path, *flags)
    assert result.returncode == 1, result.stderr[-2000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.stderr
    assert re.search(rf"\w*{term}\w* is (nan|inf|-inf)\b.* at step \d+: training diverged", line), line
    (run_dir,) = (tmp_path / "runs").iterdir()
    if script == "cadp_qmix":
        last = re.search(r"the last good checkpoint is (\S+);", line).group(1)
        checkpoint = torch.load(tmp_path / last, weights_only=False)
        assert checkpoint["global_step"] <= int(re.search(r"at step (\d+)", line).group(1))
        assert all(torch.isfinite(p).all() for p in checkpoint["agent"].values())
    else:  # diverged within its first update: before any checkpoint
        assert "no checkpoint was written yet" in line and not (run_dir / "checkpoints").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A finished tiny run of each script on the two-step game: its run directory (periodic checkpoints
    and the --save-model checkpoint)."""
    root = tmp_path_factory.mktemp("trained")
    processes = {
        script: start_script(
            script,
            root / script,
            "--env-id",
            "matrix:two_step",
            "--num-envs",
            "4",
            "--total-timesteps",
            "400",
            "--checkpoint-interval",
            "200",
            "--eval-episodes",
            "2",
            "--save-model",
            *TINY[script],
        )
        for script in SCRIPTS
    }
    for script, process in processes.items():
        assert process.wait(timeout=300) == 0, output(root / script)
    return {script: next((root / script / "runs").iterdir()) for script in SCRIPTS}


def run_in_process(script: str, cwd: Path, monkeypatch, capsys, *flags: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the script run as `python script.py flags` would, in this process."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [str(ROOT / f"{script}.py"), *flags])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / f"{script}.py"), run_name="__main__")
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def assert_one_error_line(code: int, stderr: str, *fragments: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, stderr)
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


BAD_FLAGS = [  # (flags, what the one line must say); for every script
    (["--total-timesteps", "0"], "--total-timesteps must be > 0, got 0"),
    (["--num-envs", "-2"], "--num-envs must be > 0, got -2"),
    (["--eval-episodes", "0"], "--eval-episodes must be > 0, got 0"),
    (["--hidden-dim", "0"], "--hidden-dim must be > 0"),
    (["--att-heads", "0"], "--att-heads must be > 0"),
    (["--learning-rate", "-0.001"], "--learning-rate must be > 0"),
    (["--gamma", "1.5"], "--gamma must be between 0 and 1, got 1.5"),
    (["--checkpoint-interval", "-1"], "--checkpoint-interval must be >= 0"),
    (["--keep-checkpoints", "0"], "--keep-checkpoints must be > 0"),
    (["--eval-only"], "--eval-only needs a PATH"),
    (["--env-id", "foo"], "must look like 'module:Id'"),
    (["--env-id", "lbforaging:Foraging-9x9-nope-v3"], "closest: Foraging-9x9-"),
    (["--env-id", "mpe2:simple_v3"], "has 1 agent(s); CADP needs >= 2 agents"),
    (["--env-id", "gymnasium:Pendulum-v1"], "looks single-agent"),
    (["--env-id", "pettingzoo.sisl:multiwalker_v9"], "needs 'Box2D', which is not installed"),
    (["--env-id", "pettingzoo.classic:rps_v2"], "observation space Discrete(4) is not supported"),
    (["--eval-episodes", "100000000"], "envs"),
]
SCRIPT_BAD_FLAGS = [
    ("cadp_qmix", ["--batch-size", "0"], "--batch-size must be > 0"),
    ("cadp_vdn", ["--buffer-size", "0"], "--buffer-size must be > 0"),
    ("cadp_qmix", ["--batch-size", "100", "--buffer-size", "10"], "--batch-size 100 is larger than --buffer-size 10"),
    ("cadp_qmix", ["--mixing-embed-dim", "0"], "--mixing-embed-dim must be > 0"),
    ("cadp_qmix", ["--buffer-size", "100000000"], "replay buffer"),
    ("cadp_vdn", ["--num-envs", "100000000"], "lower --buffer-size, --num-envs or --eval-episodes"),
    ("cadp_qplex", ["--qplex-kernels", "0"], "--qplex-kernels must be > 0"),
    ("cadp_qplex", ["--attend-reg-coef", "-1"], "--attend-reg-coef must be >= 0"),
    ("cadp_mappo", ["--num-steps", "15"], "--num-steps must be a multiple of --chunk-length"),
    ("cadp_mappo", ["--num-minibatches", "0"], "--num-minibatches must be > 0"),
    ("cadp_mappo", ["--num-envs", "100000000"], "rollout and update"),
]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flags, message", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flags_and_envs_stop_with_one_line(script, flags, message, tmp_path, monkeypatch, capsys):
    assert_one_error_line(*run_in_process(script, tmp_path, monkeypatch, capsys, *flags)[::2], message)
    assert not (tmp_path / "runs").exists()  # nothing started


@pytest.mark.parametrize(
    "script, flags, message", SCRIPT_BAD_FLAGS, ids=[f"{s} {' '.join(f)}" for s, f, _ in SCRIPT_BAD_FLAGS]
)
def test_bad_script_flags_stop_with_one_line(script, flags, message, tmp_path, monkeypatch, capsys):
    line = assert_one_error_line(*run_in_process(script, tmp_path, monkeypatch, capsys, *flags)[::2], message)
    if "memory" in line:  # the figure, and what to lower
        assert re.search(r"needs about [\d.]+ (GiB|MiB) of memory .* is available; lower --", line), line


@pytest.mark.parametrize("script", SCRIPTS)
def test_bad_checkpoints_stop_with_one_line(script, trained, tmp_path, monkeypatch, capsys):
    run_dir = trained[script]
    latest = max((run_dir / "checkpoints").iterdir(), key=lambda p: p.stat().st_mtime)
    truncated = tmp_path / "truncated.cadp_model"
    truncated.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    not_a_checkpoint = tmp_path / "notes.cadp_model"
    torch.save({"weights": torch.zeros(3)}, not_a_checkpoint)
    (tmp_path / "empty_run").mkdir()
    other = trained["cadp_vdn" if script == "cadp_qmix" else "cadp_qmix"]
    cases = [
        (["--resume", str(truncated)], "cannot be read"),
        (["--eval-only", str(truncated)], "truncated or not a checkpoint"),
        (["--resume", str(not_a_checkpoint)], "is not a checkpoint of these scripts"),
        (["--resume", str(tmp_path / "nowhere")], "no such checkpoint file or run directory"),
        (["--resume", str(tmp_path / "empty_run")], "no checkpoint in this directory"),
        (["--resume", str(other)], f"checkpoint; use it with {other.name.split('__')[1]}.py, not {script}.py"),
        (["--resume", str(run_dir), "--env-id", "matrix:climbing"], "was trained on matrix:two_step"),
        (["--eval-only", str(run_dir), "--no-obs-agent-id"], "drop --env-id and the --obs-* flags"),
        (["--resume", str(run_dir), "--hidden-dim", "32"], "does not fit the networks of this command"),
    ]
    for flags, message in cases:
        assert_one_error_line(*run_in_process(script, tmp_path, monkeypatch, capsys, *flags)[::2], message)


@pytest.mark.parametrize("script", SCRIPTS)
def test_eval_only_prints_a_table_of_both_models(script, trained, tmp_path, monkeypatch, capsys):
    code, stdout, stderr = run_in_process(
        script, tmp_path, monkeypatch, capsys, "--eval-only", str(trained[script]), "--eval-episodes", "5"
    )
    assert code == 0, stderr
    assert re.search(r"matrix:two_step, step 400, 5 (greedy|sampled) episodes per model", stdout), stdout
    rows = re.findall(r"^(CADP\([CD]\))\s+(-?[\d.]+)$", stdout, re.MULTILINE)
    assert [name for name, _ in rows] == ["CADP(C)", "CADP(D)"] and all(0 <= float(v) <= 8 for _, v in rows), stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_saved_model_is_weights_only_evaluates_and_refuses_to_resume(
    script, trained, tmp_path, monkeypatch, capsys
):
    model = trained[script] / f"{script}.cadp_model"
    saved = torch.load(model, weights_only=True)  # no pickled envs, buffer or RNG states: safe to load
    assert saved["kind"] == "model" and saved["global_step"] == 400 and saved["args"]["env_id"] == "matrix:two_step"
    assert not {"optimizer", "envs", "buffer", "rng"} & saved.keys()
    code, stdout, stderr = run_in_process(
        script, tmp_path, monkeypatch, capsys, "--eval-only", str(model), "--eval-episodes", "3"
    )
    assert code == 0 and re.search(r"^CADP\(D\)\s+-?[\d.]+$", stdout, re.MULTILINE), stderr
    assert_one_error_line(
        *run_in_process(script, tmp_path, monkeypatch, capsys, "--resume", str(model))[::2],
        "is a saved model",
        "--resume a periodic checkpoint",
    )


UNPICKLABLE_ENV = '''
import gymnasium
import numpy as np
from gymnasium import spaces


class HandleEnv(gymnasium.Env):
    """Two agents, two actions, 5 steps; it holds a handle that pickle cannot save (as a simulator would)."""

    def __init__(self):
        self.observation_space = spaces.Tuple([spaces.Box(0, 1, (3,), np.float32)] * 2)
        self.action_space = spaces.Tuple([spaces.Discrete(2)] * 2)
        self.handle = lambda: None

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return tuple(self.np_random.random(3, dtype=np.float32) for _ in range(2)), {}

    def step(self, actions):
        obs = tuple(self.np_random.random(3, dtype=np.float32) for _ in range(2))
        return obs, [float(a) for a in actions], False, False, {}


gymnasium.register("Handle-v0", entry_point=f"{__name__}:HandleEnv", max_episode_steps=5)
'''


def test_resume_without_env_snapshot_or_replay_buffer_still_continues(tmp_path):
    """An env that cannot be pickled, and a buffer over --checkpoint-buffer-max-mb: the checkpoint holds the
    actions taken, a resume rebuilds the buffer from them and starts new episodes (a reseed, which no replay can
    repeat); the checkpoints after it hold no buffer, and a run resumed from one goes on with a refilling buffer."""
    (tmp_path / "handle_env.py").write_text(UNPICKLABLE_ENV)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    first = start_script(
        "cadp_qmix",
        tmp_path / "run",
        "--env-id",
        "handle_env:Handle-v0",
        "--num-envs",
        "2",
        "--total-timesteps",
        "300",
        "--checkpoint-interval",
        "100",
        "--checkpoint-buffer-max-mb",
        "0",
        "--eval-episodes",
        "2",
        *TINY["cadp_qmix"],
        env=env,
    )
    assert first.wait(timeout=300) == 0, output(tmp_path / "run")
    _, stderr = output(tmp_path / "run")
    assert stderr.count("warning: handle_env:Handle-v0 cannot be pickled") == 1, stderr
    (run_dir,) = (tmp_path / "run" / "runs").iterdir()
    checkpoints = run_dir / "checkpoints"
    checkpoint = torch.load(checkpoints / "step_100.cadp_model", weights_only=False)
    assert checkpoint["envs"] is None and checkpoint["buffer"]["replay"]

    resumed = start_script("cadp_qmix", tmp_path / "run", "--resume", str(checkpoints / "step_100.cadp_model"), env=env)
    assert resumed.wait(timeout=300) == 0, output(tmp_path / "run")
    stdout, _ = output(tmp_path / "run")
    assert "the same as when the checkpoint was written" in stdout and "final eval after 300 steps" in stdout
    after_reseed = torch.load(checkpoints / "step_200.cadp_model", weights_only=False)
    assert after_reseed["buffer"] is None and not after_reseed["actions"]["complete"]

    again = start_script("cadp_qmix", tmp_path / "run", "--resume", str(checkpoints / "step_200.cadp_model"), env=env)
    assert again.wait(timeout=300) == 0, output(tmp_path / "run")
    stdout, _ = output(tmp_path / "run")
    assert "the checkpoint holds no replay buffer" in stdout and "final eval after 300 steps" in stdout
