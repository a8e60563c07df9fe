"""The reward-scale study's report (benchmarks/smac_scale.py): its per-seed metrics on made-up curves."""

import gzip

import numpy as np
import pytest

from benchmarks import smac_scale

STEPS = np.arange(0, 1_060_000, 20_000)


def series(values) -> tuple:
    return STEPS, STEPS / 100.0, np.asarray(values, dtype=float)


def test_reach_collapse_and_window_on_made_up_curves():
    rising = series(np.clip((STEPS - 200_000) / 400_000, 0, 0.9))  # 0.5 first at 400k, held to the end
    fallen = series(np.where(STEPS < 900_000, rising[2], 0.3))  # best 0.9, then 0.3 < 0.45 from 900k on
    dipped = series(np.where((STEPS > 900_000) & (STEPS < 1_000_000), 0.3, rising[2]))  # recovers by the end
    never = series(np.full(len(STEPS), 0.2))
    assert smac_scale.reached(rising) == 400_000 and smac_scale.reached(never) is None
    assert smac_scale.collapsed(fallen) and not smac_scale.collapsed(rising) and not smac_scale.collapsed(dipped)
    assert not smac_scale.collapsed(never)  # a run that never learned cannot collapse
    assert smac_scale.window_mean(never, 200_000, 700_000) == pytest.approx(0.2)
    # the window's mean is over its evaluations only: 200k..700k of the ramp
    inside = (STEPS >= 200_000) & (STEPS <= 700_000)
    assert smac_scale.window_mean(rising, 200_000, 700_000) == pytest.approx(rising[2][inside].mean())


def test_report_pairs_by_seed_and_leaves_out_unfinished_runs(tmp_path):
    rows = ["study,env_id,algo,script,advice,seed,tag,step,wall_time_s,value"]
    curves = {("cadp_qmix", 1): 0.8, ("qmix", 1): 0.5, ("cadp_qmix", 2): 0.6, ("qmix", 2): 0.5, ("qmix", 3): 0.1}
    for (algo, seed), level in curves.items():
        for tag in ("eval/decentralized_win_rate", "eval/centralized_win_rate"):
            steps = STEPS if (algo, seed) != ("qmix", 3) else STEPS[:10]  # seed 3 stopped early: left out
            rows += [f"smax,smax:5m_vs_6m,{algo},cadp_qmix,1,{seed},{tag},{s},{s / 100},{level}" for s in steps]
    with gzip.open(tmp_path / "learning_smax.csv.gz", "wt") as f:
        f.write("\n".join(rows) + "\n")
    text, _ = smac_scale.report(tmp_path)
    assert "| SMAX (return <= 2) | QMIX | 2 | 0.500 ± 0.000 |" in text
    # paired final (D): +0.3 and +0.1, mean 0.2, CI t(1) = 12.706 x std 0.1414 / sqrt 2
    assert "| 0.200 ± 1.271 |" in text
    assert "| final win rate, CADP(D) − base | 0.200 ± 1.271: no difference shown |" in text
    assert "| seeds reaching 50%, CADP(D) vs base | 2 vs 2 of 2: no difference shown |" in text
    # each run on its own, the CADP run beside its base; seed 3's base stopped early and is not listed
    assert "| SMAX (return <= 2) | CADP-QMIX | 1 | 0.80 | 0.80 | 0.80 | 0k | no |  | 173 min |" in text
    assert "| SMAX (return <= 2) | QMIX | 2 | 0.50 |  | 0.50 | 0k | no |  | 173 min |" in text
    assert "| QMIX | 3 |" not in text


def test_verdicts_need_a_ci_clear_of_zero_and_counts_need_mcnemars_test():
    assert smac_scale.verdict((0.3, 0.2, 5)) == "CADP ahead" and smac_scale.verdict((-0.3, 0.2, 5)) == "base ahead"
    assert smac_scale.verdict((0.3, 0.4, 5)) == "no difference shown"
    assert smac_scale.verdict((0.3, 0.0, 1)) == "one seed: no verdict" and smac_scale.verdict(None) == "no pair yet"
    # 5 of 5 seeds split one way: p = 2 / 2^5 = 0.0625, not enough; 6 of 6: p = 2 / 64 = 0.031
    assert smac_scale.count_verdict([True] * 5, [False] * 5) == "5 vs 0 of 5: no difference shown"
    assert smac_scale.count_verdict([False] * 6, [True] * 6) == "0 vs 6 of 6: base ahead"
    # seeds where both arms reached it say nothing about which is better
    assert smac_scale.count_verdict([True] * 7 + [True], [True] * 7 + [False]) == "8 vs 7 of 8: no difference shown"
    assert smac_scale.count_verdict([], []) == "no pair yet"
