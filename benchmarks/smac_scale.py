"""Does CADP(D) beat its base on 5m_vs_6m, at SMAX's reward scale and at SMAC's? The 2x2 design (reward scale x
advice) from two studies' CSVs: `smax` (SMAX's rewards, a battle's return at most 2) and `smac_scale` (SMAC's
reward_scale_rate 20 and normalised state, and for QMIX the release's mixer). Per cell and paired by seed
against the base:

- final win rate (the last evaluation) of CADP(D) and of the base;
- win rate averaged over the whole run (the area under the curve, over the evaluations from step 0 to the end);
- CADP(C) minus the base from 200k to 700k steps (the mean of their evaluations in that window: before pruning);
- how many seeds reach a 50% win rate, and at which step (first evaluation at or above 0.5);
- how many of those collapse: every evaluation of the last 100k steps below half the run's best;
- and each run on its own: its finals, best, first 50%, self-attention weight at the end and running time.

    python benchmarks/smac_scale.py      # writes benchmarks/results/smac_scale.md and smac_scale_*.png
    python benchmarks/smac_scale.py --pilot runs/<run>   # a run's pruning speed and loss balance at 700k
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.plot import (  # noqa: E402 -- after the path
    CENTRALIZED_WINS,
    DECENTRALIZED_WINS,
    SELF_WEIGHT,
    align,
    fmt,
    mean_ci,
    read_runs,
    stat,
)

RESULTS = ROOT / "benchmarks" / "results"
ENV_ID = "smax:5m_vs_6m"
# scale -> (study CSV, what the runs are)
SCALES = {
    "SMAX (return <= 2)": ("learning_smax.csv.gz", "SMAX's rewards and raw state; QMIX with our two-layer mixer"),
    "SMAC (return <= 20)": (
        "learning_smac_scale.csv.gz",
        "reward_scale_rate 20 and the state normalised, as SMAC's; QMIX with the release's mixer",
    ),
}
FAMILIES = ("qmix", "vdn")
WINDOW = (200_000, 700_000)  # before the breakpoint (700k of 1.05M): where advice alone acts
SOLVED, LAST = 0.5, 100_000


def window_mean(series: tuple, low: float, high: float) -> float | None:
    steps, _, values = series
    inside = (steps >= low) & (steps <= high)
    return float(values[inside].mean()) if inside.any() else None


def reached(series: tuple) -> int | None:
    """The first step with a win rate of at least SOLVED, None if never."""
    steps, _, values = series
    hits = np.flatnonzero(values >= SOLVED)
    return int(steps[hits[0]]) if len(hits) else None


def collapsed(series: tuple) -> bool:
    """Reached SOLVED, then every evaluation of the last LAST steps below half the run's best."""
    steps, _, values = series
    last = steps >= steps[-1] - LAST
    return reached(series) is not None and bool((values[last] < values.max() / 2).all())


def cell_rows(runs: dict, algo: str, tag: str) -> dict:
    """{seed: series} of one arm, only runs that reached the budget (the last evaluation at 1.05M)."""
    per_seed = runs.get((ENV_ID, algo), {}).get(tag, {})
    return {seed: series for seed, series in per_seed.items() if series[0][-1] >= 1_040_000}


def describe_reach(per_seed: dict) -> str:
    steps = [reached(series) for series in per_seed.values()]
    hits = sorted(step for step in steps if step is not None)
    where = f" (at {', '.join(f'{step // 1000}k' for step in hits)})" if hits else ""
    return f"{len(hits)} of {len(per_seed)}{where}"


def paired(a: dict, b: dict, how) -> tuple[float, float, int] | None:
    values = [how(a[seed]) - how(b[seed]) for seed in sorted(set(a) & set(b))]
    values = [v for v in values if v is not None and not np.isnan(v)]
    return stat(values)


def final(series: tuple) -> float:
    return float(series[2][-1])


def area(series: tuple) -> float:
    return float(series[2].mean())


