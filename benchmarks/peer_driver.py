"""Trains pymarlzooplus (the peer implementation) for benchmarks/peer.py and streams what it measures.

Runs INSIDE benchmarks/.peer-venv (pymarlzooplus 1.1.0, numpy 1), never in the project's venv:

    .peer-venv/bin/python benchmarks/peer_driver.py '{"mode": "learn", "algo": "qmix",
        "env_id": "lbforaging:Foraging-8x8-2p-3f-v3", "seed": 1, "t_max": 99999,
        "test_interval": 10000, "test_nepisode": 32, "threads": null}'

The config is the one pymarlzooplus's own entry point builds (config/default.yaml, then
envs/gymma.yaml, then algs/{algo}.yaml), with only the env, the seed, the budget and the test
schedule overridden; training is its own `run_sequential` loop. What is left out is the Sacred
experiment around it (result files, a plotting step and a 10 s sleep at the end), so nothing is
written to disk. Its entry point sets 1 torch thread; so does this driver unless told otherwise.

Timing wraps the training runner's `run()` (acting in the env, test episodes excluded) and the
learner's `train()` (one update). Output: one JSON object per line on the stdout this process was
started with; everything pymarlzooplus prints goes to stderr.

    {"event": "config", "config": {...}}             the full config it trains with
    {"event": "start", "time": unix_time}            its training loop begins (first episode)
    {"event": "train", "step", "elapsed", "return_mean", "episodes"}   learn mode, after each
                                                     training run() (QMIX: 1 episode, MAPPO: 10)
    {"event": "eval", "step", "elapsed", "return_mean", "episodes"}    after each round of tests
    {"event": "summary", "env_steps", "act_s", "update_s", "updates", ...}
"""

import json
import os
import resource
import sys
import time

DRIVER_START = time.time()
ALGOS = ("qmix", "vdn", "mappo")
ENV_TIME_LIMITS = {"lbforaging": 50}  # our LBF: 50 steps; pymarlzooplus's gymma env allows at most 50


def peer_config(algo: str, env_id: str, seed: int, t_max: int, test_interval: int, test_nepisode: int) -> dict:
    """The config dict pymarlzooplus's entry point would build for these settings."""
    import pymarlzooplus
    import yaml
    from pymarlzooplus.main import recursive_dict_update

    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}: choose from {ALGOS}")
    family = env_id.split(":")[0]
    if family not in ENV_TIME_LIMITS:
        raise ValueError(f"env id {env_id!r}: only {sorted(ENV_TIME_LIMITS)} ids are set up for the peer")
    config_dir = os.path.join(os.path.dirname(pymarlzooplus.__file__), "config")
    config: dict = {}
    for name in ("default.yaml", os.path.join("envs", "gymma.yaml"), os.path.join("algs", f"{algo}.yaml")):
        with open(os.path.join(config_dir, name)) as f:
            config = recursive_dict_update(config, yaml.load(f, Loader=yaml.FullLoader))
    return recursive_dict_update(
        config,
        {
            "env": "gymma",
            "env_args": {"key": env_id, "time_limit": ENV_TIME_LIMITS[family], "seed": seed},
            "seed": seed,
            "t_max": t_max,
            "test_interval": test_interval,
            "test_nepisode": test_nepisode,
            "use_tensorboard": False,
            "save_model": False,
        },
    )


