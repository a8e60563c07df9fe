"""The peer implementation: pymarlzooplus 1.1.0 (EPyMARL family) on our envs, for speed and learning.

pymarlzooplus pins numpy<2, so it lives in a virtualenv of its own, benchmarks/.peer-venv, made
from requirements-peer.txt on first use (about 1.6 GB; torch is most of it) and remade when that
file changes. Each call runs benchmarks/peer_driver.py in that venv, which trains with
pymarlzooplus's own config and loop and streams what it measures back as JSON lines.

    python benchmarks/peer.py speed --algo qmix --env-id lbforaging:Foraging-8x8-2p-3f-v3 --env-steps 20000
    python benchmarks/peer.py learn --algo mappo --env-id lbforaging:Foraging-8x8-2p-3f-v3 --seed 1 \\
        --total-timesteps 300000 --eval-interval 10000 --eval-episodes 32 --run-dir runs/peer_mappo_1

Its configs (defaults of pymarlzooplus, only the env, seed, budget and tests set here):
QMIX/VDN: one env (episode runner), one update per episode on 32 episodes from a 5000-episode
buffer, Adam lr 5e-4, GRU 64, target copy every 200 updates, epsilon 1 -> 0.05 over 50k steps,
rewards standardised, greedy tests. MAPPO: 10 envs in worker processes (parallel runner), one
update per 10 episodes (4 epochs on the whole batch, actor and feed-forward critic on the state),
5-step returns, clip 0.2, entropy 0.01, Adam lr 5e-4, sampled (not greedy) tests, in rounds of
10 episodes. Its LBF wrapper sums the agents' rewards (team return <= 1), ends episodes at 50
steps, treats that time limit as a termination (no bootstrap) and marks all 6 actions available.
"""

import argparse
import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "benchmarks" / ".peer-venv"
REQUIREMENTS = ROOT / "requirements-peer.txt"
DRIVER = ROOT / "benchmarks" / "peer_driver.py"
MARKER = "requirements-peer.sha256"  # in the venv: the hash of the requirements it was made from
PEER = "pymarlzooplus 1.1.0"
SPEED_ALGOS = ("qmix", "vdn", "mappo")
LEARN_ALGOS = ("qmix", "vdn", "mappo")
ENV_FAMILIES = ("lbforaging",)  # what peer_driver.py sets up (time limit, reward) like our envs


class PeerError(RuntimeError):
    """pymarlzooplus, or the install of its venv, failed; the message ends with its output's tail."""


# ---- The venv ------------------------------------------------------------------------------------
def requirements_hash(requirements: Path = REQUIREMENTS) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def venv_is_current(venv: Path = VENV, requirements: Path = REQUIREMENTS) -> bool:
    """The venv exists, finished installing, and was made from these exact requirements."""
    marker = venv / MARKER
    if not (venv_python(venv).exists() and marker.exists()):
        return False
    return marker.read_text().strip() == requirements_hash(requirements)


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def ensure_venv(venv: Path = VENV, requirements: Path = REQUIREMENTS) -> Path:
    """Creates the peer's venv, or reuses it while requirements-peer.txt is unchanged (its hash is kept
    in the venv; written last, so an interrupted install is redone). Returns the venv's python."""
    venv, requirements = Path(venv), Path(requirements)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)  # several runs may start at once; one installs, the others wait
        if venv_is_current(venv, requirements):
            return venv_python(venv)
        if venv.exists():
            print(f"{requirements.name} changed or an install was cut short: remaking {venv}", flush=True)
            shutil.rmtree(venv)
        print(f"creating {venv} from {requirements.name} (pip install --no-deps; about a minute)", flush=True)
        start = time.time()
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [
                str(venv_python(venv)),
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--disable-pip-version-check",
                "-r",
                str(requirements),
            ],
        ]
        for command in steps:
            result = subprocess.run(command, check=False, capture_output=True, text=True)
            if result.returncode != 0:
                raise PeerError(
                    f"creating the peer venv failed (exit code {result.returncode}): "
                    f"{' '.join(command)}\n{tail(result.stdout + result.stderr)}"
                )
        (venv / MARKER).write_text(requirements_hash(requirements) + "\n")
        print(f"peer venv ready in {time.time() - start:.0f} s", flush=True)
    return venv_python(venv)


# ---- Talking to the driver -----------------------------------------------------------------------
def check_request(algo: str, env_id: str, algos: tuple[str, ...]) -> None:
    if algo not in algos:
        raise ValueError(f"unknown algo {algo!r} for the peer: choose from {', '.join(algos)}")
    if env_id.split(":")[0] not in ENV_FAMILIES:
        raise ValueError(
            f"env id {env_id!r}: the peer is set up for {', '.join(ENV_FAMILIES)} ids only "
            "(e.g. lbforaging:Foraging-8x8-2p-3f-v3)"
        )


