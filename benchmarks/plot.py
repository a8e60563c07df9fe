"""Learning curves and a results table from a study CSV written by benchmarks/learning.py.

    python benchmarks/plot.py benchmarks/results/learning_lbf.csv.gz
    python benchmarks/plot.py benchmarks/results/learning_ablation.csv.gz --planned 120

Beside the CSV it writes, for each env id and algorithm family (QMIX, VDN, MAPPO), one PNG
`learning_{study}_{env}_{family}.png` of the evaluation returns against env steps and against wall
time: CADP(C) and CADP(D) of the advice runs, the advice-off baseline and the peer
(pymarlzooplus), each the mean over seeds with its 95% confidence interval (Student t, the seeds
as samples). The baseline and the peer are one network, so their decentralized return is their
only one. Where the env reports wins (SMAX, GRF), a second row: the win rates, and CADP's
self-attention weight through pruning. And `learning_{study}.md`: final and best returns (and win
rates) per env id and algorithm, and each CADP script against its advice-off run, paired by seed.

An ablation study (its algos are arms: `qmix_rnn`, `cadp_qmix_post_gru`, ...) gets, per env id and base
algorithm, a PNG of CADP(D), CADP(C), the training return and the self-attention weight per arm, and
a table of final returns and of each CADP arm's paired difference (seed by seed) from the stronger
of the two advice-off baselines: see ablation_table.
"""

import argparse
import csv
import gzip
import json
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

# two-sided 95% quantiles of Student's t by degrees of freedom; between entries the smaller df's (wider)
T_975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    21: 2.080,
    22: 2.074,
    23: 2.069,
    24: 2.064,
    25: 2.060,
    26: 2.056,
    27: 2.052,
    28: 2.048,
    29: 2.045,
    30: 2.042,
    40: 2.021,
    60: 2.000,
    120: 1.980,
}
DECENTRALIZED, CENTRALIZED = "eval/decentralized_episodic_return", "eval/centralized_episodic_return"
DECENTRALIZED_WINS, CENTRALIZED_WINS = "eval/decentralized_win_rate", "eval/centralized_win_rate"
TRAINING_RETURN, SELF_WEIGHT, PRUNE_COEF = "charts/episodic_return", "charts/self_attention_weight", "charts/prune_coef"
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


def open_csv(path: Path, mode: str = "rt"):
    """A study CSV as text: gzipped when its name ends in .gz (learning.py writes it so: its rows repeat the
    run's env id, algo and tag, which gzip shrinks about 11x; pandas.read_csv reads it as it is)."""
    path = Path(path)
    return gzip.open(path, mode, newline="") if path.suffix == ".gz" else open(path, mode, newline="")


def study_of(csv_path: Path) -> str:
    """learning_{study}.csv.gz (or .csv) -> study."""
    return Path(csv_path).name.removesuffix(".gz").removesuffix(".csv").removeprefix("learning_")


def read_runs(csv_path: Path) -> dict:
    """{(env_id, algo): {tag: {seed: (steps, wall_time_s, values)}}}, each series sorted by step."""
    series = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    with open_csv(csv_path) as f:
        for row in csv.DictReader(f):
            series[row["env_id"], row["algo"]][row["tag"]][int(row["seed"])].append(
                (int(row["step"]), float(row["wall_time_s"]), float(row["value"]))
            )
    return {
        run: {
            tag: {seed: tuple(np.array(column) for column in zip(*sorted(points))) for seed, points in seeds.items()}
            for tag, seeds in tags.items()
        }
        for run, tags in series.items()
    }


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
    return (
        grid,
        np.stack([np.interp(grid, steps, wall) for steps, wall, _ in runs]),
        np.stack([np.interp(grid, steps, value) for steps, _, value in runs]),
    )


def family_of(algo: str) -> str:
    return algo.removeprefix("cadp_").removeprefix("peer_")


