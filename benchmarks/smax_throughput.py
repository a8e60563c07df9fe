"""SMAX environment throughput beside training speed, measured in one run.

Env steps per second of `smax:<map>` (default 5m_vs_6m) through common.smax.SMAXVecEnv with a
random policy over the available actions, for each `--num-envs` value, then the training SPS of a
short cadp_qmix.py run on the same map. Prints a table and writes it to
benchmarks/results/smax_throughput.csv. Needs the SMAX extra (requirements-smax.txt).

    python benchmarks/smax_throughput.py                      # 5m_vs_6m, 1 and 16 envs
    python benchmarks/smax_throughput.py --map 3m --num-envs 1 8 64
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

from common.envs import make_vec_env  # noqa: E402


def env_steps_per_second(env_id: str, num_envs: int, seconds: float) -> float:
    """Random available actions; compile time excluded (the first steps warm up)."""
    envs = make_vec_env(env_id, num_envs, seed=0)
    rng = np.random.default_rng(0)
    _, _, avail = envs.reset()
    for _ in range(20):  # compile and warm up
        _, _, avail, *_ = envs.step((rng.random(avail.shape) * avail).argmax(-1))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, avail, *_ = envs.step((rng.random(avail.shape) * avail).argmax(-1))
        steps += num_envs
    return steps / (time.perf_counter() - start)


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
    parser.add_argument("--map", default="5m_vs_6m")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per env count")
    parser.add_argument("--train-steps", type=int, default=5000, help="steps of the cadp_qmix.py run (0 = skip)")
    args = parser.parse_args()
    env_id = f"smax:{args.map}"

    rows = [
        {
            "what": "env, random policy",
            "env_id": env_id,
            "num_envs": n,
            "steps_per_second": round(env_steps_per_second(env_id, n, args.seconds)),
        }
        for n in args.num_envs
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

    print(f"{'what':<45} {'env_id':<16} {'num_envs':>8} {'steps/s':>9}")
    for row in rows:
        print(f"{row['what']:<45} {row['env_id']:<16} {row['num_envs']:>8} {row['steps_per_second']:>9}")
    out = ROOT / "benchmarks" / "results" / "smax_throughput.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
