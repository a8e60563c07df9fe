"""What `--capture-video` adds to an evaluation, per env family, measured side by side in one process.

One evaluation as the scripts run it (cadp_qmix.py's `evaluate`, a fresh CADP agent, greedy, --eval-episodes
episodes in one vectorised env), alternately without and with the recording of its first episode, then the
recorded frames written as the MP4 and the TensorBoard GIF. Each pair is timed `--repeats` times; the table
gives medians and the ratio recorded / plain. (SMAX's first evaluation of each variant compiles; both are
warmed up before timing.)

    python benchmarks/video_cost.py                    # LBF, RWARE, mpe2, and SMAX 3m with the extra
    python benchmarks/video_cost.py --eval-episodes 8

Writes benchmarks/results/video_cost.md. These machines are shared: read the ratios, not the seconds.
"""

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cadp_qmix  # noqa: E402
from common.vec_env import make_vec_env  # noqa: E402
from common.video import gif_bytes, write_mp4  # noqa: E402

FAMILIES = ["lbforaging:Foraging-8x8-2p-3f-v3", "rware:rware-tiny-2ag-v2", "mpe2:simple_spread_v3", "smax:3m"]


def measure(env_id: str, eval_episodes: int, repeats: int) -> dict:
    plain = make_vec_env(env_id, eval_episodes, seed=100_001)
    recorded = make_vec_env(env_id, eval_episodes, seed=100_001, capture_video=True)
    torch.manual_seed(0)
    args = cadp_qmix.Args()
    agent = cadp_qmix.CADPAgent(plain.obs_dim, plain.n_actions, args)

    def evaluate(envs) -> float:
        start = time.perf_counter()
        cadp_qmix.evaluate(agent, envs, args.hidden_dim, "cpu", decentralized=True)
        return time.perf_counter() - start

    evaluate(plain), evaluate(recorded)  # warm-up (SMAX compiles here)
    times = {"plain": [], "recorded": [], "mp4": [], "gif": []}
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(repeats):
            times["plain"].append(evaluate(plain))
            times["recorded"].append(evaluate(recorded))
            start = time.perf_counter()
            write_mp4(f"{directory}/episode.mp4", recorded.frames, recorded.render_fps)
            times["mp4"].append(time.perf_counter() - start)
            start = time.perf_counter()
            gif_bytes(recorded.frames, recorded.render_fps)
            times["gif"].append(time.perf_counter() - start)
    frames = len(recorded.frames)
    plain.close(), recorded.close()
    row = {name: statistics.median(values) for name, values in times.items()}
    return {"env_id": env_id, "frames": frames, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eval-episodes", type=int, default=cadp_qmix.Args().eval_episodes)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--families", nargs="+", default=FAMILIES, help="env ids (SMAX: skipped without the extra)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "video_cost.md"))
    parser.add_argument("--note", default="", help="the machine and its load, written under the table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    families = [f for f in args.families if not f.startswith("smax") or importlib.util.find_spec("jaxmarl")]

    lines = [
        f"One greedy evaluation of {args.eval_episodes} episodes (a fresh CADP-QMIX agent), without and with",
        f"`--capture-video` (medians of {args.repeats} alternating pairs, one torch thread), then writing the",
        "recorded episode's MP4 and TensorBoard GIF: `python benchmarks/video_cost.py`.",
        "",
        "| env | frames | evaluation (s) | recorded (s) | recorded / plain | MP4 (s) | GIF (s) | total extra (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for env_id in families:
        row = measure(env_id, args.eval_episodes, args.repeats)
        extra = row["recorded"] - row["plain"] + row["mp4"] + row["gif"]
        lines.append(
            f"| {env_id} | {row['frames']} | {row['plain']:.3f} | {row['recorded']:.3f} | "
            f"{row['recorded'] / row['plain']:.2f} | {row['mp4']:.3f} | {row['gif']:.3f} | {extra:.3f} |"
        )
        print(lines[-1], flush=True)
    if args.note:
        lines += ["", args.note]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