def curve_specs(family: str) -> list[tuple[str, str, str, str, str]]:
    """(label, algo, tag, colour, line style) of each curve in a family's figure."""
    name = family.upper()
    return [
        (f"CADP-{name}(D)", f"cadp_{family}", DECENTRALIZED, "tab:blue", "-"),
        (f"CADP-{name}(C)", f"cadp_{family}", CENTRALIZED, "tab:blue", "--"),
        (f"{name}, no advice", family, DECENTRALIZED, "tab:orange", "-"),
        (f"peer {name} (pymarlzooplus)", f"peer_{family}", DECENTRALIZED, "tab:green", "-"),
    ]


def draw_curve(ax, x, mean, half, label: str, colour: str, style: str, marker: str | None = ".") -> None:
    """A mean curve and its 95% CI band (lighter for a dashed curve)."""
    ax.plot(x, mean, style, marker=marker, markersize=4, color=colour, label=label)
    ax.fill_between(x, mean - half, mean + half, color=colour, alpha=0.12 if style == "--" else 0.2, linewidth=0)


def seeds_label(per_seed: dict) -> str:
    return f"{len(per_seed)} seed" + ("s" if len(per_seed) > 1 else "")


def plot_family(runs: dict, env_id: str, family: str, title: str, path: Path, breakpoints: dict | None = None) -> bool:
    """One PNG: eval return against env steps and against wall time; where the env reports wins, a second
    row with the win rates against env steps and CADP's self-attention weight through pruning (dotted: the
    breakpoints). False if nothing to draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    wins = any(DECENTRALIZED_WINS in runs.get((env_id, algo), {}) for _, algo, *_ in curve_specs(family))
    figure = Figure(figsize=(11, 8.4 if wins else 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2 if wins else 1, 2, squeeze=False)
    by_steps, by_time = axes[0]
    axes[0][0].sharey(axes[0][1])
    drawn = 0
    for label, algo, tag, colour, style in curve_specs(family):
        tags = runs.get((env_id, algo), {})
        per_seed = tags.get(tag)
        if not per_seed:
            continue
        steps, wall, values = align(per_seed)
        if len(steps) == 0:
            continue
        mean, half = mean_ci(values)
        minutes = wall.mean(axis=0) / 60
        for ax, x in ((by_steps, steps), (by_time, minutes)):
            draw_curve(ax, x, mean, half, f"{label}, {seeds_label(per_seed)}", colour, style)
        drawn += 1
        win_tag = CENTRALIZED_WINS if tag == CENTRALIZED else DECENTRALIZED_WINS
        if wins and tags.get(win_tag):
            steps, _, values = align(tags[win_tag])
            draw_curve(axes[1][0], steps, *mean_ci(values), label, colour, style)
        if wins and tag == DECENTRALIZED and tags.get(SELF_WEIGHT):
            steps, _, values = align(tags[SELF_WEIGHT])
            draw_curve(axes[1][1], steps, *mean_ci(values), label.removesuffix("(D)"), colour, style, None)
            steps = {breakpoint_step(runs, breakpoints or {}, env_id, algo, seed) for seed in tags[SELF_WEIGHT]}
            for step in sorted(steps - {None}):
                axes[1][1].axvline(step, color="black", linestyle=":", linewidth=1)
    if not drawn:
        return False
    by_steps.set_xlabel("environment steps")
    by_steps.set_ylabel("evaluation return (mean, 95% CI)")
    by_time.set_xlabel("wall time (minutes, mean over seeds)")
    if wins:
        axes[1][0].set_xlabel("environment steps")
        axes[1][0].set_ylabel("evaluation win rate (mean, 95% CI)")
        axes[1][0].set_ylim(-0.03, 1.03)  # a rate: a wide CI band says enough inside [0, 1]
        axes[1][1].set_xlabel("environment steps")
        axes[1][1].set_ylabel("self-attention weight c_ii (training)")
        axes[1][1].set_title("dotted: the breakpoint, where pruning starts", fontsize=9)
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
    by_steps.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.savefig(path)
    return True


def stat(samples: list[float]) -> tuple[float, float, int] | None:
    """mean, 95% CI half-width and count over seeds; None without samples."""
    if not samples:
        return None
    mean, half = mean_ci(np.array(samples))
    return float(mean), float(half), len(samples)


def summarize(per_seed: dict, how) -> tuple[float, float, int]:
    """mean, 95% CI half-width and count over seeds of how(values) per seed."""
    return stat([how(values) for _, _, values in per_seed.values()])


def fmt(stat: tuple[float, float, int] | None) -> str:
    if stat is None:
        return ""
    mean, half, n = stat
    return f"{mean:.3f} ± {half:.3f}" if n > 1 else f"{mean:.3f}"


def runs_in(runs: dict) -> int:
    """The runs a study CSV holds: its (env id, algo, seed)s."""
    return len(
        {(env, algo, seed) for (env, algo), tags in runs.items() for per_seed in tags.values() for seed in per_seed}
    )


def table(runs: dict, study: str, machine: str, planned: int | None = None, breakpoints: dict | None = None) -> str:
    count = runs_in(runs)
    lines = [
        f"# Learning study `{study}`",
        "",
        (
            (f"Runs in: {count} of {planned} planned. " if planned else "")
            + "Evaluation return, mean ± 95% confidence interval over seeds (Student t, the seeds as samples): "
            "at the last evaluation (final) and the best evaluation of each run (max). (D) is the decentralized "
            "model, which sees only each agent's own observation: CADP(D), and the no-advice baselines and "
            "the peer, whose centralized and decentralized models are one network; (C) is CADP with full "
            "attention (CADP(C)). Steps: the budget, as the step of the last evaluation. Wall time: the run's "
            f"duration, mean over seeds. Machine: {machine}."
        ),
        "",
    ]
    for env_id in sorted({env for env, _ in runs}):
        algos = sorted(
            {algo for env, algo in runs if env == env_id},
            key=lambda a: (ALGO_ORDER.index(a) if a in ALGO_ORDER else len(ALGO_ORDER), a),
        )
        lines += [
            f"## {env_id}",
            "",
            "| algorithm | seeds | steps | final (D) | max (D) | final (C) | wall time |",
            "|---|---|---|---|---|---|---|",
        ]
        for algo in algos:
            tags = runs[env_id, algo]
            decentralized, centralized = tags.get(DECENTRALIZED), tags.get(CENTRALIZED)
            seeds = {seed for per_seed in tags.values() for seed in per_seed}
            steps = max(int(s[0][-1]) for s in (decentralized or {}).values()) if decentralized else None
            wall = np.mean(
                [max(per_seed[seed][1][-1] for per_seed in tags.values() if seed in per_seed) for seed in seeds]
            )
            row = [
                algo,
                str(len(seeds)),
                f"{steps:,}" if steps is not None else "",
                fmt(summarize(decentralized, lambda v: v[-1]) if decentralized else None),
                fmt(summarize(decentralized, np.max) if decentralized else None),
                fmt(summarize(centralized, lambda v: v[-1]) if centralized and algo.startswith("cadp_") else None),
                f"{wall:.0f} s" if wall < 100 else f"{wall / 60:.1f} min",
            ]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        if any(DECENTRALIZED_WINS in runs[env_id, algo] for algo in algos):
            lines += [
                "Win rate (as the env reports it: SMAX a battle won, GRF a goal scored):",
                "",
                "| algorithm | seeds | final (D) | max (D) | final (C) | max (C) |",
                "|---|---|---|---|---|---|",
            ]
            for algo in algos:
                tags = runs[env_id, algo]
                d_wins = tags.get(DECENTRALIZED_WINS)
                c_wins = tags.get(CENTRALIZED_WINS) if algo.startswith("cadp_") else None
                row = [
                    algo,
                    str(len(d_wins or {})),
                    fmt(summarize(d_wins, lambda v: v[-1]) if d_wins else None),
                    fmt(summarize(d_wins, np.max) if d_wins else None),
                    fmt(summarize(c_wins, lambda v: v[-1]) if c_wins else None),
                    fmt(summarize(c_wins, np.max) if c_wins else None),
                ]
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
        lines += paired_section(runs, breakpoints or {}, env_id, algos)
    return "\n".join(lines)


def paired_differences(
    runs: dict, breakpoints: dict, env_id: str, algo: str, baseline: str, d_tag: str, c_tag: str
) -> tuple[list[float], list[float]]:
    """A CADP run minus its baseline with the same seed, over the seeds both have: (C) at the breakpoint minus
    the baseline at that step (interpolated), and final (D) minus the baseline's final."""
    reference = runs[env_id, baseline].get(d_tag, {})  # {seed: (steps, wall, values)}
    before, after = [], []
    for seed, series in runs[env_id, algo].get(c_tag, {}).items():
        point = at_or_before(series, breakpoint_step(runs, breakpoints, env_id, algo, seed))
        if seed in reference and point:
            step, value = point
            before.append(value - float(np.interp(step, reference[seed][0], reference[seed][2])))
    for seed, (_, _, values) in runs[env_id, algo].get(d_tag, {}).items():
        if seed in reference:
            after.append(float(values[-1]) - float(reference[seed][2][-1]))
    return before, after