def run_rows(scale: str, arms: dict, self_weight: dict) -> list[str]:
    """One row per run: seed by seed, the CADP run (its D and C) and its base."""
    (d_name, d), (_, c), (base_name, b) = arms.items()
    rows = []
    for seed in sorted(set(d) | set(b)):
        for name, run, central in (
            (d_name.removesuffix(" (D)"), d.get(seed), c.get(seed)),
            (base_name, b.get(seed), None),
        ):
            if run is None:
                continue
            first = reached(run)
            weight = self_weight.get(seed) if central is not None else None
            rows.append(
                f"| {scale} | {name} | {seed} | {final(run):.2f} | "
                f"{f'{final(central):.2f}' if central is not None else ''} | {run[2].max():.2f} | "
                f"{f'{first // 1000}k' if first is not None else 'never'} | {'yes' if collapsed(run) else 'no'} | "
                f"{f'{weight[2][-1]:.2f}' if weight is not None else ''} | {run[1][-1] / 60:.0f} min |"
            )
    return rows


def verdict(difference: tuple[float, float, int] | None) -> str:
    """A paired difference's verdict at 95%: which arm its CI puts ahead, if it excludes 0."""
    if difference is None:
        return "no pair yet"
    mean, half, n = difference
    if n < 2:
        return "one seed: no verdict"
    if mean - half > 0:
        return "CADP ahead"
    return "base ahead" if mean + half < 0 else "no difference shown"


def count_verdict(cadp: list[bool], base: list[bool]) -> str:
    """Seeds with an event (reached 50%, collapsed) in each arm, paired: McNemar's exact test on the seeds
    where only one arm had it (two-sided binomial, p < 0.05 needs 6 such seeds of 6)."""
    if not cadp:
        return "no pair yet"
    only_cadp = sum(a and not b for a, b in zip(cadp, base))
    only_base = sum(b and not a for a, b in zip(cadp, base))
    split = only_cadp + only_base
    tail = sum(math.comb(split, k) for k in range(min(only_cadp, only_base) + 1)) / 2**split
    counts = f"{sum(cadp)} vs {sum(base)} of {len(cadp)}"
    if split and min(1.0, 2 * tail) < 0.05:
        return f"{counts}: {'CADP' if only_cadp > only_base else 'base'} ahead"
    return f"{counts}: no difference shown"


def verdict_rows(d: dict, b: dict, differences: dict) -> dict[str, str]:
    """{metric: "value: verdict"} of one cell, CADP against its base paired by seed: the paired `differences`
    {metric: stat} already computed, then the counts of seeds that reached 50% and that collapsed."""
    seeds = sorted(set(d) & set(b))
    rows = {
        name: f"{fmt(difference)}: {verdict(difference)}" if difference else verdict(difference)
        for name, difference in differences.items()
    }
    for name, event in (
        ("seeds reaching 50%, CADP(D) vs base", lambda series: reached(series) is not None),  # at step 0 too
        ("seeds that collapsed after 50%, CADP(D) vs base", collapsed),
    ):
        happened = [[event(arm[seed]) for seed in seeds] for arm in (d, b)]
        rows[name] = count_verdict(*happened)
    return rows


