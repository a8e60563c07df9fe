"""Long runs: checkpoints, resume after a SIGKILL, SIGINT/SIGTERM, divergence, eval-only, branches, and
every bad input a user can give, each answered with one `error:` line.

The runs are real subprocesses (a kill has to be real); the bad inputs, which all stop before
training, run the scripts in-process with runpy, which is much faster than a fresh interpreter."""

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import runpy
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch
from conftest import LBF_ID, MODULES, ROOT, SCRIPTS, TINY, final_returns, run_script, start_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common.run import RESUME_FIXED, RESUME_MAY_CHANGE

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
    sigint = signal.getsignal(signal.SIGINT)  # a script run as a program answers Ctrl-C its own way: not pytest's
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(ROOT / f"{script}.py"), run_name="__main__")
    finally:
        signal.signal(signal.SIGINT, sigint)
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
    (["--env-id", "lbforagin:Foraging-8x8-2p-3f-v3"], "no module named 'lbforagin'; did you mean lbforaging?"),
    (["--branch"], "--branch continues a run into a new run directory: it needs --resume PATH"),
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
        (["--resume", str(run_dir), "--branch", "--env-id", "matrix:climbing"], "was trained on matrix:two_step"),
        (["--eval-only", str(run_dir), "--no-obs-agent-id"], "drop --env-id and the --obs-* flags"),
        (["--resume", str(run_dir), "--branch", "--hidden-dim", "32"], "does not fit the networks of this command"),
    ]
    for flags, message in cases:
        assert_one_error_line(*run_in_process(script, tmp_path, monkeypatch, capsys, *flags)[::2], message)

    # envs pickled mid-episode by a version whose classes this one lacks (a module gone, a class renamed):
    # protocol 4's PROTO, GLOBAL module/name, an empty tuple, NEWOBJ, STOP
    for module, name in (("common.no_such_module", "Envs"), ("common.vec_env", "NoSuchEnvs")):
        copied = copy_run(run_dir, tmp_path / f"ghost_{name}")
        newest = max((copied / "checkpoints").iterdir(), key=lambda p: p.stat().st_mtime)
        checkpoint = torch.load(newest, weights_only=False)
        checkpoint["envs"] = zlib.compress(b"\x80\x04c" + f"{module}\n{name}\n".encode() + b")\x81.")
        torch.save(checkpoint, newest)
        before = file_hashes(copied)
        code, _, stderr = run_in_process(
            script, tmp_path, monkeypatch, capsys, "--resume", str(copied), "--total-timesteps", "800"
        )
        line = assert_one_error_line(code, stderr, "its envs were saved mid-episode by a version")
        assert name in line and "--branch --seed" in line, line
        assert file_hashes(copied) == before


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


def branched_run(stdout: str, cwd: Path) -> Path:
    """The run directory that a --branch run names in its output."""
    return cwd / re.search(r"^branched from \S+ \(step \d+\) into (\S+)$", stdout, re.MULTILINE).group(1)


def test_resume_without_env_snapshot_or_replay_buffer_still_continues(tmp_path):
    """An env that cannot be pickled, and a buffer over --checkpoint-buffer-max-mb: the checkpoint holds the
    actions taken, a resume rebuilds the buffer from them and starts new episodes (a reseed, which no replay can
    repeat); the checkpoints after it hold no buffer, and a run resumed from one goes on with a refilling buffer.
    (Both resume a checkpoint that is not their run's newest, so they branch.)"""
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

    resumed = start_script(
        "cadp_qmix", tmp_path / "run", "--resume", str(checkpoints / "step_100.cadp_model"), "--branch", env=env
    )
    assert resumed.wait(timeout=300) == 0, output(tmp_path / "run")
    stdout, _ = output(tmp_path / "run")
    assert "the same as when the checkpoint was written" in stdout and "final eval after 300 steps" in stdout
    branch_checkpoints = branched_run(stdout, tmp_path / "run") / "checkpoints"
    after_reseed = torch.load(branch_checkpoints / "step_200.cadp_model", weights_only=False)
    assert after_reseed["buffer"] is None and not after_reseed["actions"]["complete"]

    again = start_script(
        "cadp_qmix", tmp_path / "run", "--resume", str(branch_checkpoints / "step_200.cadp_model"), "--branch", env=env
    )
    assert again.wait(timeout=300) == 0, output(tmp_path / "run")
    stdout, _ = output(tmp_path / "run")
    assert "the checkpoint holds no replay buffer" in stdout and "final eval after 300 steps" in stdout


