"""Learning curves and a results table from a study CSV written by benchmarks/learning.py.

    python benchmarks/plot.py benchmarks/results/learning_lbf.csv

Beside the CSV it writes, for each env id and algorithm family (QMIX, VDN, MAPPO), one PNG
`learning_{study}_{env}_{family}.png` of the evaluation returns against env steps and against wall
time: CADP(C) and CADP(D) of the advice runs, the advice-off baseline and the peer
(pymarlzooplus), each the mean over seeds with its 95% confidence interval (Student t, the seeds
as samples). The baseline and the peer are one network, so their decentralized return is their
only one. And `learning_{study}.md`: final and best returns per env id and algorithm.
"""

import argparse
import csv
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

# two-sided 95% quantiles of Student's t by degrees of freedom; between entries the smaller df's (wider)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101,
         19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052,
         28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
DECENTRALIZED, CENTRALIZED = "eval/decentralized_episodic_return", "eval/centralized_episodic_return"
FAMILIES = ("qmix", "vdn", "mappo")
ALGO_ORDER = [f"{prefix}{family}" for family in FAMILIES for prefix in ("cadp_", "", "peer_")]


def t_975(df: int) -> float:
    return T_975[max(d for d in T_975 if d <= df)]


def mean_ci(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 (the seeds) and the half-width of its 95% confidence interval (0 for one seed)."""
    samples = np.asarray(samples, dtype=float)
    n = samples.shape[0]
    mean = samples.mean(axis=0)
    if n < 2:
        return mean, np.zeros_like(mean)
    return mean, t_975(n - 1) * samples.std(axis=0, ddof=1) / np.sqrt(n)


def read_runs(csv_path: Path) -> dict:
    """{(env_id, algo): {tag: {seed: (steps, wall_time_s, values)}}}, each series sorted by step."""
    series = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            series[row["env_id"], row["algo"]][row["tag"]][int(row["seed"])].append(
                (int(row["step"]), float(row["wall_time_s"]), float(row["value"])))
    return {run: {tag: {seed: tuple(np.array(column) for column in zip(*sorted(points)))
                        for seed, points in seeds.items()} for tag, seeds in tags.items()}
            for run, tags in series.items()}


def align(per_seed: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """steps, wall times (seeds, steps) and values (seeds, steps) on one grid of steps: the seeds' own
    when they all share them, else their steps where all seeds have data, interpolated."""
    runs = [per_seed[seed] for seed in sorted(per_seed)]
    if all(np.array_equal(runs[0][0], steps) for steps, _, _ in runs):
        grid = runs[0][0]
        return grid, np.stack([wall for _, wall, _ in runs]), np.stack([value for _, _, value in runs])
    low, high = max(steps[0] for steps, _, _ in runs), min(steps[-1] for steps, _, _ in runs)
    grid = np.unique(np.concatenate([steps for steps, _, _ in runs]))
    grid = grid[(grid >= low) & (grid <= high)]
    return (grid, np.stack([np.interp(grid, steps, wall) for steps, wall, _ in runs]),
            np.stack([np.interp(grid, steps, value) for steps, _, value in runs]))


def family_of(algo: str) -> str:
    return algo.removeprefix("cadp_").removeprefix("peer_")


def curve_specs(family: str) -> list[tuple[str, str, str, str, str]]:
    """(label, algo, tag, colour, line style) of each curve in a family's figure."""
    name = family.upper()
    return [(f"CADP-{name}(D)", f"cadp_{family}", DECENTRALIZED, "tab:blue", "-"),
            (f"CADP-{name}(C)", f"cadp_{family}", CENTRALIZED, "tab:blue", "--"),
            (f"{name}, no advice", family, DECENTRALIZED, "tab:orange", "-"),
            (f"peer {name} (pymarlzooplus)", f"peer_{family}", DECENTRALIZED, "tab:green", "-")]


def plot_family(runs: dict, env_id: str, family: str, title: str, path: Path) -> bool:
    """One PNG, two panels: eval return against env steps and against wall time. False if nothing to draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    by_steps, by_time = figure.subplots(1, 2, sharey=True)
    drawn = 0
    for label, algo, tag, colour, style in curve_specs(family):
        per_seed = runs.get((env_id, algo), {}).get(tag)
        if not per_seed:
            continue
        steps, wall, values = align(per_seed)
        if len(steps) == 0:
            continue
        mean, half = mean_ci(values)
        minutes = wall.mean(axis=0) / 60
        for ax, x in ((by_steps, steps), (by_time, minutes)):
            seeds = f"{len(per_seed)} seed" + ("s" if len(per_seed) > 1 else "")
            ax.plot(x, mean, style, marker=".", markersize=4, color=colour, label=f"{label}, {seeds}")
            ax.fill_between(x, mean - half, mean + half, color=colour, alpha=0.12 if style == "--" else 0.2, linewidth=0)
        drawn += 1
    if not drawn:
        return False
    by_steps.set_xlabel("environment steps")
    by_steps.set_ylabel("evaluation return (mean, 95% CI)")
    by_time.set_xlabel("wall time (minutes, mean over seeds)")
    for ax in (by_steps, by_time):
        ax.grid(alpha=0.3)
    by_steps.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.savefig(path)
    return True


def summarize(per_seed: dict, how) -> tuple[float, float, int]:
    """mean, 95% CI half-width and count over seeds of how(values) per seed."""
    mean, half = mean_ci(np.array([how(values) for _, _, values in per_seed.values()]))
    return float(mean), float(half), len(per_seed)


def fmt(stat: tuple[float, float, int] | None) -> str:
    if stat is None:
        return ""
    mean, half, n = stat
    return f"{mean:.3f} ± {half:.3f}" if n > 1 else f"{mean:.3f}"


def table(runs: dict, study: str, machine: str) -> str:
    lines = [f"# Learning study `{study}`", "",
             ("Evaluation return, mean ± 95% confidence interval over seeds (Student t, the seeds as samples): "
             "at the last evaluation (final) and the best evaluation of each run (max). (D) is the decentralized "
             "model, which sees only each agent's own observation: CADP(D), and the no-advice baselines and "
             "the peer, whose centralized and decentralized models are one network; (C) is CADP with full "
             "attention (CADP(C)). Steps: the budget, as the step of the last evaluation. Wall time: the run's "
             f"duration, mean over seeds. Machine: {machine}."), ""]
    for env_id in sorted({env for env, _ in runs}):
        lines += [f"## {env_id}", "",
                  "| algorithm | seeds | steps | final (D) | max (D) | final (C) | wall time |",
                  "|---|---|---|---|---|---|---|"]
        algos = sorted({algo for env, algo in runs if env == env_id},
                       key=lambda a: (ALGO_ORDER.index(a) if a in ALGO_ORDER else len(ALGO_ORDER), a))
        for algo in algos:
            tags = runs[env_id, algo]
            decentralized, centralized = tags.get(DECENTRALIZED), tags.get(CENTRALIZED)
            seeds = {seed for per_seed in tags.values() for seed in per_seed}
            steps = max(int(s[0][-1]) for s in (decentralized or {}).values()) if decentralized else None
            wall = np.mean([max(per_seed[seed][1][-1] for per_seed in tags.values() if seed in per_seed)
                            for seed in seeds])
            row = [algo, str(len(seeds)), f"{steps:,}" if steps is not None else "",
                   fmt(summarize(decentralized, lambda v: v[-1]) if decentralized else None),
                   fmt(summarize(decentralized, np.max) if decentralized else None),
                   fmt(summarize(centralized, lambda v: v[-1]) if centralized and algo.startswith("cadp_") else None),
                   f"{wall:.0f} s" if wall < 100 else f"{wall / 60:.1f} min"]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def make_report(csv_path: Path, machine: str | None = None) -> list[Path]:
    """The PNGs and the markdown table of a study CSV, beside it; returns their paths."""
    csv_path = Path(csv_path)
    study = csv_path.stem.removeprefix("learning_")
    machine = machine or f"{os.cpu_count()} CPU cores, one torch thread per run"
    runs = read_runs(csv_path)
    written = []
    for env_id in sorted({env for env, _ in runs}):
        safe_env = re.sub(r"[^A-Za-z0-9_.-]+", "-", env_id)
        for family in sorted({family_of(algo) for env, algo in runs if env == env_id}):
            path = csv_path.with_name(f"learning_{study}_{safe_env}_{family}.png")
            if plot_family(runs, env_id, family, f"{env_id}: {family.upper()} family, study {study}", path):
                written.append(path)
    table_path = csv_path.with_name(f"learning_{study}.md")
    table_path.write_text(table(runs, study, machine))
    return written + [table_path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path, help="benchmarks/results/learning_{study}.csv")
    parser.add_argument("--machine", help="the machine, as the table states it (default: this one's CPU count)")
    args = parser.parse_args()
    for path in make_report(args.csv, args.machine):
        print(f"written {path}")


if __name__ == "__main__":
    main()
