"""cadp_qplex.py's mixer: QPLEX's duplex dueling keeps IGM (the agents' own greedy actions are the greedy joint
action), its weights are positive, and the script solves the two-step coordination game centralized and
decentralized, which it cannot when the TD target stops carrying value back (gamma 0)."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from conftest import final_returns, run_script
from hypothesis import given, settings
from hypothesis import strategies as st

import cadp_qplex


def make_mixer(n_agents, n_actions, state_dim=6, unit_dim=5, seed=0):
    torch.manual_seed(seed)
    args = cadp_qplex.Args(mixing_embed_dim=8, hypernet_embed_dim=16)
    return cadp_qplex.QPLEXMixer(n_agents, state_dim, unit_dim, n_actions, args)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_agents=st.integers(2, 3), n_actions=st.integers(2, 3))
def test_the_agents_greedy_actions_are_the_greedy_joint_action(seed, n_agents, n_actions):
    """IGM: A_tot <= 0 for every joint action, = 0 exactly at the agents' own argmax actions."""
    mixer = make_mixer(n_agents, n_actions, seed=seed)
    q = torch.randn(1, 1, n_agents, n_actions) * 5  # (batch, time, agents, actions)
    state, units = torch.randn(1, 1, 6) * 3, torch.randn(1, 1, n_agents, 5) * 3
    max_q, greedy = q.max(-1)
    with torch.no_grad():
        totals = {}
        for joint in itertools.product(range(n_actions), repeat=n_agents):
            actions = torch.tensor(joint).view(1, 1, n_agents)
            chosen = q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            totals[joint] = mixer(chosen, max_q, state, units, F.one_hot(actions, n_actions).float())[0].item()
        values = mixer(max_q, max_q, state, units, F.one_hot(greedy, n_actions).float())[0].item()  # sum_i V_i
    best = tuple(greedy.flatten().tolist())
    assert max(totals, key=totals.get) == best
    assert totals[best] == pytest.approx(values, abs=1e-5)
    assert all(total <= values + 1e-5 for total in totals.values())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_agents=st.integers(2, 5))
def test_the_weights_and_lambdas_are_positive(seed, n_agents):
    mixer = make_mixer(n_agents, 4, seed=seed)
    state, units = torch.randn(3, 7, 6) * 10, torch.randn(3, 7, n_agents, 5) * 10
    actions = F.one_hot(torch.randint(0, 4, (3, 7, n_agents)), 4).float()
    weights, logits = mixer.weights(state, units)
    assert weights.shape == (3, 7, n_agents) and (weights > 0).all()
    assert logits.shape == (3, 7, mixer.heads, n_agents)
    lambdas = mixer.lambdas(state, actions)
    assert lambdas.shape == (3, 7, n_agents) and (lambdas > 0).all()


def test_the_advantage_term_trains_lambda_but_not_the_agent_q_values():
    """The release's stop-gradient: Q_i learn through sum_i (w_i Q_i + b) only."""
    mixer = make_mixer(2, 3)
    q = torch.randn(1, 1, 2, 3, requires_grad=True)
    chosen = q[..., 0]
    max_q = q.detach().max(-1).values
    actions = F.one_hot(torch.zeros(1, 1, 2, dtype=torch.long), 3).float()
    q_total, _ = mixer(chosen, max_q, torch.randn(1, 1, 6), torch.randn(1, 1, 2, 5), actions)
    (gradient,) = torch.autograd.grad(q_total.sum(), q)
    assert (gradient[..., 0] > 0).all() and (gradient[..., 1:] == 0).all()  # dQ_tot/dQ_i = w_i > 0


TWO_STEP = ["--env-id", "matrix:two_step", "--total-timesteps", "4000", "--num-envs", "4", "--eval-interval", "100000"]
UNIFORM_EXPLORATION = ["--start-e", "1.0", "--end-e", "1.0"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cadp_qplex_solves_the_two_step_game_centralized_and_decentralized(seed, tmp_path):
    result = run_script("cadp_qplex", tmp_path, *TWO_STEP, "--seed", str(seed), *UNIFORM_EXPLORATION)
    assert final_returns(result) == (8.0, 8.0)


def test_without_bootstrapping_it_does_not_solve_it(tmp_path):
    """A deliberate breakage: with gamma 0 the first step's choice never sees the 8 of state 2B."""
    result = run_script("cadp_qplex", tmp_path, *TWO_STEP, "--seed", "1", *UNIFORM_EXPLORATION, "--gamma", "0")
    assert final_returns(result) != (8.0, 8.0)
