"""How much of a sampled replay batch is padding, over a real run of cadp_qmix.py, cadp_vdn.py or cadp_qplex.py.

EpisodeBuffer.sample trims a batch to its longest episode, so every layer of an update runs on
batch x longest steps. This replays a checkpoint's logged actions (ActionLog, kept when the replay
buffer outgrows --checkpoint-buffer-max-mb; `--checkpoint-buffer-max-mb 0` keeps it on any env)
through fresh envs of the run's seed, which gives every episode's length in the order the run
collected them, then draws batches as the run sampled them (uniform over the last --buffer-size
episodes) at the given steps:

    padded share = 1 - valid steps / (batch x padded length), over all the drawn batches

    python benchmarks/padding.py CHECKPOINT --at 50000 300000 650000

Prints a table; with --lengths-out, also writes the length histogram of the buffer at each step
(CSV: step, length, episodes), which benchmarks/speed.py draws its 5m_vs_6m-shaped batches from.
The checkpoint is only read.
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.cli import fail  # noqa: E402
from common.vec_env import make_vec_env  # noqa: E402


def episode_lengths(checkpoint: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """(lengths, end steps) of every episode of the checkpoint's run, in the order they ended, and the limit."""
    args, log = checkpoint["args"], checkpoint.get("actions")
    if log is None or not log["complete"]:
        fail("the checkpoint holds no complete action log (train with --checkpoint-buffer-max-mb 0 to keep one)")
    envs = make_vec_env(
        args["env_id"],
        args["num_envs"],
        args["seed"],
        agent_id_feature=args["obs_agent_id"],
        last_action_feature=args["obs_last_action"],
    )
    envs.reset()  # as the training loop: the envs' own seed
    lengths, ends = [], []
    for step, actions in enumerate(log["actions"].numpy()):
        *_, terminated, truncated, info = envs.step(actions.astype(np.int64))
        for env_index in np.flatnonzero(terminated | truncated):
            lengths.append(int(info["episode_length"][env_index]))
            ends.append((step + 1) * args["num_envs"])
    envs.close()
    return np.array(lengths), np.array(ends), envs.episode_limit


def padded_share(buffer: np.ndarray, batch_size: int, batches: int, rng: np.random.Generator) -> tuple[float, float]:
    """1 - valid / padded steps over `batches` batches drawn uniformly (with replacement) from `buffer`'s lengths,
    and their mean padded length (their longest episode's)."""
    drawn = buffer[rng.integers(0, len(buffer), size=(batches, batch_size))]  # (batches, batch_size)
    return 1 - drawn.sum() / (batch_size * drawn.max(axis=1)).sum(), drawn.max(axis=1).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a step_*.cadp_model of cadp_qmix.py, cadp_vdn.py or cadp_qplex.py")
    parser.add_argument("--at", type=int, nargs="+", help="env steps to sample at (default: 4 points of the run)")
    parser.add_argument("--batches", type=int, default=2000, help="batches drawn at each step")
    parser.add_argument("--lengths-out", help="write the buffer's length histogram at each step to this CSV")
    args = parser.parse_args()
    try:
        checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)  # our own files
    except Exception as error:
        fail(f"{args.checkpoint} cannot be read as a checkpoint: {type(error).__name__}")
    run_args, last_step = checkpoint["args"], checkpoint["global_step"]
    lengths, ends, limit = episode_lengths(checkpoint)
    print(
        f"{run_args['env_id']}, {run_args['exp_name']} seed {run_args['seed']}: {len(lengths)} episodes in "
        f"{last_step} steps (mean length {lengths.mean():.1f}, limit {limit})"
    )
    rng = np.random.default_rng(0)
    at = args.at or [last_step * k // 4 for k in (1, 2, 3, 4)]
    print(f"\n{'step':>9} {'episodes':>9} {'mean len':>9} {'max len':>8} {'batch max':>10} {'padded share':>13}")
    histogram = []
    for step in at:
        finished = lengths[ends <= step]
        buffer = finished[-run_args["buffer_size"] :]
        if len(buffer) < run_args["batch_size"]:
            print(f"{step:>9} {len(buffer):>9}  (no update yet)")
            continue
        share, batch_max = padded_share(buffer, run_args["batch_size"], args.batches, rng)
        print(f"{step:>9} {len(buffer):>9} {buffer.mean():>9.1f} {buffer.max():>8} {batch_max:>10.1f} {share:>13.1%}")
        values, counts = np.unique(buffer, return_counts=True)
        histogram += [(step, int(v), int(c)) for v, c in zip(values, counts)]
    if args.lengths_out:
        with open(args.lengths_out, "w", newline="") as f:
            csv.writer(f).writerows([("step", "length", "episodes"), *histogram])
        print(f"\nlength histograms written to {args.lengths_out}")


if __name__ == "__main__":
    main()