def parse_record(line: str) -> dict | None:
    """One JSON line of the driver as a dict with an "event"; None for anything else."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "event" in record else None


def run_driver(request: dict, log_path: Path, cwd: Path, on_record=None) -> list[dict]:
    """Runs peer_driver.py with `request` in the peer's venv, its stderr to log_path; returns its records
    (each also passed to on_record as it arrives). Raises PeerError with the log's tail on failure."""
    python = ensure_venv()
    records = []
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(python), str(DRIVER), json.dumps(request)], cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=log
        )
        try:
            for line in process.stdout:
                record = parse_record(line)
                if record is not None:
                    records.append(record)
                    if on_record is not None:
                        on_record(record)
        except BaseException:
            process.kill()  # our side failed or was interrupted: do not leave the peer training
            process.wait()
            raise
        code = process.wait()
    if code != 0 or not any(r["event"] == "summary" for r in records):
        raise PeerError(
            f"pymarlzooplus ({request['mode']} {request['algo']} on {request['env_id']}) failed with "
            f"exit code {code}; last lines of its stderr:\n{tail(log_path.read_text(errors='replace'))}"
        )
    return records


def summary_of(records: list[dict]) -> dict:
    return next(r for r in records if r["event"] == "summary")


def config_of(records: list[dict]) -> dict:
    return next((r["config"] for r in records if r["event"] == "config"), {})


# ---- Speed ---------------------------------------------------------------------------------------
def speed_result(summary: dict, wall_s: float) -> dict:
    """The speed figures from the driver's summary line; acting and updates only (no start-up, no tests)."""
    train_loop_s = summary["act_s"] + summary["update_s"]
    return {
        "env_steps": summary["env_steps"],
        "env_steps_per_s": summary["env_steps"] / train_loop_s if train_loop_s > 0 else math.nan,
        "update_ms": 1000 * summary["update_s"] / summary["updates"] if summary["updates"] else math.nan,
        "updates": summary["updates"],
        "peak_rss_mib": summary["peak_rss_mib"],
        "wall_s": wall_s,
        "threads": summary["threads"],
        # besides: the loop's own wall time less its test episodes (buffer and logging included),
        # the driver's start-up, and MAPPO's env worker processes (each one's peak)
        "loop_steps_per_s": summary["env_steps"] / max(summary["loop_s"] - summary["test_s"], 1e-9),
        "startup_s": summary["startup_s"],
        "peak_rss_worker_mib": summary.get("peak_rss_worker_mib"),
        "workers": summary.get("workers", 0),
    }


def measure_speed(algo: str, env_id: str, env_steps: int, threads: int | None = None) -> dict:
    """Env steps per second of the peer's training loop (its runner's run() plus its learner's train()),
    start-up and test episodes excluded. threads=None: the peer's own setting (1 torch thread, as
    its entry point sets); an int: torch.set_num_threads(threads).

    Returns env_steps, env_steps_per_s, update_ms (mean per train() call), updates, peak_rss_mib
    (the training process), wall_s (the whole subprocess, start-up included), threads, and a few
    more (see speed_result)."""
    check_request(algo, env_id, SPEED_ALGOS)
    if env_steps < 1:
        raise ValueError(f"env_steps must be positive, got {env_steps}")
    # one round of tests runs after its first episode whatever the interval; it is not timed
    request = {
        "mode": "speed",
        "algo": algo,
        "env_id": env_id,
        "seed": 1,
        "t_max": env_steps - 1,
        "test_interval": 10 * env_steps + 1,
        "test_nepisode": 1,
        "threads": threads,
    }
    ensure_venv()  # not timed
    with tempfile.TemporaryDirectory(prefix="peer-speed-") as scratch:
        start = time.time()
        records = run_driver(request, Path(scratch) / "peer.log", Path(scratch))
        wall_s = time.time() - start
    return speed_result(summary_of(records), wall_s)


