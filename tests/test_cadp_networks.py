"""Unit tests of CADP's pieces: advice attention (Eq. 1), residual GRU agent (Eq. 2),
pruning loss (Eq. 3), the QMIX mixer and the exported decentralized actor."""

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cadp_mappo
import cadp_qmix
import cadp_vdn
from cadp_qmix import AdviceAttention, Args, QMixer, pruning_loss, prune_coef_at

SCRIPTS = [cadp_qmix, cadp_vdn, cadp_mappo]


def make_agent(module, obs_dim=7, n_actions=4, seed=0, **overrides):
    torch.manual_seed(seed)
    args = dataclasses.replace(module.Args(), hidden_dim=16, att_heads=2, att_embed_dim=8, **overrides)
    return module.CADPAgent(obs_dim, n_actions, args)


def test_attention_rows_are_distributions():
    attention = AdviceAttention(obs_dim=5, heads=3, embed_dim=4)
    advice, log_confidence = attention(torch.randn(6, 4, 5))
    assert advice.shape == (6, 4, 12)
    assert log_confidence.shape == (6, 3, 4, 4)
    torch.testing.assert_close(log_confidence.exp().sum(-1), torch.ones(6, 3, 4))


@pytest.mark.parametrize("module", SCRIPTS)
@pytest.mark.parametrize("n_agents", [2, 3, 4])
def test_broadcast_attention_equals_batched_matmul_attention(module, n_agents, monkeypatch):
    """Small teams take the broadcast-product path for speed; it must compute the einsum path's Eq. 1."""
    torch.manual_seed(n_agents)
    attention = module.AdviceAttention(obs_dim=5, heads=3, embed_dim=4)
    obs = torch.randn(6, 2, n_agents, 5)  # (batch, time, agents, obs)
    assert n_agents <= module.SMALL_TEAM
    advice, log_confidence = attention(obs)
    monkeypatch.setattr(module, "SMALL_TEAM", 0)
    advice_einsum, log_confidence_einsum = attention(obs)
    torch.testing.assert_close(advice, advice_einsum)
    torch.testing.assert_close(log_confidence, log_confidence_einsum)


def test_decentralized_advice_is_attention_with_identity_confidence():
    torch.manual_seed(0)
    attention = AdviceAttention(obs_dim=5, heads=2, embed_dim=3)
    obs = torch.randn(4, 3, 5)  # (batch, agents, obs)
    decentralized, log_confidence = attention(obs, decentralized=True)
    assert log_confidence is None
    value = attention.value(obs).view(4, 3, 2, 3)
    identity = torch.eye(3).expand(4, 2, 3, 3)  # c_i = e_i for every head
    expected = torch.einsum("bhij,bjhd->bihd", identity, value).flatten(-2)
    torch.testing.assert_close(decentralized, expected)


@pytest.mark.parametrize("module", SCRIPTS)
@settings(max_examples=25, deadline=None)
@given(n_agents=st.integers(2, 5), agent=st.integers(0, 4), other=st.integers(0, 4), seed=st.integers(0, 10_000))
def test_decentralized_output_ignores_other_agents(module, n_agents, agent, other, seed):
    agent, other = agent % n_agents, other % n_agents
    if agent == other:
        other = (agent + 1) % n_agents
    network = make_agent(module, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    obs = torch.randn(2, 3, n_agents, 7, generator=generator)  # (batch, time, agents, obs)
    changed = obs.clone()
    changed[:, :, other] += torch.randn(2, 3, 7, generator=generator)
    hidden = torch.zeros(2, n_agents, 16)
    with torch.no_grad():
        q_decentralized = network(obs, hidden, decentralized=True)[0][:, :, agent]
        q_decentralized_changed = network(changed, hidden, decentralized=True)[0][:, :, agent]
        q_centralized = network(obs, hidden)[0][:, :, agent]
        q_centralized_changed = network(changed, hidden)[0][:, :, agent]
    assert torch.equal(q_decentralized, q_decentralized_changed)
    assert not torch.allclose(q_centralized, q_centralized_changed)


@pytest.mark.parametrize("module", SCRIPTS)
def test_no_advice_agent_has_no_attention(module):
    network = make_agent(module, advice=False)
    assert network.advice is None
    q, hidden, log_confidence = network(torch.randn(2, 3, 2, 7), torch.zeros(2, 2, 16))
    assert q.shape == (2, 3, 2, 4) and hidden.shape == (2, 2, 16) and log_confidence is None


def test_pruning_loss_is_zero_exactly_at_identity_confidence():
    mask = torch.ones(2, 3)
    identity = torch.eye(4).log().expand(2, 3, 2, 4, 4)  # log c with c_ii = 1, c_ij = 0
    assert pruning_loss(identity, mask).item() == 0.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_agents=st.integers(2, 6))
