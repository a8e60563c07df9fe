"""Envs stepped in worker processes, for env families whose step is slow Python or C++ work (GRF: ~150-300
steps/s per env), so that --num-envs copies use every core. common/vec_env.py's VecMultiAgentEnv keeps env 0 in
its own process (it draws --capture-video's frames) and hands the others to EnvWorkers, a few processes with one
pipe each.

Each worker builds its envs with common.envs.make_env (or unpickles those of a checkpoint) and serves
commands: step (one action array per env of its own), reset (one env), pickle (all its envs, for a
checkpoint), close. Workers are plain `python -m common.workers`
processes (not multiprocessing's: its "spawn" and "forkserver" import the calling script again in every
worker, torch with it, and "fork" would copy the trainer's threads and GRF's engine state); each talks over
one socket pair and ends when the run does (its socket closes).
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection

import numpy as np

from common.envs import make_env

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where `common` is importable from


def _serve(pipe: Connection) -> None:
    # Ctrl-C and SIGTERM reach the whole process group: the trainer answers them with a checkpoint, which needs
    # the workers' envs, so the workers leave stopping to it (they end when its socket closes)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        env_id, env_kwargs, count, saved = pipe.recv()
        envs = pickle.loads(saved) if saved is not None else [make_env(env_id, **env_kwargs) for _ in range(count)]
    except Exception as error:  # e.g. EnvError: reported to the parent, which raises it
        pipe.send(("error", error))
        return
    pipe.send(("ok", len(envs)))
    while True:
        try:
            command, data = pipe.recv()
        except EOFError:  # the run has ended
            return
        try:
            if command == "step":
                result = [env.step(actions) for env, actions in zip(envs, data)]
            elif command == "reset":
                index, seed = data
                result = envs[index].reset(seed=seed)
            elif command == "pickle":
                result = pickle.dumps(envs, protocol=pickle.HIGHEST_PROTOCOL)
            elif command == "close":
                for env in envs:
                    env.close()
                pipe.send(("ok", None))
                return
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception as error:
            pipe.send(("error", error))
        else:
            pipe.send(("ok", result))


class EnvWorkers:
    """`count` envs of env_id split over `workers` processes (or the envs pickled in `saved`, one blob per
    worker, from pickled()). Envs are numbered 0..count-1 across the workers, in order."""

    def __init__(self, env_id: str, env_kwargs: dict, count: int, workers: int, saved: list[bytes] | None = None):
        sizes = [len(range(w, count, workers)) for w in range(workers)] if saved is None else None
        self._pipes, self._processes = [], []
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
        for w in range(workers if saved is None else len(saved)):
            parent, child = socket.socketpair()
            process = subprocess.Popen(
                [sys.executable, "-m", "common.workers", str(child.fileno())],
                pass_fds=[child.fileno()],
                env=environment,
            )
            child.close()
            pipe = Connection(parent.detach())
            pipe.send((env_id, env_kwargs, sizes[w] if sizes else 0, None if saved is None else saved[w]))
            self._pipes.append(pipe)
            self._processes.append(process)
        # how many envs each worker holds; which worker, and which of its envs, each env number is
        self.sizes = [self._answer(pipe) for pipe in self._pipes]
        self._where = [(w, j) for w, size in enumerate(self.sizes) for j in range(size)]
        self._starts = np.cumsum([0] + self.sizes)

    @staticmethod
    def _answer(pipe):
        status, result = pipe.recv()
        if status == "error":
            raise result
        return result

    def step_async(self, actions: np.ndarray) -> None:
        """actions (count, N): each worker starts stepping its envs; step_wait() collects the results."""
        for w, pipe in enumerate(self._pipes):
            pipe.send(("step", list(actions[self._starts[w] : self._starts[w + 1]])))

    def step_wait(self) -> list[tuple]:
        """Each env's step() result, in env order."""
        return [result for pipe in self._pipes for result in self._answer(pipe)]

    def reset(self, index: int, seed: int | None) -> tuple:
        w, j = self._where[index]
        self._pipes[w].send(("reset", (j, seed)))
        return self._answer(self._pipes[w])

    def pickled(self) -> list[bytes]:
        """Every worker's envs, pickled (one blob per worker): EnvWorkers(..., saved=...) restarts them."""
        for pipe in self._pipes:
            pipe.send(("pickle", None))
        return [self._answer(pipe) for pipe in self._pipes]

    def close(self) -> None:
        for pipe, process in zip(self._pipes, self._processes):
            try:
                pipe.send(("close", None))
                self._answer(pipe)
            except (OSError, EOFError):
                pass
            pipe.close()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        self._pipes, self._processes = [], []


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
