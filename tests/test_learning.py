"""Learning tests: tiny cooperative games with a known optimum that a broken implementation
cannot solve. QMIX paper's two-step game: agent 0's first action picks state 2A (everyone
gets 7) or 2B (payoff [[0, 1], [1, 8]]). With uniform exploration throughout, only a mixer
that can represent Q_tot(2B, (1, 1)) = 8 (QMIX, not a plain sum) and a TD target that carries
that value back to the first step choose 2B. Checked at this budget (2,000 steps; it was 4,000):
CADP-QMIX with `--gamma 0` fails on all three seeds (C or D plays 7), and a plain sum (cadp_vdn
under the same uniform exploration) gives 7 on all three.
VDN's sum cannot fit 2B under uniform data, but with decaying epsilon its data concentrate on
(1, 1) and it finds 8; there `--gamma 0` fails on two seeds of three (2 and 3)."""

import pytest
from conftest import final_returns, run_script

UNIFORM_EXPLORATION = ["--start-e", "1.0", "--end-e", "1.0"]
BUDGET = "2000"  # env steps: 1,000 episodes, as many updates
# the two-step game, 4 envs, the one evaluation at the end
TWO_STEP = ("--env-id", "matrix:two_step", "--total-timesteps", BUDGET, "--num-envs", "4", "--eval-interval", "100000")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cadp_qmix_solves_the_two_step_game_centralized_and_decentralized(seed, tmp_path):
    result = run_script("cadp_qmix", tmp_path, *TWO_STEP, "--seed", str(seed), *UNIFORM_EXPLORATION)
    assert final_returns(result) == (8.0, 8.0)


def test_plain_qmix_solves_the_two_step_game(tmp_path):
    result = run_script("cadp_qmix", tmp_path, *TWO_STEP, "--no-advice", *UNIFORM_EXPLORATION)
    assert final_returns(result) == (8.0, 8.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cadp_vdn_solves_the_two_step_game_with_decaying_exploration(seed, tmp_path):
    result = run_script("cadp_vdn", tmp_path, *TWO_STEP, "--seed", str(seed))
    assert final_returns(result) == (8.0, 8.0)