def test_pruning_loss_is_positive_otherwise_and_its_gradient_raises_self_confidence(seed, n_agents):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, 3, 2, n_agents, n_agents, generator=generator, requires_grad=True)
    mask = torch.ones(2, 3)
    loss = pruning_loss(scores.log_softmax(-1), mask)
    assert loss.item() > 0
    loss.backward()
    with torch.no_grad():
        stepped = scores - 0.1 * scores.grad
        before = scores.softmax(-1).diagonal(dim1=-2, dim2=-1)
        after = stepped.softmax(-1).diagonal(dim1=-2, dim2=-1)
    assert (after > before).all()


def test_pruning_loss_ignores_padded_steps():
    log_confidence = torch.randn(1, 4, 1, 3, 3).log_softmax(-1)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    expected = pruning_loss(log_confidence[:, :2], torch.ones(1, 2))
    torch.testing.assert_close(pruning_loss(log_confidence, mask), expected)


def test_prune_coef_schedule():
    args = Args(total_timesteps=1000, prune_coef=0.5, prune_start_fraction=0.5, prune_ramp_fraction=0.2)
    assert prune_coef_at(499, args) == 0.0
    assert prune_coef_at(600, args) == pytest.approx(0.25)
    assert prune_coef_at(900, args) == 0.5
    assert prune_coef_at(900, dataclasses.replace(args, prune_ramp_fraction=0.0)) == 0.5
    assert prune_coef_at(900, dataclasses.replace(args, advice=False)) == 0.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_agents=st.integers(2, 6))
def test_qmix_mixer_is_monotonic(seed, n_agents):
    torch.manual_seed(seed)
    mixer = QMixer(n_agents, state_dim=5, mixing_embed_dim=8, hypernet_embed_dim=16)
    agent_qs = (torch.randn(3, 4, n_agents) * 10).requires_grad_()
    q_total = mixer(agent_qs, torch.randn(3, 4, 5) * 3)
    assert q_total.shape == (3, 4)
    (gradient,) = torch.autograd.grad(q_total.sum(), agent_qs)
    assert (gradient >= 0).all()


def test_vdn_mixer_is_the_sum_of_the_chosen_agent_q_values():
    agent_qs = torch.randn(3, 4, 5)
    assert torch.equal(cadp_vdn.VDNMixer()(agent_qs, torch.randn(3, 4, 7)), agent_qs.sum(-1))
    assert not list(cadp_vdn.VDNMixer().parameters())


@pytest.mark.parametrize("module", SCRIPTS)
def test_decentralized_actor_steps_like_the_decentralized_agent(module):
    network = make_agent(module, seed=3)
    actor = module.DecentralizedActor(network)
    assert not any("query" in name or "key" in name for name, _ in actor.named_parameters())
    obs = torch.randn(2, 5, 3, 7)  # (batch, time, agents, obs)
    avail = torch.ones(2, 3, 4, dtype=torch.bool)
    avail[0, 1, 2] = False
    with torch.no_grad():
        q_sequence, _, _ = network(obs, torch.zeros(2, 3, 16), decentralized=True)
        hidden = torch.zeros(2, 3, 16)
        for t in range(5):
            q_step, hidden = actor(obs[:, t], hidden, avail)
            expected = q_sequence[:, t].masked_fill(~avail, -torch.inf)
            torch.testing.assert_close(q_step, expected)