def report(results: Path) -> tuple[str, list[Path]]:
    lines = [
        "# CADP on 5m_vs_6m at two reward scales",
        "",
        "Greedy win rate on smax:5m_vs_6m, 1.05M steps, the release's schedules (epsilon over 50k steps, pruning "
        "from 700k), 32 evaluation battles every 20k steps. Mean ± 95% CI over seeds (Student t); paired: the "
        "CADP run minus its base run with the same seed (they play the same evaluation battles). Runs in only "
        "when they reached the budget. Reached 50%: seeds whose win rate reached 0.5 at some evaluation (their "
        "first such step); collapsed: of those, every evaluation of the last 100k steps below half the run's best.",
        "",
        "The conditions (each row's first column):",
        "",
        *(f"- {scale}: {what} (`{csv_name}`)" for scale, (csv_name, what) in SCALES.items()),
        "",
        "The two differ in reward scale, mixer and state at once, as the release's conditions differ from ours: "
        "compare the arms within a row; a gap between the rows is not the reward scale's alone.",
        "",
    ]
    figures, curves = [], {}
    for family in FAMILIES:
        cadp, base = f"cadp_{family}", family
        lines += [
            f"## {family.upper()} and CADP-{family.upper()}",
            "",
            "| conditions | arm | seeds | final win (D) | win over the run (D) | reached 50% | collapsed |",
            "|---|---|---|---|---|---|---|",
        ]
        paired_lines, per_run, verdicts = [], [], {}
        for scale, (csv_name, _) in SCALES.items():
            path = results / csv_name
            if not path.exists():
                continue
            runs = read_runs(path)
            arms = {
                f"CADP-{family.upper()} (D)": cell_rows(runs, cadp, DECENTRALIZED_WINS),
                f"CADP-{family.upper()} (C)": cell_rows(runs, cadp, CENTRALIZED_WINS),
                family.upper(): cell_rows(runs, base, DECENTRALIZED_WINS),
            }
            curves[family, scale] = arms, {s: v for s, v in runs.get((ENV_ID, cadp), {}).get(SELF_WEIGHT, {}).items()}
            for arm, per_seed in arms.items():
                if not per_seed:
                    continue
                falls = sum(collapsed(series) for series in per_seed.values())
                lines.append(
                    f"| {scale} | {arm} | {len(per_seed)} | {fmt(stat([final(s) for s in per_seed.values()]))} | "
                    f"{fmt(stat([area(s) for s in per_seed.values()]))} | {describe_reach(per_seed)} | {falls} |"
                )
            per_run += run_rows(scale, arms, curves[family, scale][1])
            d, c, b = arms.values()
            before, after, over_run = (
                paired(c, b, lambda s: window_mean(s, *WINDOW)),
                paired(d, b, final),
                paired(d, b, area),
            )
            verdicts[scale] = verdict_rows(
                d,
                b,
                {
                    "final win rate, CADP(D) − base": after,
                    "win rate over the run, CADP(D) − base": over_run,
                    "CADP(C) − base, mean win 200k-700k": before,
                },
            )
            if before is None:
                paired_lines.append(f"| {scale} | no seed has both runs in yet | | |")
                continue
            paired_lines.append(f"| {scale} | {fmt(before)} ({before[2]}) | {fmt(after)} | {fmt(over_run)} |")
        lines += [
            "",
            f"Paired by seed, CADP-{family.upper()} minus {family.upper()} (n seeds):",
            "",
            "| conditions | (C) − base, mean win 200k-700k | final (D) − base | win over the run (D) − base |",
            "|---|---|---|---|",
            *paired_lines,
            "",
            "Each metric's verdict, CADP against its base paired by seed (ahead: the 95% CI of the difference "
            "excludes 0; for the counts, McNemar's exact test on the seeds where only one arm reached 50% or "
            "collapsed, p < 0.05, which needs at least 6 seeds: with 5 no count can show a difference):",
            "",
            f"| metric | {' | '.join(verdicts)} |",
            f"|---|{'---|' * len(verdicts)}",
            *(
                f"| {metric} | {' | '.join(rows[metric] for rows in verdicts.values())} |"
                for metric in next(iter(verdicts.values()), {})
            ),
            "",
            "Each run (D: the decentralized model, for the base its only one; C: CADP(C); best: the best "
            "evaluation of D; c_ii: the self-attention weight at the end; time: the run's running time, "
            "2 runs at a time on 2 CPU cores, one torch thread each):",
            "",
            "| conditions | arm | seed | final (D) | final (C) | best (D) | 50% at | collapsed | c_ii | time |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *per_run,
            "",
        ]
        figure = plot(curves, family, results / f"smac_scale_{family}.png")
        if figure:
            figures.append(figure)
            lines += [f"![{family} win rates and self-attention weight]({figure.name})", ""]
    return "\n".join(lines), figures


