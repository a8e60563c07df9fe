"""Environment throughput beside training speed, measured in one run.

Env steps per second of `--env-id` (default smax:5m_vs_6m) through the scripts' vectorised env
(make_vec_env) with a random policy over the available actions, for each `--num-envs` value; for
families whose copies step in worker processes (GRF), also in one process, side by side. Then the
training SPS of a short cadp_qmix.py run on the same env. Prints a table and writes it to
benchmarks/results/{family}_throughput.csv (other env ids of the family kept). SMAX and GRF need their extras.

    python benchmarks/env_throughput.py                      # smax:5m_vs_6m, 1 and 16 envs
    python benchmarks/env_throughput.py --env-id smax:3m --num-envs 1 8 64
    python benchmarks/env_throughput.py --env-id gfootball:academy_3_vs_1_with_keeper --num-envs 1 8
"""

import argparse
import csv
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.vec_env import WORKER_FAMILIES, VecMultiAgentEnv, make_vec_env  # noqa: E402


def env_steps_per_second(env_id: str, num_envs: int, seconds: float, one_process: bool = False) -> float:
    """Random available actions; start-up and compile time excluded (the first steps warm up)."""
    envs = VecMultiAgentEnv(env_id, num_envs, 0, env_workers=0) if one_process else make_vec_env(env_id, num_envs, 0)
    rng = np.random.default_rng(0)
    _, _, avail = envs.reset()
    for _ in range(20):  # compile and warm up
        _, _, avail, *_ = envs.step((rng.random(avail.shape) * avail).argmax(-1))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, avail, *_ = envs.step((rng.random(avail.shape) * avail).argmax(-1))
        steps += num_envs
    rate = steps / (time.perf_counter() - start)
    envs.close()
    return rate


def training_steps_per_second(env_id: str, total_timesteps: int) -> tuple[float, int]:
    """SPS of a short cadp_qmix.py run (default flags, no evaluation during it, no checkpoints),
    taken from the script's own summary line: steps over wall time including start-up and compile."""
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "cadp_qmix.py"),
                "--env-id",
                env_id,
                "--total-timesteps",
                str(total_timesteps),
                "--eval-interval",
                str(10 * total_timesteps),
                "--eval-episodes",
                "4",
                "--checkpoint-interval",
                "0",
            ],
            cwd=scratch,
            capture_output=True,
            text=True,
            check=True,
        )
    steps, seconds = map(int, re.search(r"final eval after (\d+) steps \((\d+) s\)", result.stdout).groups())
    return steps / max(seconds, 1), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="smax:5m_vs_6m")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per env count")
    parser.add_argument("--train-steps", type=int, default=5000, help="steps of the cadp_qmix.py run (0 = skip)")
    args = parser.parse_args()
    env_id, family = args.env_id, args.env_id.partition(":")[0]
    # where copies step in worker processes, each count is measured both ways, one after the other
    ways = [("env, random policy", False)]
    if family in WORKER_FAMILIES:
        ways = [("env, random policy, worker processes", False), ("env, random policy, one process", True)]
    rows = [
        {
            "what": what,
            "env_id": env_id,
            "num_envs": n,
            "steps_per_second": round(env_steps_per_second(env_id, n, args.seconds, one_process)),
        }
        for n in args.num_envs
        for what, one_process in ways
        if n > 1 or not one_process
    ]
    if args.train_steps:
        sps, steps = training_steps_per_second(env_id, args.train_steps)
        rows.append(
            {
                "what": f"cadp_qmix.py training ({steps} steps, defaults)",
                "env_id": env_id,
                "num_envs": 8,
                "steps_per_second": round(sps),
            }
        )

    width = max(16, len(env_id))
    print(f"{'what':<45} {'env_id':<{width}} {'num_envs':>8} {'steps/s':>9}")
    for row in rows:
        print(f"{row['what']:<45} {row['env_id']:<{width}} {row['num_envs']:>8} {row['steps_per_second']:>9}")
    out = ROOT / "benchmarks" / "results" / f"{family}_throughput.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # the family's other env ids stay; this one's rows are replaced
        with open(out, newline="") as f:
            rows = [row for row in csv.DictReader(f) if row["env_id"] != env_id] + rows
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
