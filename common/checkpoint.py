"""Checkpoint files and what goes in them, for common/run.py: atomic writes, the last K kept, the
latest found, one-line load errors, env snapshots, RNG states, stop signals and divergence checks.

Nothing here decides what a checkpoint holds: each script names that at its Run.save_checkpoint call.
"""

import io
import math
import os
import pickle
import random
import re
import shlex
import signal
import sys
import zlib
from typing import NoReturn

import numpy as np
import torch

from common.cli import fail

SUFFIX = ".cadp_model"
_PERIODIC = re.compile(r"step_(\d+)" + re.escape(SUFFIX))


# ---- checkpoint files ----
def save_atomic(state: dict, path: str) -> None:
    """torch.save to a temporary file, then rename: a kill mid-write never leaves a truncated checkpoint."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        with open(temporary, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        descriptor = os.open(directory, os.O_RDONLY)  # the rename itself survives a power cut
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        if os.path.exists(temporary):
            os.remove(temporary)
        fail(f"cannot write checkpoint {path}: {error}", code=1)


def periodic_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """(global_step, path) of `run_dir/checkpoints/step_*.cadp_model`, oldest first."""
    directory = os.path.join(run_dir, "checkpoints")
    found = [
        (int(m.group(1)), os.path.join(directory, name))
        for name in (os.listdir(directory) if os.path.isdir(directory) else [])
        if (m := _PERIODIC.fullmatch(name))
    ]
    return sorted(found)


def find_checkpoint(path: str, models: bool = True) -> str:
    """A checkpoint file as given, or a run directory's newest one: the periodic one of the highest step, or
    (with `models`) the newer of it and the saved model of --save-model."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        fail(f"{path}: no such checkpoint file or run directory")
    candidates = [p for _, p in periodic_checkpoints(path)[-1:]] + [
        os.path.join(path, n) for n in os.listdir(path) if n.endswith(SUFFIX) and models
    ]
    if not candidates:
        fail(
            f"{path}: no checkpoint in this directory (checkpoints/step_*{SUFFIX} or *{SUFFIX}); "
            "it is written every --checkpoint-interval steps"
        )
    return max(candidates, key=os.path.getmtime)


def load_checkpoint(path: str, script: str, models: bool = True) -> dict:
    """The checkpoint at `path` (file or run directory), checked to be one of `script`'s.
    Adds "path" and "run_dir" (where it lies, which a resumed run writes into)."""
    path = find_checkpoint(path, models)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)  # our own files: they hold pickled envs
    except Exception as error:  # a truncated zip, garbage, a pickle of something else: all one line
        fail(
            f"{path} cannot be read: it is truncated or not a checkpoint ({_first_line(error)}); "
            "use an earlier one (the run directory's checkpoints/)"
        )
    if not isinstance(checkpoint, dict) or "script" not in checkpoint:
        fail(f"{path} is not a checkpoint of these scripts (or of an older version without a 'script' entry)")
    if checkpoint["script"] != script:
        fail(f"{path} is a {checkpoint['script']} checkpoint; use it with {checkpoint['script']}.py, not {script}.py")
    directory = os.path.dirname(os.path.abspath(path))
    run_dir = os.path.dirname(directory) if os.path.basename(directory) == "checkpoints" else directory
    checkpoint["path"], checkpoint["run_dir"] = path, os.path.relpath(run_dir)
    return checkpoint


def _first_line(error: Exception) -> str:
    """The first informative line of an exception's message (load_state_dict's first line is only a header)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.strip().endswith(":")]
    return lines[0] if lines else type(error).__name__


def env_spec(envs) -> dict:
    """What a checkpoint's networks were built for: the env id and the sizes it gives."""
    return {
        "env_id": envs.env_id,
        "n_agents": envs.n_agents,
        "obs_dim": envs.obs_dim,
        "state_dim": envs.state_dim,
        "n_actions": envs.n_actions,
    }


def check_env(checkpoint: dict, envs, same_env_id: bool = True) -> None:
    """fail() unless the checkpoint is for envs of these sizes (and, with same_env_id, this env id)."""
    saved, now = checkpoint["env"], env_spec(envs)
    if (saved if same_env_id else {**saved, "env_id": now["env_id"]}) != now:

        def describe(spec):
            return (
                f"{spec['env_id']} ({spec['n_agents']} agents, observations {spec['obs_dim']}, "
                f"state {spec['state_dim']}, {spec['n_actions']} actions)"
            )

        fail(
            f"{checkpoint['path']} was trained on {describe(saved)}, this command's env is {describe(now)}; "
            "drop --env-id and the --obs-* flags to use the checkpoint's own"
            + ("" if same_env_id else " (a branch may change the env to one of the same sizes)")
        )


def restore(checkpoint: dict, envs, same_env_id: bool = True, **modules) -> None:
    """Check that the checkpoint is for these envs (same_env_id False: for envs of the same sizes; a branch), then
    load_state_dict of each module (or optimizer) from the checkpoint entry of the same name."""
    check_env(checkpoint, envs, same_env_id)
    for name, module in modules.items():
        try:
            module.load_state_dict(checkpoint[name])
        except (RuntimeError, ValueError, KeyError) as error:
            fail(
                f"{checkpoint['path']}: its {name} does not fit the networks of this command ({_first_line(error)}); "
                "drop the flags that change network sizes (--hidden-dim, --att-heads, --no-advice, ...)"
            )


# ---- env snapshots and RNG states ----
_warned: set[str] = set()