# ---- Learning ------------------------------------------------------------------------------------
class EventWriter:
    """Writes the driver's records as TensorBoard scalars at x = env steps, with wall times counted from
    the start of the peer's training loop (so its start-up and imports are not in them).

    The SummaryWriter is made only when that start arrives: its file header is then the run's first
    event, as in our scripts, whose wall-time origin is also their writer's creation."""

    def __init__(self, run_dir: Path, config: dict | None = None):
        # imported here, as it takes seconds: not when the start arrives, which would delay the header
        from torch.utils.tensorboard import SummaryWriter

        self.summary_writer = SummaryWriter
        self.run_dir, self.config = Path(run_dir), config or {}
        self.writer = None
        self.start: float | None = None

    def __call__(self, record: dict) -> None:
        event = record["event"]
        if event == "config":
            self.config = {**self.config, "peer_config": record["config"]}
        elif event == "start":
            self.start = record["time"]
            self.writer = self.summary_writer(str(self.run_dir))
            rows = "\n".join(f"|{key}|{value}|" for key, value in flatten(self.config).items())
            self.writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{rows}", walltime=self.start)
        elif event in ("train", "eval"):
            if self.writer is None:
                raise PeerError(f"a {event!r} record came before the peer's start record")
            step, walltime = record["step"], self.start + record["elapsed"]
            if event == "eval":
                self.writer.add_scalar(
                    "eval/decentralized_episodic_return", record["return_mean"], step, walltime=walltime
                )
            else:
                self.writer.add_scalar("charts/episodic_return", record["return_mean"], step, walltime=walltime)
                self.writer.add_scalar("charts/SPS", int(step / max(record["elapsed"], 1e-9)), step, walltime=walltime)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def flatten(config: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_learning(
    algo: str, env_id: str, seed: int, total_timesteps: int, eval_interval: int, eval_episodes: int, run_dir: str
) -> None:
    """Trains the peer for total_timesteps env steps (it stops at the end of the episode, or the round of
    10 episodes for MAPPO, that reaches it) and writes into run_dir: a TensorBoard event file with
    eval/decentralized_episodic_return (its test return mean), charts/episodic_return (training
    return, mean of each run() call) and charts/SPS; peer.json (config and summary); peer.log (its
    stderr); and `done` last.

    Tests follow the peer's schedule: after its first training episode, then whenever eval_interval
    steps have passed since the last ones, and once more at the end if the last ones came earlier.
    MAPPO's tests come in rounds of 10 episodes: eval_episodes is rounded down to a multiple of 10
    (at least 10); peer.json records the number used."""
    check_request(algo, env_id, LEARN_ALGOS)
    if total_timesteps < 1 or eval_interval < 1 or eval_episodes < 1:
        raise ValueError("total_timesteps, eval_interval and eval_episodes must be positive")
    run_path = Path(run_dir)
    run_path.mkdir(parents=True, exist_ok=True)
    for stale in [*run_path.glob("events.out.tfevents.*"), run_path / "done", run_path / "peer.json"]:
        stale.unlink(missing_ok=True)  # a previous attempt's, which would mix with this run's curves
    asked = {
        "algo": algo,
        "env_id": env_id,
        "seed": seed,
        "total_timesteps": total_timesteps,
        "eval_interval": eval_interval,
        "eval_episodes": eval_episodes,
        "peer": PEER,
    }
    request = {
        "mode": "learn",
        "algo": algo,
        "env_id": env_id,
        "seed": seed,
        "t_max": total_timesteps - 1,
        "test_interval": eval_interval,
        "test_nepisode": eval_episodes,
        "threads": None,
    }
    ensure_venv()
    writer = EventWriter(run_path, asked)
    start = time.time()
    try:
        records = run_driver(request, run_path / "peer.log", run_path, on_record=writer)
    finally:
        writer.close()
    summary = summary_of(records)
    evals = [r for r in records if r["event"] == "eval"]
    result = {
        **asked,
        "peer_config": config_of(records),
        "eval_episodes_used": summary["test_nepisode"],
        "final_step": summary["env_steps"],
        "final_eval_return": evals[-1]["return_mean"] if evals else None,
        "evals": len(evals),
        "train_loop_s": summary["loop_s"],
        "startup_s": summary["startup_s"],
        "wall_s": time.time() - start,
        "threads": summary["threads"],
        "peak_rss_mib": summary["peak_rss_mib"],
    }
    (run_path / "peer.json").write_text(json.dumps(result, indent=2) + "\n")
    (run_path / "done").write_text(time.strftime("%Y-%m-%d %H:%M:%S") + "\n")


# ---- Command line --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    speed = commands.add_parser("speed", help="env steps/s of the peer's training loop")
    speed.add_argument("--algo", choices=SPEED_ALGOS, required=True)
    speed.add_argument("--env-id", default="lbforaging:Foraging-8x8-2p-3f-v3")
    speed.add_argument("--env-steps", type=int, default=20_000)
    speed.add_argument("--threads", type=int, default=None, help="torch threads (default: the peer's own, 1)")
    learn = commands.add_parser("learn", help="train the peer and write a TensorBoard event file")
    learn.add_argument("--algo", choices=LEARN_ALGOS, required=True)
    learn.add_argument("--env-id", default="lbforaging:Foraging-8x8-2p-3f-v3")
    learn.add_argument("--seed", type=int, default=1)
    learn.add_argument("--total-timesteps", type=int, default=100_000)
    learn.add_argument("--eval-interval", type=int, default=10_000)
    learn.add_argument("--eval-episodes", type=int, default=32)
    learn.add_argument("--run-dir", required=True)
    args = parser.parse_args(argv)

    if args.command == "speed":
        result = measure_speed(args.algo, args.env_id, args.env_steps, args.threads)
        print(json.dumps({"algo": args.algo, "env_id": args.env_id, **result}))
        return 0
    run_learning(
        args.algo, args.env_id, args.seed, args.total_timesteps, args.eval_interval, args.eval_episodes, args.run_dir
    )
    info = json.loads((Path(args.run_dir) / "peer.json").read_text())
    print(
        f"peer {args.algo}: {info['final_step']} steps in {info['train_loop_s']:.0f} s, "
        f"final test return {info['final_eval_return']:.3f} ({info['eval_episodes_used']} episodes); "
        f"written to {args.run_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
