"""The value-decomposition scripts' update on a batch's real steps alone (compute_losses on
EpisodeBuffer.sample_steps) gives the loss and the gradients of the padded update it replaced
(benchmarks/padded_update.py), on batches of mixed lengths, length-1 and full-length episodes among them; and
benchmarks/padding.py, which measures how much of a padded batch is padding on a real run."""

import copy
import dataclasses
import types

import numpy as np
import pytest
import torch

import cadp_qmix
import cadp_qplex
import cadp_vdn
from benchmarks import padding
from benchmarks.padded_update import padded_losses, random_buffer

N_AGENTS, OBS_DIM, STATE_DIM, N_ACTIONS, LIMIT = 3, 7, 9, 4, 12
SHAPES = types.SimpleNamespace(
    n_agents=N_AGENTS, obs_dim=OBS_DIM, state_dim=STATE_DIM, n_actions=N_ACTIONS, episode_limit=LIMIT
)


def in_float64(batch: dict) -> dict:
    return {name: value.double() if value.is_floating_point() else value for name, value in batch.items()}


def networks(module, args, seed: int):
    """(agent, mixer, target_agent, target_mixer) in float64 (so that only a different computation, not float32's
    rounding in another order, can move a gradient by 1e-5), every weight random (the mixers' zero init would hide
    terms), the target networks different from the online ones."""
    torch.manual_seed(seed)
    agent = module.CADPAgent(OBS_DIM, N_ACTIONS, args)
    if module is cadp_qmix:
        mixer = module.QMixer(N_AGENTS, STATE_DIM, args.mixing_embed_dim, args.hypernet_embed_dim, args.mixer)
    elif module is cadp_qplex:
        mixer = module.QPLEXMixer(N_AGENTS, STATE_DIM, OBS_DIM, N_ACTIONS, args)
    else:
        mixer = module.VDNMixer()
    for parameter in mixer.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    target_agent, target_mixer = copy.deepcopy(agent), copy.deepcopy(mixer)
    with torch.no_grad():
        for parameter in [*target_agent.parameters(), *target_mixer.parameters()]:
            parameter.add_(0.1 * torch.randn_like(parameter))
    return agent, mixer, target_agent, target_mixer


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("module", [cadp_qmix, cadp_vdn, cadp_qplex], ids=lambda m: m.__name__)
@pytest.mark.parametrize("placement", ["post-gru", "gru-input"])
@pytest.mark.parametrize("advice", [True, False])
def test_the_update_on_real_steps_alone_equals_the_padded_one(module, placement, advice, float64):
    args = dataclasses.replace(
        module.Args(),
        batch_size=16,
        hidden_dim=16,
        att_heads=2,
        att_embed_dim=8,
        advice=advice,
        advice_placement=placement,
        double_q=placement == "post-gru",  # both targets, without doubling the cases
    )
    if module is cadp_qplex:
        args = dataclasses.replace(args, attend_reg_coef=0.5)  # large enough that its gradient counts
    buffer = random_buffer(SHAPES, [1, LIMIT, 5, 1, 3, LIMIT, 8, 2, 11, 1], seed=1)
    agent, mixer, target_agent, target_mixer = nets = networks(module, args, seed=2)
    parameters = [*agent.parameters(), *mixer.parameters()]

    np.random.seed(3)
    padded = in_float64(buffer.sample(args.batch_size, torch.device("cpu")))
    lengths = padded["mask"].sum(1)
    assert lengths.min() == 1 and lengths.max() == LIMIT and len(set(lengths.tolist())) > 3
    expected_loss, expected_td, expected_prune, expected_reg = padded_losses(module, padded, *nets, args, 0.7)
    expected_gradients = torch.autograd.grad(expected_loss, parameters)

    np.random.seed(3)  # the same draw of episodes
    loss, td_loss, *terms = module.compute_losses(
        in_float64(buffer.sample_steps(args.batch_size, torch.device("cpu"))), *nets, args, 0.7
    )
    gradients = torch.autograd.grad(loss, parameters)

    assert (loss - expected_loss).abs() <= 1e-5 and (td_loss - expected_td).abs() <= 1e-5
    assert (terms[-4] - expected_prune).abs() <= 1e-5 and (expected_prune > 0) == advice
    if module is cadp_qplex:
        assert (terms[0] - expected_reg).abs() <= 1e-5 and expected_reg > 0
    for parameter, gradient, expected in zip(parameters, gradients, expected_gradients, strict=True):
        assert (gradient - expected).abs().max() <= 1e-5, [
            name for name, p in agent.named_parameters() if p is parameter
        ]
    assert any(gradient.abs().max() > 1e-3 for gradient in expected_gradients)


def test_padded_share_counts_the_steps_up_to_each_batchs_longest_episode():
    rng = np.random.default_rng(0)
    share, longest = padding.padded_share(np.array([10, 10]), 4, 50, rng)
    assert share == 0 and longest == 10
    share, longest = padding.padded_share(np.array([1, 3]), 2, 4000, rng)
    # two draws of 1 or 3: 4 real steps on average, padded to 2 x the longest, 2 x (1/4 + 3 x 3/4) = 5
    assert share == pytest.approx(1 - 4 / 5, abs=0.02) and longest == pytest.approx(2.5, abs=0.05)


def test_episode_lengths_replay_the_logged_actions_in_order():
    """The two-step game lasts two steps: 3 envs x 6 logged steps end 9 episodes, 3 every second step."""
    args = {"env_id": "matrix:two_step", "num_envs": 3, "seed": 0, "obs_agent_id": True, "obs_last_action": True}
    log = {"actions": torch.zeros(6, 3, 2, dtype=torch.uint8), "complete": True}
    lengths, ends, limit = padding.episode_lengths({"args": args, "actions": log})
    assert lengths.tolist() == [2] * 9 and ends.tolist() == [6] * 3 + [12] * 3 + [18] * 3 and limit == 2
    with pytest.raises(SystemExit) as stopped:
        padding.episode_lengths({"args": args, "actions": None})
    assert stopped.value.code == 2