def snapshot(obj, what: str) -> bytes | None:
    """The pickled state of `obj` (envs with their RNGs and episodes in progress), or None with a
    warning (once) when something in it cannot be pickled. How an env pickles is its adapter's
    business (common/envs.py: MultiAgentEnv.__getstate__)."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        if what and what not in _warned:
            _warned.add(what)
            print(
                f"warning: {what} cannot be pickled ({type(error).__name__}: {error}); checkpoints hold no "
                "env state, so a resumed run starts new episodes from a new seed",
                file=sys.stderr,
            )
        return None


def packed_snapshot(obj, what: str) -> bytes | None:
    """snapshot() compressed, as a checkpoint stores it: the envs' episodes in progress are mostly zeros
    (SMAX 3s5z_vs_3s6z: 7.1 MB pickled, 0.5 MB packed, in 0.1 s), so a checkpoint is small enough to
    carry between machines."""
    pickled = snapshot(obj, what)
    return None if pickled is None else zlib.compress(pickled)


# classes that checkpoints of older versions pickled under another module: (old module, name) -> new module
_MOVED = {("common.envs", "VecMultiAgentEnv"): "common.vec_env"}


class _SnapshotUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        return super().find_class(_MOVED.get((module, name), module), name)


def unpack_snapshot(packed: bytes):
    """What packed_snapshot() packed. Checkpoints written before the envs were compressed hold the plain
    pickle, which starts with pickle's PROTO opcode (0x80) where zlib's header starts with 0x78."""
    pickled = packed if packed[:1] == pickle.PROTO else zlib.decompress(packed)
    return _SnapshotUnpickler(io.BytesIO(pickled)).load()


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- the training loop's side ----
class Checkpointer:
    """Periodic checkpoints of one run, a stop flag set by SIGINT/SIGTERM, and divergence checks.

    A checkpoint is due whenever global_step crosses a multiple of `interval` (0: never), and after
    the first SIGINT/SIGTERM: the loop finishes its step, saves, and save() then exits with code 0
    and the command that resumes. A second signal stops at once, without a checkpoint.
    A run resumed in its own directory starts from its newest checkpoint (common/run.py refuses any
    other), so it only removes what a kill mid-write left behind.
    """

    def __init__(self, run_dir: str, interval: int, keep: int, writer, progress, resumed_step: int | None = None):
        self.run_dir, self.interval, self.keep, self.writer, self.progress = run_dir, interval, keep, writer, progress
        self.stop_signal: str | None = None
        self.last_step = resumed_step or 0
        directory = os.path.join(run_dir, "checkpoints")
        if resumed_step is not None and os.path.isdir(directory):
            for name in os.listdir(directory):
                if SUFFIX + ".tmp" in name:
                    os.remove(os.path.join(directory, name))
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal is not None:
            self.progress.write(f"{signal.Signals(signum).name} again: stopping without a checkpoint")
            raise SystemExit(128 + signum)
        self.stop_signal = signal.Signals(signum).name
        self.progress.write(
            f"{self.stop_signal}: finishing this step, then writing a checkpoint "
            "(send it again to stop at once, without one)"
        )

    def latest(self) -> str | None:
        checkpoints = periodic_checkpoints(self.run_dir)
        return checkpoints[-1][1] if checkpoints else None

    def resume_command(self, path: str) -> str:
        return shlex.join(["python", sys.argv[0], "--resume", path])

    def _close(self) -> None:
        self.progress.close()  # before the last message, which would otherwise land on the bar's line
        self.writer.close()

    def _diverged(self, what: str, global_step: int) -> NoReturn:
        self._close()
        latest = self.latest()
        keep = (
            f"the last good checkpoint is {latest}; to continue from it with other flags: "
            f"{self.resume_command(latest)} --branch --learning-rate ..."
            if latest
            else "no checkpoint was written yet"
        )
        fail(f"{what} at step {global_step}: training diverged (a lower --learning-rate?); {keep}", code=1)

    def check_finite(self, global_step: int, **terms) -> None:
        """Stop the run, naming the term and the step, if any loss term (or gradient norm) is NaN or inf."""
        values = torch.stack(
            [torch.as_tensor(value, dtype=torch.float32).detach().reshape(()).cpu() for value in terms.values()]
        )
        if not torch.isfinite(values).all():
            self._diverged(
                ", ".join(
                    f"{name} is {value}" for name, value in zip(terms, values.tolist()) if not math.isfinite(value)
                ),
                global_step,
            )

    def due(self, global_step: int) -> bool:
        return self.stop_signal is not None or (
            self.interval > 0 and global_step // self.interval > self.last_step // self.interval
        )

    def save(self, state: dict, global_step: int) -> str:
        """Write `run_dir/checkpoints/step_{global_step}.cadp_model` atomically and keep the last K;
        then exit if a stop signal came. Refuses (and stops the run) if any saved tensor is NaN or
        inf, so the previous checkpoints stay the good ones."""
        for name, value in state.items():
            if _has_non_finite(value):
                self._diverged(f"non-finite values in {name}", global_step)
        self.writer.flush()  # the events up to this step reach the disk before the checkpoint does
        path = os.path.join(self.run_dir, "checkpoints", f"step_{global_step}{SUFFIX}")
        save_atomic(state, path)
        for _, old in periodic_checkpoints(self.run_dir)[: -self.keep]:
            os.remove(old)
        self.last_step = global_step
        if self.stop_signal is not None:
            self._close()
            print(
                f"stopped by {self.stop_signal} at step {global_step}; checkpoint written to {path}\n"
                f"resume with: {self.resume_command(path)}",
                flush=True,
            )
            raise SystemExit(0)
        return path


def _has_non_finite(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and not torch.isfinite(value).all()
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    return False