# ---- a resume never rewrites a run's past; bad setups stop before anything is written ----
def file_hashes(directory: Path) -> dict[str, str]:
    """The SHA-256 of every file under `directory`, by relative path."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def copy_run(run_dir: Path, into: Path) -> Path:
    """A copy of a finished run (the `trained` fixture's runs are shared by the tests that only read them)."""
    return Path(shutil.copytree(run_dir, into / run_dir.name))


def checkpoint_steps(run_dir: Path) -> list[int]:
    return sorted(int(re.search(r"step_(\d+)", p.name).group(1)) for p in (run_dir / "checkpoints").iterdir())


def test_every_flag_a_resume_may_change_is_one_of_the_scripts_flags_and_is_documented():
    """A misspelt name would let nothing through; a missing line in docs/runs.md would hide what does."""
    names = {field.name for module in MODULES.values() for field in dataclasses.fields(module.Args)}
    assert RESUME_MAY_CHANGE <= names and set(RESUME_FIXED) <= names
    docs = (ROOT / "docs" / "runs.md").read_text()
    undocumented = [name for name in RESUME_MAY_CHANGE | set(RESUME_FIXED) if f"--{name.replace('_', '-')}" not in docs]
    assert not undocumented, undocumented


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_resume_that_would_change_the_runs_past_is_refused_and_the_run_stays_byte_identical(
    script, trained, tmp_path, monkeypatch, capsys
):
    run_dir = trained[script]
    before = file_hashes(run_dir)
    older = run_dir / "checkpoints" / f"step_{checkpoint_steps(run_dir)[0]}.cadp_model"
    newest = checkpoint_steps(run_dir)[-1]
    more = ["--total-timesteps", "800"]  # a finished run's budget raised, as extending it would (allowed alone)
    cases = [
        (["--resume", str(older), *more], f"but the run went on to a checkpoint at step {newest}", "add --branch"),
        (["--resume", str(run_dir), "--seed", "7", *more], "--seed 7 (the run's: 1) would change", "add --branch"),
        (["--resume", str(run_dir), "--learning-rate", "0.01", *more], "--learning-rate 0.01 (the run's:", "--branch"),
        (["--resume", str(run_dir), "--eval-episodes", "3", *more], "--eval-episodes 3 (the run's: 2)", "--branch"),
        (["--resume", str(run_dir), "--branch", "--num-envs", "2"], "a resume keeps --num-envs 4", "sizes"),
    ]
    for flags, *message in cases:
        assert_one_error_line(*run_in_process(script, tmp_path, monkeypatch, capsys, *flags)[::2], *message)
    assert file_hashes(run_dir) == before
    assert not (tmp_path / "runs").exists()


def scalar_steps(run_dir: Path, tag: str = "charts/episodic_return") -> list[int]:
    return [step for step, _ in scalars(run_dir)[tag]]


@pytest.mark.parametrize("script", ["cadp_qmix", "cadp_mappo"])  # VDN and QPLEX branch through QMIX's code
def test_a_branch_continues_an_older_checkpoint_under_another_seed_and_leaves_its_parent_as_it_was(
    script, trained, tmp_path
):
    parent = copy_run(trained[script], tmp_path / "parent")
    before = file_hashes(parent)
    step = checkpoint_steps(parent)[0]
    result = run_script(
        script, tmp_path, "--resume", str(parent / "checkpoints" / f"step_{step}.cadp_model"), "--branch", "--seed", "7"
    )
    final_returns(result)
    assert file_hashes(parent) == before
    branch = branched_run(result.stdout, tmp_path)
    assert branch.parent == tmp_path / "runs" and "__7__" in branch.name
    record = json.loads((branch / "branch.json").read_text())["parent"]
    assert record["global_step"] == step and record["changed"] == {"seed": [1, 7]}
    assert (tmp_path / record["run_dir"]).resolve() == parent.resolve()
    newest = torch.load(branch / "checkpoints" / f"step_{checkpoint_steps(branch)[-1]}.cadp_model", weights_only=False)
    assert newest["parent"] == record and newest["args"]["seed"] == 7
    # its own TensorBoard history, from the step it branched at, under its own hyperparameters
    assert min(scalar_steps(branch)) > step and max(scalar_steps(branch)) == newest["global_step"]
    events = EventAccumulator(str(branch), size_guidance={"tensors": 0}).Reload()
    assert "|seed|7|" in events.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()


@pytest.mark.parametrize("script", ["cadp_qmix", "cadp_mappo"])
def test_a_finished_run_extended_with_a_larger_budget_trains_on_in_its_own_directory(script, trained, tmp_path):
    run_dir = copy_run(trained[script], tmp_path / "cwd" / "runs")
    steps = checkpoint_steps(run_dir)
    kept = {name: digest for name, digest in file_hashes(run_dir).items() if "cadp_model" in name or "events" in name}
    kept.pop(f"{script}.cadp_model")  # the saved model, which --save-model writes again at the new end
    result = run_script(
        script, tmp_path / "cwd", "--resume", str(run_dir), "--total-timesteps", "800", "--keep-checkpoints", "5"
    )
    assert "final eval after 800 steps" in result.stdout, result.stderr[-2000:]
    assert [path.name for path in (tmp_path / "cwd" / "runs").iterdir()] == [run_dir.name]  # no new run
    assert {name: file_hashes(run_dir)[name] for name in kept} == kept  # nothing it wrote before was rewritten
    assert checkpoint_steps(run_dir)[: len(steps)] == steps and checkpoint_steps(run_dir)[-1] == 800
    assert max(scalar_steps(run_dir)) > steps[-1]  # one curve, continued


@contextlib.contextmanager
def read_only(path: Path):
    """`path` made unwritable for this process: chmod for a user; root, whom permissions do not stop, makes it
    immutable (chattr +i), or the test is skipped where the file system cannot."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("running as root, and this file system cannot make a directory immutable")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("script", SCRIPTS)
def test_unwritable_directories_stop_before_anything_is_written(script, trained, tmp_path, monkeypatch, capsys):
    cwd = tmp_path / "cwd"
    (cwd / "runs").mkdir(parents=True)
    (tmp_path / "file_cwd").mkdir()
    (tmp_path / "file_cwd" / "runs").write_text("")  # a file where the run directories would go
    assert_one_error_line(
        *run_in_process(script, tmp_path / "file_cwd", monkeypatch, capsys)[::2],
        "cannot write to runs (runs is not a directory)",
    )
    run_dir = copy_run(trained[script], tmp_path / "elsewhere")
    before = file_hashes(run_dir)
    with read_only(cwd / "runs"):
        assert_one_error_line(*run_in_process(script, cwd, monkeypatch, capsys)[::2], "cannot write to runs (it is")
    with read_only(run_dir):
        more = ["--total-timesteps", "800"]
        assert_one_error_line(
            *run_in_process(script, cwd, monkeypatch, capsys, "--resume", str(run_dir), *more)[::2],
            f"cannot write to {os.path.relpath(run_dir, cwd)} (it is read-only)",
            "--branch",
        )
        assert_one_error_line(
            *run_in_process(script, cwd, monkeypatch, capsys, "--eval-only", str(run_dir), "--capture-video")[::2],
            f"videos ({os.path.relpath(run_dir, cwd)} is read-only); drop --capture-video",
        )
        code, stdout, stderr = run_in_process(script, cwd, monkeypatch, capsys, "--eval-only", str(run_dir))
        assert code == 0 and "CADP(D)" in stdout, stderr  # evaluating alone writes nothing
    assert file_hashes(run_dir) == before and not any((cwd / "runs").iterdir())


@pytest.mark.parametrize("script", SCRIPTS)
def test_track_without_wandb_stops_before_anything_is_written(script, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    assert_one_error_line(*run_in_process(script, tmp_path, monkeypatch, capsys, "--track")[::2], "--track needs wandb")
    assert not (tmp_path / "runs").exists()


# SIGINT sent to the script's own process while it imports torch, the slowest of its imports, where a user's
# Ctrl-C in the first seconds lands; the script then runs as `python script.py` runs it
INTERRUPTED_IMPORT = """
import importlib.abc, os, runpy, signal, sys


class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, CtrlC())
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(sys.argv[0])  # as `python script.py` sets it
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("script", SCRIPTS)
def test_ctrl_c_while_the_script_imports_is_one_line_and_exit_130(script, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_IMPORT, str(ROOT / f"{script}.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip() == "error: interrupted before training started: nothing to save", result.stderr
    assert not (tmp_path / "runs").exists()


TWIN_ENV = '''
import gymnasium
import numpy as np
from gymnasium import spaces


class TwinEnv(gymnasium.Env):
    """Two agents, 5 steps, observations from the env's RNG. `scale` multiplies the rewards; agent 1 has
    `agent_1_actions` actions (3 or 2: the same sizes either way, its third action is then never available)."""

    def __init__(self, scale=1.0, agent_1_actions=3):
        self.observation_space = spaces.Tuple([spaces.Box(0, 1, (3,), np.float32)] * 2)
        self.action_space = spaces.Tuple([spaces.Discrete(3), spaces.Discrete(agent_1_actions)])
        self.scale = scale

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return tuple(self.np_random.random(3, dtype=np.float32) for _ in range(2)), {}

    def step(self, actions):
        obs = tuple(self.np_random.random(3, dtype=np.float32) for _ in range(2))
        return obs, [self.scale * float(a) for a in actions], False, False, {}


for name, kwargs in [("Twin-v0", {}), ("TwinDouble-v0", {"scale": 2.0}), ("TwinNarrow-v0", {"agent_1_actions": 2})]:
    gymnasium.register(name, entry_point=f"{__name__}:TwinEnv", max_episode_steps=5, kwargs=kwargs)
'''


def test_a_branch_to_another_env_replays_the_logged_actions_through_it_or_says_in_one_line_why_it_cannot(tmp_path):
    """The replay buffer left out of the checkpoints (rebuilt from the actions taken): a branch to an env with other
    rewards replays them through that env and trains on; one where those actions are unavailable stops, one line."""
    (tmp_path / "twin_env.py").write_text(TWIN_ENV)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def run(*flags):
        return subprocess.run(
            [sys.executable, str(ROOT / "cadp_qmix.py"), *flags], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    first = run(
        *("--env-id", "twin_env:Twin-v0", "--num-envs", "2", "--total-timesteps", "300", "--eval-episodes", "2"),
        *("--checkpoint-interval", "100", "--checkpoint-buffer-max-mb", "0", *TINY["cadp_qmix"]),
    )
    assert final_returns(first) == (20.0, 20.0), first.stdout[-2000:]  # 5 steps of the largest actions, 2 + 2
    (parent,) = (tmp_path / "runs").iterdir()
    before = file_hashes(parent)

    doubled = run("--resume", str(parent), "--branch", "--env-id", "twin_env:TwinDouble-v0", "--total-timesteps", "500")
    assert final_returns(doubled)[1] == 40.0 and re.search(r"^rebuilt \d+ episodes in", doubled.stdout, re.MULTILINE)
    branch = branched_run(doubled.stdout, tmp_path)
    assert json.loads((branch / "branch.json").read_text())["parent"]["changed"] == {
        "env_id": ["twin_env:Twin-v0", "twin_env:TwinDouble-v0"]
    }

    narrow = run("--resume", str(parent), "--branch", "--env-id", "twin_env:TwinNarrow-v0", "--total-timesteps", "500")
    assert_one_error_line(narrow.returncode, narrow.stderr, "this command's envs refuse them (at step", "unavailable")
    assert sorted((tmp_path / "runs").iterdir()) == sorted([parent, branch])  # the refused branch wrote nothing
    assert file_hashes(parent) == before