def paired_section(runs: dict, breakpoints: dict, env_id: str, algos: list[str]) -> list[str]:
    """Each CADP script against its own advice-off run, seed by seed (they evaluate on the same episodes):
    CADP(C) at the breakpoint minus the baseline at that step, and final CADP(D) minus final baseline."""
    rows = []
    for algo in algos:
        base = algo.removeprefix("cadp_")
        if not algo.startswith("cadp_") or base not in algos:
            continue
        for metric, d_tag, c_tag in (
            ("return", DECENTRALIZED, CENTRALIZED),
            ("win rate", DECENTRALIZED_WINS, CENTRALIZED_WINS),
        ):
            if d_tag not in runs[env_id, algo] or not runs[env_id, base].get(d_tag):
                continue
            before, after = paired_differences(runs, breakpoints, env_id, algo, base, d_tag, c_tag)
            rows.append(f"| `{algo}` − `{base}` | {metric} | {fmt_n(stat(before))} | {fmt_n(stat(after))} |")
    if not rows:
        return []
    return [
        "Paired by seed (a CADP run and its advice-off run with the same seed play the same evaluation "
        "episodes): mean ± 95% CI over the seeds both have (n).",
        "",
        "| comparison | metric | (C) at the breakpoint − baseline at that step | final (D) − final baseline |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


# ---- An ablation study: the arms of one base algorithm ---------------------------------------------
# the arms of benchmarks/studies.py (ABLATION_ARMS) in their order, with their colours; others come last
ARM_COLOURS = {
    "rnn": "black",
    "gru": "tab:gray",
    "post_gru": "tab:blue",
    "gru_input": "tab:orange",
    "post_gru_eq3": "tab:green",
    "post_gru_noprune": "tab:red",
}


def arm_of(algo: str) -> tuple[str, str] | None:
    """(base, arm) of an ablation label: qmix_rnn -> (qmix, rnn), cadp_qmix_post_gru -> (qmix, post_gru);
    None for the labels of the other studies (cadp_qmix, qmix, peer_qmix)."""
    rest = algo.removeprefix("cadp_")
    for family in FAMILIES:
        if rest.startswith(f"{family}_"):
            return family, rest.removeprefix(f"{family}_")
    return None


def bases_of(runs: dict, env_id: str) -> list[str]:
    """The base algorithms of an ablation's arms on one env id."""
    return sorted({arm_of(algo)[0] for env, algo in runs if env == env_id and arm_of(algo)}, key=FAMILIES.index)


def arms_of(runs: dict, env_id: str, base: str) -> list[str]:
    """The algos of one base algorithm on one env id: the advice-off baselines, then the CADP arms."""
    order = list(ARM_COLOURS)

    def key(algo: str) -> tuple:
        arm = arm_of(algo)[1]
        return algo.startswith("cadp_"), order.index(arm) if arm in order else len(order), algo

    return sorted((algo for env, algo in runs if env == env_id and arm_of(algo) and arm_of(algo)[0] == base), key=key)


def read_breakpoints(csv_path: Path) -> dict:
    """{(env_id, algo, seed): the step after which pruning is on, None if never} from the flags in the
    signatures of the study's manifest (learning_{study}.jobs.json beside the CSV, by benchmarks/learning.py)."""
    try:
        manifest = json.loads(csv_path.with_name(f"learning_{study_of(csv_path)}.jobs.json").read_text())
    except (OSError, ValueError):
        return {}
    found = {}
    for name, entry in manifest.items():
        try:
            command = json.loads(entry["signature"])  # [script, *flags]
            flag = {
                name: command[command.index(name) + 1]
                for name in ("--env-id", "--seed", "--total-timesteps", "--prune-start-fraction")
            }
        except (KeyError, ValueError, IndexError, TypeError):  # a peer's, or flags without a breakpoint
            continue
        fraction, algo = float(flag["--prune-start-fraction"]), name.rsplit("__", 2)[1]  # names: {env}__{algo}__{seed}
        found[flag["--env-id"], algo, int(flag["--seed"])] = (
            fraction * int(flag["--total-timesteps"]) if fraction < 1 else None
        )
    return found


def breakpoint_step(runs: dict, breakpoints: dict, env_id: str, algo: str, seed: int) -> float | None:
    """Where pruning starts in a run: from its flags, else the last step at which charts/prune_coef was still 0
    (its points are bin means, so this errs early, never late); None if it never starts or the run has no advice."""
    if (env_id, algo, seed) in breakpoints:
        return breakpoints[env_id, algo, seed]
    coef = runs[env_id, algo].get(PRUNE_COEF, {}).get(seed)
    if coef is None or not (coef[2] > 0).any():
        return None
    first_on = int(np.argmax(coef[2] > 0))
    return float(coef[0][first_on - 1]) if first_on else 0.0


def at_or_before(series: tuple, step: float | None) -> tuple[int, float] | None:
    """(step, value) of a series' last point at or before `step` (None: its last point); None if there is none."""
    steps, _, values = series
    i = len(steps) - 1 if step is None else int(np.searchsorted(steps, step, side="right")) - 1
    return (int(steps[i]), float(values[i])) if i >= 0 else None


def plot_ablation(runs: dict, breakpoints: dict, env_id: str, base: str, title: str, path: Path) -> bool:
    """CADP(D), CADP(C), training return and self-attention weight per arm against env steps (and the win
    rates, where the env reports wins), each the mean over seeds with its 95% CI. False if nothing to draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    algos = arms_of(runs, env_id, base)
    # (title, tag of the CADP arms, tag of the baselines: one network, their (D) shown for reference)
    panels = [
        ("evaluation return, CADP(D)", DECENTRALIZED, DECENTRALIZED),
        ("evaluation return, CADP(C); baselines: their only network", CENTRALIZED, DECENTRALIZED),
        ("training return (charts/episodic_return)", TRAINING_RETURN, TRAINING_RETURN),
        ("self-attention weight c_ii; dotted: the breakpoint", SELF_WEIGHT, None),
    ]
    if any(DECENTRALIZED_WINS in runs[env_id, algo] for algo in algos):
        panels += [
            ("evaluation win rate, CADP(D)", DECENTRALIZED_WINS, DECENTRALIZED_WINS),
            ("evaluation win rate, CADP(C); baselines: their only network", CENTRALIZED_WINS, DECENTRALIZED_WINS),
        ]
    figure = Figure(figsize=(11, 3.6 * (len(panels) // 2)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels) // 2, 2, sharex=True, squeeze=False).ravel()
    drawn = 0
    for ax, (panel_title, cadp_tag, baseline_tag) in zip(axes, panels):
        for algo in algos:
            tag = cadp_tag if algo.startswith("cadp_") else baseline_tag
            per_seed = runs[env_id, algo].get(tag) if tag else None
            if not per_seed:
                continue
            steps, _, values = align(per_seed)
            if len(steps) == 0:
                continue
            colour = ARM_COLOURS.get(arm_of(algo)[1], "tab:purple")
            draw_curve(
                ax,
                steps,
                *mean_ci(values),
                f"{algo}, {seeds_label(per_seed)}",
                colour,
                "-" if algo.startswith("cadp_") else "--",
                "." if tag.startswith("eval/") else None,
            )
            drawn += 1
        ax.set_title(panel_title, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[-2:]:
        ax.set_xlabel("environment steps")
    steps = {
        breakpoint_step(runs, breakpoints, env_id, algo, seed)
        for algo in algos
        if algo.startswith("cadp_")
        for seed in runs[env_id, algo].get(DECENTRALIZED, {})
    }
    for step in sorted(steps - {None}):
        axes[3].axvline(step, color="black", linestyle=":", linewidth=1)
    if not drawn:
        return False
    axes[0].legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.savefig(path)
    return True


def ablation_section(
    runs: dict, breakpoints: dict, env_id: str, base: str, metric: str, d_tag: str, c_tag: str
) -> list[str]:
    """The tables of one env id, base algorithm and metric: per arm, then each CADP arm against the stronger
    baseline, seed by seed."""
    final, c_before = {}, {}  # algo -> {seed: final (D) value}, {seed: (step, value) of (C) at the breakpoint}
    lines = [
        f"## {env_id}: {base.upper()}, {metric}",
        "",
        "| arm | seeds | final (D) | final (C) | (C) at the breakpoint | at step |",
        "|---|---|---|---|---|---|",
    ]
    for algo in arms_of(runs, env_id, base):
        tags = runs[env_id, algo]
        final[algo] = {seed: float(values[-1]) for seed, (_, _, values) in tags.get(d_tag, {}).items()}
        row = [f"`{algo}`", str(len(final[algo])), fmt(stat(list(final[algo].values()))), "", "", ""]
        if algo.startswith("cadp_"):
            centralized = tags.get(c_tag, {})
            c_before[algo] = {
                seed: point
                for seed, series in centralized.items()
                if (point := at_or_before(series, breakpoint_step(runs, breakpoints, env_id, algo, seed)))
            }
            row[3] = fmt(stat([float(values[-1]) for _, _, values in centralized.values()]))
            row[4] = fmt(stat([value for _, value in c_before[algo].values()]))
            row[5] = " / ".join(f"{step:,}" for step in sorted({step for step, _ in c_before[algo].values()}))
        lines.append("| " + " | ".join(row) + " |")
    baselines = [algo for algo in final if not algo.startswith("cadp_") and final[algo]]
    if not baselines:
        return lines + ["", "No baseline run yet: no paired differences.", ""]
    baseline = max(baselines, key=lambda algo: np.mean(list(final[algo].values())))  # the first of a tie
    names = " and ".join(f"`{algo}`" for algo in baselines)
    which = (
        f"the baseline `{baseline}` (the only one with results yet)"
        if len(baselines) == 1
        else f"the stronger baseline, `{baseline}` (the higher mean final (D) of {names})"
    )
    lines += [
        "",
        f"Against {which}: per seed, the arm minus the baseline with the same seed; mean ± 95% CI over "
        "the seeds both have (n).",
        "",
        f"| arm | (C) at the breakpoint − `{baseline}` at that step | final (D) − final `{baseline}` |",
        "|---|---|---|",
    ]
    for algo in c_before:
        before, after = paired_differences(runs, breakpoints, env_id, algo, baseline, d_tag, c_tag)
        lines.append(f"| `{algo}` | {fmt_n(stat(before))} | {fmt_n(stat(after))} |")
    return lines + [""]


def fmt_n(stat_: tuple[float, float, int] | None) -> str:
    return f"{fmt(stat_)} ({stat_[2]})" if stat_ else ""


def ablation_table(runs: dict, breakpoints: dict, study: str, machine: str, planned: int | None) -> str:
    count = runs_in(runs)
    lines = [
        f"# Ablation study `{study}`",
        "",
        (
            f"Runs in: {count}" + (f" of {planned} planned" if planned else "") + ". Evaluation return (and, where "
            "the env reports wins, the win rate: secondary to the return), mean ± 95% confidence interval over "
            "seeds (Student t, the seeds as samples). Final: at the last evaluation. (D) is the decentralized model "
            "(for the advice-off baselines, their only network), (C) CADP with full attention. The breakpoint is "
            "where the pruning loss switches on (prune_start_fraction x the budget, from each run's flags); (C) at "
            "the breakpoint is at the last evaluation at or before it, and for an arm that never prunes at the last "
            "evaluation. Seeds are paired: an arm and a baseline with the same seed evaluate on the same episodes. "
            f"Machine: {machine}."
        ),
        "",
    ]
    for env_id in sorted({env for env, _ in runs}):
        for base in bases_of(runs, env_id):
            algos = arms_of(runs, env_id, base)
            lines += ablation_section(runs, breakpoints, env_id, base, "evaluation return", DECENTRALIZED, CENTRALIZED)
            if any(DECENTRALIZED_WINS in runs[env_id, algo] for algo in algos):
                lines += ablation_section(
                    runs, breakpoints, env_id, base, "win rate (secondary)", DECENTRALIZED_WINS, CENTRALIZED_WINS
                )
    return "\n".join(lines)


def safe_name(env_id: str) -> str:
    """An env id as a file name part, as benchmarks/learning.py names its job directories."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", env_id)