def main() -> None:
    request = json.loads(sys.argv[1])
    # JSON lines go to a private copy of stdout; fd 1 itself (Python's and C's prints, rich's
    # console, the env worker processes MAPPO spawns) now writes to stderr
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def emit(event: str, **fields) -> None:
        out.write(json.dumps({"event": event, **fields}) + "\n")

    import importlib
    import logging
    from types import SimpleNamespace

    import numpy as np
    import torch as th
    from pymarlzooplus.main import config_copy
    from pymarlzooplus.run import (
        args_sanity_check,
        le_REGISTRY,
        r_REGISTRY,
        run_sequential,
    )
    from pymarlzooplus.utils.logging_setup import Logger

    # pymarlzooplus registers a few LBF ids of its own under lbforaging's names (other levels);
    # lbforaging imported after it registers them again, so every id means what it means in our envs
    importlib.import_module("lbforaging")

    learn = request["mode"] == "learn"
    config = peer_config(
        request["algo"],
        request["env_id"],
        request["seed"],
        request["t_max"],
        request["test_interval"],
        request["test_nepisode"],
    )
    # as its entry point: 1 torch thread, seeds from config["seed"]
    th.set_num_threads(1 if request.get("threads") is None else int(request["threads"]))
    np.random.seed(config["seed"])
    th.manual_seed(config["seed"])
    console = logging.getLogger("pymarlzooplus")
    config = args_sanity_check(config_copy(config), console)  # e.g. test_nepisode to a multiple of the envs
    emit("config", config=config)

    args = SimpleNamespace(**config)
    args.device = "cuda" if args.use_cuda else "cpu"
    args.device_cnn_modules = "cuda" if args.use_cuda_cnn_modules else "cpu"
    args.results_path = os.getcwd()  # only for saving models, which is off
    args.unique_token = f"{config['name']}_seed{config['seed']}_{request['env_id']}"

    clock = {
        "start": None,
        "start_unix": None,
        "act_s": 0.0,
        "update_s": 0.0,
        "test_s": 0.0,
        "updates": 0,
        "last_eval_step": None,
    }
    runners = []

    def elapsed() -> float:
        return time.perf_counter() - clock["start"]

    class StreamLogger(Logger):
        """pymarlzooplus's logger, quiet; each round of test episodes becomes an eval line."""

        def log_stat(self, key, value, t, to_sacred=True):
            if key == "test_return_mean":
                clock["last_eval_step"] = t
                emit(
                    "eval",
                    step=int(t),
                    elapsed=elapsed(),
                    return_mean=float(value),
                    episodes=len(runners[0].test_returns),
                )  # the returns it averaged, cleared after this

        def print_recent_stats(self, *args, **kwargs):
            pass

    base_runner, base_learner = r_REGISTRY[args.runner], le_REGISTRY[args.learner]

    class TimedRunner(base_runner):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            runners.append(self)

        def run(self, test_mode=False):
            if clock["start"] is None:
                clock["start"], clock["start_unix"] = time.perf_counter(), time.time()
                emit("start", time=clock["start_unix"])
            begin = time.perf_counter()
            batch, returns = super().run(test_mode=test_mode)
            seconds = time.perf_counter() - begin
            if test_mode:
                clock["test_s"] += seconds
            else:
                clock["act_s"] += seconds
                if learn:
                    emit(
                        "train",
                        step=int(self.t_env),
                        elapsed=elapsed(),
                        return_mean=float(np.mean(returns)),
                        episodes=len(returns),
                    )
            return batch, returns

        def close_env(self):
            pass  # closed after the final evaluation below

    class TimedLearner(base_learner):
        def train(self, *a, **kw):
            begin = time.perf_counter()
            result = super().train(*a, **kw)
            clock["update_s"] += time.perf_counter() - begin
            clock["updates"] += 1
            return result

    r_REGISTRY[args.runner], le_REGISTRY[args.learner] = TimedRunner, TimedLearner
    run_sequential(args=args, logger=StreamLogger(console))
    loop_s = elapsed()
    runner = runners[0]
    if learn and clock["last_eval_step"] != runner.t_env:
        # a final round of its test episodes at the end of the budget, as our scripts' final eval
        for _ in range(max(1, args.test_nepisode // runner.batch_size)):
            runner.run(test_mode=True)
    base_runner.close_env(runner)
    workers = getattr(runner, "ps", [])  # MAPPO's env worker processes: they take seconds to exit
    for process in workers:
        process.terminate()
        process.join()  # reaped, so that their peak RSS counts in RUSAGE_CHILDREN

    emit(
        "summary",
        env_steps=int(runner.t_env),
        act_s=clock["act_s"],
        update_s=clock["update_s"],
        updates=clock["updates"],
        test_s=clock["test_s"],
        loop_s=loop_s,
        threads=th.get_num_threads(),
        startup_s=clock["start_unix"] - DRIVER_START,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_rss_worker_mib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers else None,
        workers=len(workers),
        test_nepisode=args.test_nepisode,
        batch_size_run=args.batch_size_run,
    )
    out.close()


if __name__ == "__main__":  # a guard MAPPO needs: its env workers are spawned processes that import this file
    main()
