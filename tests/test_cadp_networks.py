"""Unit tests of CADP's pieces: advice attention (Eq. 1), the agent with either advice placement (the
release's post-GRU branch, the abstract's Eq. 2), pruning loss (Eq. 3), the QMIX mixer, the exported
decentralized actor and the paired evaluation."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import MODULES, make_agent
from hypothesis import given, settings
from hypothesis import strategies as st

import cadp_mappo
import cadp_qmix
import cadp_qplex
import cadp_vdn
from cadp_qmix import AdviceAttention, Args, QMixer, prune_coef_at, pruning_loss
from common.run import DecentralizedActor

SCRIPTS = list(MODULES.values())
PLACEMENTS = ["post-gru", "gru-input"]


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
@pytest.mark.parametrize("placement", PLACEMENTS)
@settings(max_examples=25, deadline=None)
@given(n_agents=st.integers(2, 5), agent=st.integers(0, 4), other=st.integers(0, 4), seed=st.integers(0, 10_000))
def test_decentralized_output_ignores_other_agents(module, placement, n_agents, agent, other, seed):
    agent, other = agent % n_agents, other % n_agents
    if agent == other:
        other = (agent + 1) % n_agents
    network = make_agent(module, seed=seed, advice_placement=placement)
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
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_no_advice_agent_has_no_attention(module, placement):
    network = make_agent(module, advice=False, advice_placement=placement)
    assert network.advice is None and network.merge is None
    q, hidden, log_confidence = network(torch.randn(2, 3, 2, 7), torch.zeros(2, 2, 16))
    assert q.shape == (2, 3, 2, 4) and hidden.shape == (2, 2, 16) and log_confidence is None


def parameter_shapes(module: torch.nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in module.parameters()]


@pytest.mark.parametrize("module", [cadp_qmix, cadp_vdn, cadp_qplex])
def test_advice_off_post_gru_is_pymarls_rnn_agent(module):
    """fc1 -> ReLU -> GRU -> linear Q-head, and nothing else: the QMIX/VDN agent users know."""
    network = make_agent(module, advice=False, advice_placement="post-gru")
    reference = torch.nn.ModuleList([torch.nn.Linear(7, 16), torch.nn.GRU(16, 16), torch.nn.Linear(16, 4)])
    assert parameter_shapes(network) == parameter_shapes(reference)
    obs, hidden = torch.randn(2, 3, 2, 7), torch.zeros(2, 2, 16)  # (batch, time, agents, obs)
    with torch.no_grad():
        h, expected = hidden.flatten(0, 1), []
        for t in range(3):  # pymarl's loop: one GRUCell step per time step
            cell = torch.nn.GRUCell(16, 16)
            cell.load_state_dict({name.removesuffix("_l0"): p for name, p in network.gru.state_dict().items()})
            h = cell(F.relu(network.fc1(obs[:, t].flatten(0, 1))), h)
            expected.append(network.q_head(h).view(2, 2, 4))
        torch.testing.assert_close(network(obs, hidden)[0], torch.stack(expected, dim=1))


def test_advice_off_post_gru_is_mappos_recurrent_actor():
    """LayerNorm'd input and MLP base -> GRU -> LayerNorm -> linear action head (MAPPO's R_Actor)."""
    network = make_agent(cadp_mappo, advice=False, advice_placement="post-gru")
    layer_norm, linear = torch.nn.LayerNorm, torch.nn.Linear
    reference = torch.nn.ModuleList(
        [
            layer_norm(7),
            linear(7, 16),
            layer_norm(16),
            linear(16, 16),
            layer_norm(16),
            torch.nn.GRU(16, 16),
            layer_norm(16),
            linear(16, 4),
        ]
    )
    assert parameter_shapes(network) == parameter_shapes(reference)


@pytest.mark.parametrize("module", SCRIPTS)
def test_post_gru_advice_is_a_branch_beside_the_recurrent_one(module):
    """The release's placement: the GRU never reads the advice, so its hidden state is the same with
    full attention (C) and with z_i = v_i (D), and switching C to D changes no recurrent step."""
    network = make_agent(module, seed=2, advice_placement="post-gru")
    assert network.gru.input_size == 16
    obs, hidden = torch.randn(2, 4, 3, 7), torch.zeros(2, 3, 16)
    with torch.no_grad():
        q_c, hidden_c, _ = network(obs, hidden)
        q_d, hidden_d, _ = network(obs, hidden, decentralized=True)
    torch.testing.assert_close(hidden_c, hidden_d)
    assert not torch.allclose(q_c, q_d)


@settings(max_examples=30, deadline=None)
@given(n_agents=st.integers(2, 27), heads=st.integers(1, 8))
def test_pruning_loss_at_uniform_confidence_is_log_n_over_n(n_agents, heads):
    """The release's scale: the mean of KL(e_i || c_i)'s terms over heads x N x N entries. Eq. 3 read
    literally (sum over agents, mean over heads) is N^2 times that."""
    uniform = torch.full((2, 3, heads, n_agents, n_agents), 1.0 / n_agents).log()
    mask = torch.ones(2, 3)
    for module in SCRIPTS:
        assert module.pruning_loss(uniform, mask).item() == pytest.approx(math.log(n_agents) / n_agents, rel=1e-5)
        assert module.pruning_loss(uniform, mask, "eq3").item() == pytest.approx(
            n_agents * math.log(n_agents), rel=1e-5
        )


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n_agents=st.integers(2, 6))
def test_pruning_loss_equals_the_releases_kl_div(seed, n_agents):
    """The authors' q_learner_teacher.py: F.kl_div(log(c + 1e-8), I, reduction="none").mean() per step,
    masked and averaged over the valid steps."""
    generator = torch.Generator().manual_seed(seed)
    log_confidence = torch.randn(3, 5, 4, n_agents, n_agents, generator=generator).log_softmax(-1)
    mask = torch.tensor([[1.0] * 5, [1.0] * 3 + [0.0] * 2, [1.0] * 1 + [0.0] * 4])
    eye = torch.eye(n_agents).expand_as(log_confidence)
    per_step = F.kl_div((log_confidence.exp() + 1e-8).log(), eye, reduction="none").flatten(2).mean(-1)
    expected = (per_step * mask).sum() / mask.sum()
    torch.testing.assert_close(pruning_loss(log_confidence, mask), expected, rtol=1e-4, atol=1e-6)


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
    assert prune_coef_at(500, args) == 0.0  # as the release: on once the step is past the breakpoint
    never = dataclasses.replace(args, prune_start_fraction=1.0)
    assert prune_coef_at(1000, never) == 0.0 and prune_coef_at(1008, never) == 0.0


@pytest.mark.parametrize("module", [cadp_qmix, cadp_vdn, cadp_qplex])
def test_exploration_steps_override_the_fraction(module):
    args = module.Args(total_timesteps=1_000_000, exploration_fraction=0.2)
    assert module.epsilon_at(100_000, args) == pytest.approx(0.525)  # half way through 20% of the budget
    assert module.epsilon_at(200_000, args) == pytest.approx(0.05) == module.epsilon_at(900_000, args)
    release = dataclasses.replace(args, exploration_steps=50_000)  # the release's schedule on 5m_vs_6m
    assert module.epsilon_at(0, release) == 1.0
    assert module.epsilon_at(25_000, release) == pytest.approx(0.525)
    assert module.epsilon_at(50_000, release) == pytest.approx(0.05)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_agents=st.integers(2, 6), kind=st.sampled_from(["two-layer", "release"]))
def test_qmix_mixer_is_monotonic(seed, n_agents, kind):
    torch.manual_seed(seed)
    mixer = QMixer(n_agents, state_dim=5, mixing_embed_dim=8, hypernet_embed_dim=16, kind=kind)
    agent_qs = (torch.randn(3, 4, n_agents) * 10).requires_grad_()
    q_total = mixer(agent_qs, torch.randn(3, 4, 5) * 3)
    assert q_total.shape == (3, 4)
    (gradient,) = torch.autograd.grad(q_total.sum(), agent_qs)
    assert (gradient >= 0).all()


def test_release_mixer_has_one_layer_hypernetworks_and_the_default_init():
    torch.manual_seed(0)
    release = QMixer(5, state_dim=132, mixing_embed_dim=32, hypernet_embed_dim=64, kind="release")
    # the authors' QMixer with hypernet_layers unset: state -> weights in one Linear; hypernet_embed unused
    assert isinstance(release.hyper_w1, torch.nn.Linear) and release.hyper_w1.out_features == 5 * 32
    assert isinstance(release.hyper_w2, torch.nn.Linear) and release.hyper_w2.out_features == 32
    per_state = 132 + 1  # weights and bias of one output unit from the state
    assert sum(p.numel() for p in release.parameters()) == per_state * (5 * 32 + 32 + 32 + 32) + 33
    two_layer = QMixer(5, state_dim=132, mixing_embed_dim=32, hypernet_embed_dim=64, kind="two-layer")
    assert isinstance(two_layer.hyper_w1, torch.nn.Sequential)
    agent_qs, states = torch.randn(2, 3, 5), torch.randn(2, 3, 132)
    # ours starts state-independent (zeroed output layers); the release's default init does not
    assert torch.allclose(two_layer(agent_qs, states), two_layer(agent_qs, torch.randn(2, 3, 132)))
    assert not torch.allclose(release(agent_qs, states), release(agent_qs, torch.randn(2, 3, 132)))


def test_the_default_mixer_keeps_its_parameter_order_and_initial_weights():
    """Checkpoints hold Adam's state by parameter position, and a seed's initial weights depend on the order the
    layers are built in: the default mixer must keep both, or older runs resume wrongly and seeds change."""
    torch.manual_seed(5)
    mixer = QMixer(3, state_dim=4, mixing_embed_dim=2, hypernet_embed_dim=6, kind="two-layer")
    names = [name for name, _ in mixer.named_parameters()]
    assert names == [
        *("hyper_w1.0.weight", "hyper_w1.0.bias", "hyper_w1.2.weight", "hyper_w1.2.bias"),
        *("hyper_b1.weight", "hyper_b1.bias"),
        *("hyper_w2.0.weight", "hyper_w2.0.bias", "hyper_w2.2.weight", "hyper_w2.2.bias"),
        *("state_value.0.weight", "state_value.0.bias", "state_value.2.weight", "state_value.2.bias"),
    ]
    torch.manual_seed(5)
    first = torch.nn.Linear(4, 6)  # the first layer built draws first from the seed's stream
    assert torch.equal(mixer.hyper_w1[0].weight, first.weight)


def test_vdn_mixer_is_the_sum_of_the_chosen_agent_q_values():
    agent_qs = torch.randn(3, 4, 5)
    assert torch.equal(cadp_vdn.VDNMixer()(agent_qs, torch.randn(3, 4, 7)), agent_qs.sum(-1))
    assert not list(cadp_vdn.VDNMixer().parameters())


@pytest.mark.parametrize("module", SCRIPTS)
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("advice", [True, False])
def test_decentralized_actor_steps_like_the_decentralized_agent(module, placement, advice):
    network = make_agent(module, seed=3, advice_placement=placement, advice=advice)
    actor = DecentralizedActor(network)
    assert not any("query" in name or "key" in name for name, _ in actor.named_parameters())
    obs = torch.randn(2, 5, 3, 7)  # (batch, time, agents, obs)
    avail = torch.ones(2, 3, 4, dtype=torch.bool)
    avail[0, 1, 2] = False
    with torch.no_grad():
        q_sequence, _, _ = network(obs, torch.zeros(2, 3, 16), decentralized=True)
        hidden = [torch.zeros(2, 16) for _ in range(3)]  # each agent steps alone, with its own hidden state
        for t in range(5):
            for i in range(3):
                q_step, hidden[i] = actor(obs[:, t, i], hidden[i], avail[:, i])
                expected = q_sequence[:, t, i].masked_fill(~avail[:, i], -torch.inf)
                torch.testing.assert_close(q_step, expected)


@pytest.mark.parametrize("module", SCRIPTS)
def test_every_evaluation_plays_the_same_episodes(module):
    """Paired comparisons: every evaluation of every model (C, D, another run's) starts from the same
    episodes, however long the previous evaluation's episodes lasted."""
    from common.vec_env import make_vec_env

    envs = make_vec_env("lbforaging:Foraging-5x5-2p-1f-v3", 6, seed=100_001, agent_id_feature=True)
    starts, reset = [], envs.reset

    def recording_reset(*args, **kwargs):
        arrays = reset(*args, **kwargs)
        starts.append(arrays[0].copy())
        return arrays

    envs.reset = recording_reset
    greedy = (True,) if module is cadp_mappo else ()
    first, second = (make_agent(module, envs.obs_dim, envs.n_actions, seed=seed) for seed in (1, 2))
    returns = [
        module.evaluate(agent, envs, 16, "cpu", decentralized, *greedy)[0]
        for agent, decentralized in ((first, True), (first, False), (second, True), (first, True))
    ]
    assert len(starts) == 4 and all(np.array_equal(starts[0], start) for start in starts[1:])
    assert returns[0] == returns[3]
    envs.close()


def test_the_pieces_meant_to_be_identical_in_the_scripts_are():
    """The scripts repeat code on purpose (each reads alone); these copies must not drift apart."""
    import inspect

    def source(module, name):
        return inspect.getsource(getattr(module, name))

    for name in ("AdviceAttention", "pruning_loss", "prune_coef_at"):
        assert source(cadp_qmix, name) == source(cadp_vdn, name) == source(cadp_qplex, name) == source(cadp_mappo, name)
    for name in (
        "CADPAgent",
        "evaluate",
        "select_actions",
        "epsilon_at",
    ):
        assert source(cadp_qmix, name) == source(cadp_vdn, name) == source(cadp_qplex, name), name
    assert source(cadp_qmix, "compute_losses") == source(cadp_vdn, "compute_losses")  # the mixer is an argument