def make_report(csv_path: Path, machine: str | None = None, planned: int | None = None) -> list[Path]:
    """The PNGs and the markdown table of a study CSV, beside it; returns their paths. `planned`: the
    study's number of runs, which the table states beside the number in the CSV."""
    csv_path = Path(csv_path)
    study = study_of(csv_path)
    machine = machine or f"{os.cpu_count()} CPU cores, one torch thread per run"
    runs = read_runs(csv_path)
    breakpoints = read_breakpoints(csv_path)
    written = []
    if any(arm_of(algo) for _, algo in runs):
        for env_id in sorted({env for env, _ in runs}):
            safe_env = safe_name(env_id)
            for base in bases_of(runs, env_id):
                path = csv_path.with_name(f"learning_{study}_{safe_env}_{base}.png")
                title = f"{env_id}: {base.upper()} ablation, study {study}"
                if plot_ablation(runs, breakpoints, env_id, base, title, path):
                    written.append(path)
        table_path = csv_path.with_name(f"learning_{study}.md")
        table_path.write_text(ablation_table(runs, breakpoints, study, machine, planned))
        return written + [table_path]
    for env_id in sorted({env for env, _ in runs}):
        safe_env = safe_name(env_id)
        for family in sorted({family_of(algo) for env, algo in runs if env == env_id}):
            path = csv_path.with_name(f"learning_{study}_{safe_env}_{family}.png")
            title = f"{env_id}: {family.upper()} family, study {study}"
            if plot_family(runs, env_id, family, title, path, breakpoints):
                written.append(path)
    table_path = csv_path.with_name(f"learning_{study}.md")
    table_path.write_text(table(runs, study, machine, planned, breakpoints))
    return written + [table_path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path, help="benchmarks/results/learning_{study}.csv.gz (or .csv)")
    parser.add_argument("--machine", help="the machine, as the table states it (default: this one's CPU count)")
    parser.add_argument(
        "--planned", type=int, help="the study's number of runs, which the table states beside those in the CSV"
    )
    args = parser.parse_args()
    for path in make_report(args.csv, args.machine, args.planned):
        print(f"written {path}")


if __name__ == "__main__":
    main()