def plot(curves: dict, family: str, path: Path) -> Path | None:
    scales = [scale for scale in SCALES if (family, scale) in curves]
    if not scales:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(scales), figsize=(6 * len(scales), 7), squeeze=False, sharex=True)
    for column, scale in enumerate(scales):
        arms, self_weight = curves[family, scale]
        for (arm, per_seed), colour in zip(arms.items(), ("tab:blue", "tab:cyan", "tab:grey")):
            if per_seed:
                steps, _, values = align(per_seed)
                mean, half = mean_ci(values)
                axes[0, column].plot(steps, mean, color=colour, label=f"{arm}, {len(per_seed)} seeds")
                axes[0, column].fill_between(steps, mean - half, mean + half, color=colour, alpha=0.2)
        if self_weight:
            steps, _, values = align(self_weight)
            mean, half = mean_ci(values)
            axes[1, column].plot(steps, mean, color="tab:blue")
            axes[1, column].fill_between(steps, mean - half, mean + half, color="tab:blue", alpha=0.2)
        for row in range(2):
            axes[row, column].axvline(700_000, color="black", linestyle=":", linewidth=1)
        axes[0, column].set_ylim(-0.05, 1.05)  # a win rate; the CIs of a few bimodal seeds reach past both ends
        axes[1, column].set_ylim(0, 1.05)
        axes[0, column].set_title(f"{ENV_ID}, reward scale {scale}")
        axes[0, column].set_ylabel("greedy win rate")
        if axes[0, column].get_legend_handles_labels()[0]:
            axes[0, column].legend(loc="upper left", fontsize=8)
        axes[1, column].set_ylabel("self-attention weight (mean c_ii)")
        axes[1, column].set_xlabel("environment steps (pruning from the dotted line)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def pruning_pilot(run_dir: Path, breakpoint: float = 700_000, alpha: float = 0.5) -> dict:
    """How fast a run prunes and what the pruning term weighs against the TD loss, from its TensorBoard events:
    the self-weight c_ii at the breakpoint and the steps after it to 0.5, 0.9 and 0.99, and over the 10k steps
    either side of it the mean td_loss, alpha x prune_loss and their ratio (logged every 20 updates)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()

    def series(tag):
        points = events.Scalars(tag)
        return np.array([p.step for p in points]), np.array([p.value for p in points])

    steps, weight = series("charts/self_attention_weight")
    found = {"self-weight at the breakpoint": float(np.interp(breakpoint, steps, weight))}
    for level in (0.5, 0.9, 0.99):
        after = np.flatnonzero((steps > breakpoint) & (weight >= level))
        found[f"steps to {level}"] = int(steps[after[0]] - breakpoint) if len(after) else None
    (td_steps, td), (_, prune) = series("losses/td_loss"), series("losses/prune_loss")
    for name, low, high in (("before", breakpoint - 10_000, breakpoint), ("after", breakpoint, breakpoint + 10_000)):
        inside = (td_steps > low) & (td_steps <= high)
        found[f"td_loss {name}"] = float(td[inside].mean())
        found[f"alpha x prune_loss {name}"] = float(alpha * prune[inside].mean())
        found[f"ratio {name}"] = found[f"td_loss {name}"] / found[f"alpha x prune_loss {name}"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder with the studies' CSVs")
    parser.add_argument("--pilot", type=Path, nargs="+", help="instead: the pruning figures of these run directories")
    args = parser.parse_args()
    if args.pilot:
        for run_dir in args.pilot:
            print(run_dir, {k: round(v, 6) if isinstance(v, float) else v for k, v in pruning_pilot(run_dir).items()})
        return
    text, figures = report(args.results)
    out = args.results / "smac_scale.md"
    out.write_text(text)
    print(f"wrote {out} and {len(figures)} plot(s)")


if __name__ == "__main__":
    main()
