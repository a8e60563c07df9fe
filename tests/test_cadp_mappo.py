"""Tests of cadp_mappo.py's own pieces (GAE, action masking, recurrent chunks, value
normalization) and, as subprocesses, a learning run on a matrix game and a determinism check.
The agent, pruning and end-to-end tests shared with the other scripts are in
test_cadp_networks.py and test_end_to_end.py."""

import dataclasses
import runpy
import signal
import sys
import types

import gymnasium
import numpy as np
import pytest
import torch
from conftest import ROOT, final_returns, run_script
from conftest import make_agent as make_script_agent
from hypothesis import given, settings
from hypothesis import strategies as st

import cadp_mappo
import common.buffers
from cadp_mappo import ValueNormalizer, compute_gae, masked_policy, ppo_policy_loss, value_loss
from common.buffers import RolloutBuffer, to_chunks


def make_agent(obs_dim=7, n_actions=4, seed=0, **overrides):
    return make_script_agent(cadp_mappo, obs_dim, n_actions, seed, **overrides)


def naive_gae(rewards, values, last_values, final_values, terminated, truncated, gamma, gae_lambda):
    """One env and one agent at a time, as the GAE definition reads."""
    time_steps, num_envs, n_agents = values.shape
    advantages = torch.zeros_like(values)
    for e in range(num_envs):
        for i in range(n_agents):
            running = 0.0
            for t in reversed(range(time_steps)):
                if terminated[t, e]:
                    next_value = 0.0
                elif truncated[t, e]:
                    next_value = final_values[t, e, i].item()
                elif t == time_steps - 1:
                    next_value = last_values[e, i].item()
                else:
                    next_value = values[t + 1, e, i].item()
                if terminated[t, e] or truncated[t, e]:
                    running = 0.0  # nothing flows back from the next episode
                delta = rewards[t, e].item() + gamma * next_value - values[t, e, i].item()
                running = delta + gamma * gae_lambda * running
                advantages[t, e, i] = running
    return advantages


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), time_steps=st.integers(1, 12), num_envs=st.integers(1, 3))
def test_gae_matches_naive_loop(seed, time_steps, num_envs):
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(time_steps, num_envs, 2, generator=generator)
    rewards = torch.randn(time_steps, num_envs, generator=generator)
    last_values, final_values = (
        torch.randn(num_envs, 2, generator=generator),
        torch.randn(time_steps, num_envs, 2, generator=generator),
    )
    ends = torch.rand(time_steps, num_envs, generator=generator)
    terminated, truncated = ends < 0.2, (ends >= 0.2) & (ends < 0.4)
    expected = naive_gae(rewards, values, last_values, final_values, terminated, truncated, 0.9, 0.8)
    actual = compute_gae(rewards, values, last_values, final_values, terminated, truncated, 0.9, 0.8)
    torch.testing.assert_close(actual, expected)


def test_gae_bootstraps_truncation_from_final_state_and_termination_from_nothing():
    # one env, one agent, two steps; the episode ends after step 0, the next one runs on
    values, rewards = torch.tensor([[[1.0]], [[5.0]]]), torch.tensor([[2.0], [0.0]])
    final_values, last_values = torch.full((2, 1, 1), 3.0), torch.tensor([[7.0]])
    no, yes = torch.tensor([[False], [False]]), torch.tensor([[True], [False]])
    gamma, gae_lambda = 0.5, 0.9
    truncated = compute_gae(rewards, values, last_values, final_values, no, yes, gamma, gae_lambda)
    terminated = compute_gae(rewards, values, last_values, final_values, yes, no, gamma, gae_lambda)
    assert truncated[0].item() == pytest.approx(2.0 + gamma * 3.0 - 1.0)  # V(final state), not V(next episode)
    assert terminated[0].item() == pytest.approx(2.0 - 1.0)
    assert truncated[1].item() == terminated[1].item() == pytest.approx(0.0 + gamma * 7.0 - 5.0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_masked_actions_are_never_sampled_and_entropy_stays_finite(seed):
    generator = torch.Generator().manual_seed(seed)
    logits = (torch.randn(64, 3, 6, generator=generator) * 5).requires_grad_()
    avail = torch.rand(64, 3, 6, generator=generator) < 0.5
    avail[..., 0] |= ~avail.any(-1)  # every agent has an action
    policy = masked_policy(logits, avail)
    assert (policy.probs[~avail] == 0).all()
    samples = policy.sample((200,))  # (samples, 64, 3)
    assert avail.gather(-1, samples.movedim(0, -1)).all()
    assert torch.isfinite(policy.log_prob(samples)).all()
    entropy = policy.entropy()
    only_available = [
        torch.distributions.Categorical(logits=row[mask]).entropy()
        for row, mask in zip(logits.detach().flatten(0, 1), avail.flatten(0, 1))
    ]
    torch.testing.assert_close(entropy.detach().flatten(), torch.stack(only_available))
    entropy.sum().backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[~avail] == 0).all()


def test_ppo_loss_follows_the_advantage():
    advantages = torch.tensor([1.0, -1.0])
    new_log_probs = torch.zeros(2, requires_grad=True)
    loss, approx_kl, clipfrac = ppo_policy_loss(new_log_probs, torch.zeros(2), advantages, torch.ones(2), 0.2)
    loss.backward()
    # descending the loss raises the probability of the positive-advantage action, lowers the other
    assert new_log_probs.grad[0] < 0 < new_log_probs.grad[1]
    assert approx_kl.item() == 0.0 and clipfrac.item() == 0.0
    # once the ratio leaves [1 - clip, 1 + clip] in the advantage's direction, the gradient stops
    moved = torch.tensor([0.5, -0.5], requires_grad=True)
    ppo_policy_loss(moved, torch.zeros(2), advantages, torch.ones(2), 0.2)[0].backward()
    assert (moved.grad == 0).all()


def test_dead_agents_leave_the_ppo_losses():
    """MAPPO's active masks: an agent dead at a step (SMAX) adds nothing to the policy and value losses,
    which equal those of the living agents' entries alone."""
    generator = torch.Generator().manual_seed(0)
    shape = (4, 5, 3)  # (chunks, chunk_length, agents)
    new, old, advantages, new_values, old_values, targets = (torch.randn(shape, generator=generator) for _ in range(6))
    active = torch.ones(shape)
    active[:, 2:, 1] = 0.0  # agent 1 dies at step 2 of every chunk
    living = active.bool()
    new.requires_grad_(True)
    loss, approx_kl, clipfrac = ppo_policy_loss(new, old, advantages, active, 0.2)
    alone = ppo_policy_loss(new[living], old[living], advantages[living], torch.ones(int(living.sum())), 0.2)
    for got, expected in zip((loss, approx_kl, clipfrac), alone):
        torch.testing.assert_close(got, expected)
    loss.backward()
    assert (new.grad[~living] == 0).all() and new.grad[living].abs().sum() > 0
    # whatever the dead agent's entries hold, the losses do not move
    noisy_advantages, noisy_targets = advantages.clone(), targets.clone()
    noisy_advantages[~living], noisy_targets[~living] = 1e3, -1e3
    torch.testing.assert_close(ppo_policy_loss(new, old, noisy_advantages, active, 0.2)[0], loss)
    for clip_vloss in (True, False):
        expected = value_loss(
            new_values[living], old_values[living], targets[living], torch.ones(int(living.sum())), 0.2, clip_vloss
        )
        torch.testing.assert_close(value_loss(new_values, old_values, noisy_targets, active, 0.2, clip_vloss), expected)


def test_hidden_state_resets_where_an_episode_starts():
    network = make_agent(seed=1)
    obs = torch.randn(3, 8, 2, 7)  # (sequences, time, agents, obs)
    hidden = torch.randn(3, 2, 16)
    starts = torch.zeros(3, 8, dtype=torch.bool)
    starts[0, 3] = starts[1, 5] = starts[1, 6] = True  # sequence 2 runs without a reset
    with torch.no_grad():
        logits, last_hidden, _ = network(obs, hidden, episode_starts=starts)
        for i, cuts in enumerate([[0, 3, 8], [0, 5, 6, 8], [0, 8]]):
            piece_hidden, pieces = hidden[i : i + 1], []
            for start, end in zip(cuts[:-1], cuts[1:]):
                piece, piece_hidden, _ = network(
                    obs[i : i + 1, start:end], piece_hidden if start == 0 else torch.zeros(1, 2, 16)
                )
                pieces.append(piece)
            torch.testing.assert_close(logits[i : i + 1], torch.cat(pieces, dim=1))
            torch.testing.assert_close(last_hidden[i : i + 1], piece_hidden)


def test_chunks_replay_the_rollout():
    """Training on chunks from stored hidden states gives the logits the rollout acted with."""
    network = make_agent(seed=2)
    time_steps, num_envs, chunk_length = 12, 3, 4
    obs = torch.randn(time_steps, num_envs, 2, 7)
    episode_starts = torch.rand(time_steps, num_envs) < 0.2
    episode_starts[0] = episode_starts[4, 1] = True  # the first step, and an episode starting with a chunk
    hidden, stored_hidden, rollout_logits = torch.zeros(num_envs, 2, 16), [], []
    with torch.no_grad():
        for t in range(time_steps):  # as the script steps its envs
            stored_hidden.append(hidden)
            logits, hidden, _ = network(obs[t].unsqueeze(1), hidden, episode_starts=episode_starts[t].unsqueeze(1))
            rollout_logits.append(logits[:, 0])
        chunk_logits, _, _ = network(
            to_chunks(obs, chunk_length),
            to_chunks(torch.stack(stored_hidden), chunk_length)[:, 0],
            episode_starts=to_chunks(episode_starts, chunk_length),
        )
    torch.testing.assert_close(chunk_logits, to_chunks(torch.stack(rollout_logits), chunk_length))


def test_value_normalizer_tracks_all_targets_seen():
    normalizer = ValueNormalizer()
    batches = [torch.randn(50) * 3 + 2, torch.randn(70) * 5 - 1, torch.randn(30)]
    for batch in batches:
        normalizer.update(batch)
    everything = torch.cat(batches)
    torch.testing.assert_close(normalizer.mean, everything.mean())
    torch.testing.assert_close(normalizer.var, everything.var(unbiased=False))
    torch.testing.assert_close(normalizer.denormalize(normalizer.normalize(everything)), everything)


def run_mappo(tmp_path, *flags):
    return final_returns(run_script("cadp_mappo", tmp_path, *flags))


def test_learns_the_two_step_game(tmp_path):
    """Sampled episodes from the initial policy return ~4.75; only a policy that learned to
    pick state 2A (7) or coordinate in 2B (8) reliably clears 6.5. A flipped advantage or ratio
    sign drives the policy to 0-1 returns, a gradient-free ratio leaves it near uniform."""
    centralized, decentralized = run_mappo(
        tmp_path,
        "--env-id",
        "matrix:two_step",
        "--total-timesteps",
        "6000",
        "--num-envs",
        "16",
        "--num-steps",
        "10",
        "--chunk-length",
        "2",
        "--no-eval-greedy",
        "--eval-episodes",
        "200",
        "--eval-interval",
        "100000",
        "--seed",
        "3",
    )
    assert centralized >= 6.5 and decentralized >= 6.5


def test_same_seed_gives_same_losses(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    flags = [
        "--env-id",
        "matrix:climbing",
        "--total-timesteps",
        "960",
        "--num-envs",
        "8",
        "--num-steps",
        "10",
        "--eval-episodes",
        "2",
    ]
    losses = []
    for name in ("first", "second"):
        run_mappo(tmp_path, *flags, "--exp-name", name)
        (run_dir,) = (tmp_path / "runs").glob(f"*__{name}__*")
        events = EventAccumulator(str(run_dir)).Reload()
        losses.append([e.value for tag in ("losses/policy_loss", "losses/value_loss") for e in events.Scalars(tag)])
    assert len(losses[0]) == 24 and losses[0] == losses[1]


def make_critic(state_dim=5, obs_dim=7, n_agents=2, seed=0, **overrides):
    torch.manual_seed(seed)
    return cadp_mappo.Critic(
        state_dim, obs_dim, n_agents, dataclasses.replace(cadp_mappo.Args(), hidden_dim=16, **overrides)
    )


def test_recurrent_critic_resets_where_an_episode_starts():
    critic = make_critic(seed=3)
    state, obs = torch.randn(3, 8, 5), torch.randn(3, 8, 2, 7)  # (sequences, time, ...)
    hidden = torch.randn(3, 2, 16)
    starts = torch.zeros(3, 8, dtype=torch.bool)
    starts[0, 2] = starts[1, 4] = starts[1, 7] = True  # sequence 2 runs without a reset
    with torch.no_grad():
        values, last_hidden = critic(state, obs, hidden, starts)
        for i, cuts in enumerate([[0, 2, 8], [0, 4, 7, 8], [0, 8]]):
            piece_hidden, pieces = hidden[i : i + 1], []
            for start, end in zip(cuts[:-1], cuts[1:]):
                entering = piece_hidden if start == 0 else torch.zeros(1, 2, 16)
                piece, piece_hidden = critic(state[i : i + 1, start:end], obs[i : i + 1, start:end], entering)
                pieces.append(piece)
            torch.testing.assert_close(values[i : i + 1], torch.cat(pieces, dim=1))
            torch.testing.assert_close(last_hidden[i : i + 1], piece_hidden)
        # the hidden state matters where no episode starts: a recurrent critic, not a feed-forward one
        assert not torch.allclose(critic(state, obs, torch.zeros_like(hidden), starts)[0][2], values[2])


@pytest.mark.parametrize("kind", ["recurrent", "feed-forward"])
def test_critic_chunks_replay_the_rollouts_values(kind):
    """The update's training sequences, cut by RolloutBuffer.chunks from the critic's stored hidden states,
    give the values the rollout stored, episode starts inside chunks included."""
    critic = make_critic(seed=4, critic=kind)
    time_steps, num_envs, chunk_length = 12, 3, 4
    envs = types.SimpleNamespace(num_envs=num_envs, n_agents=2, obs_dim=7, state_dim=5, n_actions=3)
    rb = RolloutBuffer(time_steps, envs, 16, "cpu")
    generator = torch.Generator().manual_seed(4)
    episode_starts = torch.rand(time_steps, num_envs, generator=generator) < 0.25
    episode_starts[0] = episode_starts[4, 1] = True  # the first step, and an episode starting with a chunk
    hidden = torch.zeros(num_envs, 2, 16)
    with torch.no_grad():
        for t in range(time_steps):  # as the script steps its envs
            state, obs = torch.randn(num_envs, 5, generator=generator), torch.randn(num_envs, 2, 7, generator=generator)
            rb.add(t, state=state, obs=obs, critic_hidden=hidden, episode_starts=episode_starts[t])
            values, hidden = critic(state.unsqueeze(1), obs.unsqueeze(1), hidden, episode_starts[t].unsqueeze(1))
            rb.add(t, values=values[:, 0])
        chunk = rb.chunks(chunk_length)
        replayed, _ = critic(chunk["state"], chunk["obs"], chunk["critic_hidden"], chunk["episode_starts"])
    torch.testing.assert_close(replayed, chunk["values"])
    assert chunk["values"].abs().sum() > 0


def test_agent_specific_values_read_the_state_and_the_agents_own_observation():
    critic = make_critic(seed=5, n_agents=3)
    state, obs = torch.randn(4, 6, 5), torch.randn(4, 6, 3, 7)
    hidden = torch.zeros(4, 3, 16)
    with torch.no_grad():
        values, _ = critic(state, obs, hidden)
        changed = obs.clone()
        changed[..., 2, :] += 1.0  # agent 2's observation only
        changed_values, _ = critic(state, changed, hidden)
        same_inputs, _ = critic(state, obs[..., :1, :].expand(-1, -1, 3, -1), hidden)  # every agent sees o_0
        other_state, _ = critic(state + 1.0, obs, hidden)
    torch.testing.assert_close(changed_values[..., :2], values[..., :2])
    assert not torch.allclose(changed_values[..., 2], values[..., 2])
    assert not torch.allclose(same_inputs[..., 0], same_inputs[..., 1])  # the id tells the agents apart
    assert not torch.allclose(other_state, values)
    # without the agent-specific state every agent gets the value of the global state
    shared, _ = make_critic(seed=5, n_agents=3, agent_specific_state=False)(state, obs, hidden)
    torch.testing.assert_close(shared[..., 1:], shared[..., :1].expand(-1, -1, 2))


class OneStepEnvs:
    """Eval envs whose episodes last one step; they keep the actions they were given."""

    num_envs, n_agents, n_actions, obs_dim, has_win, seed = 64, 2, 4, 3, False, 0

    def reset(self, seed=None):
        self.avail = np.ones((self.num_envs, self.n_agents, self.n_actions), bool)
        self.avail[..., 3] = False  # the most probable action is not available
        return np.zeros((self.num_envs, self.n_agents, self.obs_dim), np.float32), None, self.avail

    def step(self, actions):
        self.actions = actions
        done = np.ones(self.num_envs, bool)
        info = {"episode_return": np.zeros(self.num_envs)}
        return *self.reset()[:1], None, self.avail, None, done, ~done, info


@pytest.mark.parametrize("greedy", [True, False])
def test_greedy_evaluation_plays_the_most_probable_available_action(greedy):
    logits = torch.tensor([0.0, 0.3, 0.1, 5.0])

    def agent(obs, hidden, decentralized):  # (envs, time, agents, actions)
        return logits.expand(*obs.shape[:-1], 4), hidden, None

    envs = OneStepEnvs()
    cadp_mappo.evaluate(agent, envs, 8, "cpu", decentralized=True, greedy=greedy)
    assert (envs.actions == 1).all() == greedy and (envs.actions != 3).all()


class ShortLivedEnv:
    """A 3-agent PettingZoo-style parallel env: agent b dies after step 1 and the episode hits its time limit
    (max_cycles) after step 3, so a rollout has deaths, time-limit ends and episode starts inside its chunks."""

    possible_agents, max_cycles = ["a", "b", "c"], 3

    def observation_space(self, agent):
        return gymnasium.spaces.Box(-1, 1, (2,), np.float32)

    def action_space(self, agent):
        return gymnasium.spaces.Discrete(3)

    @property
    def unwrapped(self):
        return self

    def reset(self, seed=None, options=None):
        self.t, self.agents = 0, list(self.possible_agents)
        self.rng = np.random.default_rng(seed)
        return {a: self.rng.uniform(-1, 1, 2).astype(np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        obs = {a: self.rng.uniform(-1, 1, 2).astype(np.float32) for a in self.agents}
        rewards = {a: float(actions[a] == 1) + self.t for a in self.agents}
        terms = {a: a == "b" and self.t == 1 for a in self.agents}
        self.agents = [a for a in self.agents if not terms[a]]
        return obs, rewards, terms, {a: False for a in obs}, {a: {} for a in obs}

    def close(self):
        pass


def run_here(cwd, monkeypatch, *flags):
    """cadp_mappo.py run in this process from `cwd`, as `python cadp_mappo.py flags` would run it (the stop-signal
    handlers it installs are put back)."""
    monkeypatch.chdir(cwd)
    flags = ["--eval-interval", "1000", "--checkpoint-interval", "0", *flags]  # the given ones override these
    monkeypatch.setattr(sys, "argv", ["cadp_mappo.py", *flags])
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        runpy.run_path(str(ROOT / "cadp_mappo.py"), run_name="__main__")
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


RELEASE_FLAGS = ["--anneal-lr", "--no-bootstrap-time-limit", "--no-value-active-masks"]


@pytest.mark.parametrize(
    "flags",
    [[], RELEASE_FLAGS, ["--critic", "feed-forward", "--no-agent-specific-state"]],
    ids=["defaults", "flipped", "feed-forward"],
)
def test_the_script_replays_its_rollouts_and_follows_its_flags(flags, tmp_path, monkeypatch, capsys):
    """The script run in this process on an env with deaths and time limits: each update's chunks give the
    log-probs and values its rollout stored (the hidden states and episode starts are wired right); a time
    limit bootstraps from V(final state) or (`--no-bootstrap-time-limit`) ends the returns; the logged value
    loss averages over the living agents or (`--no-value-active-masks`) over all; the learning rate stays
    constant or (`--anneal-lr`) falls; and --total-timesteps is rounded up to whole rollouts, with a note."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    package = types.ModuleType("shortzoo")
    package.__path__, package.short_v0 = [], types.ModuleType("shortzoo.short_v0")
    package.short_v0.parallel_env = ShortLivedEnv
    for module in (package, package.short_v0):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    expected_value_loss = []

    class CheckedBuffer(RolloutBuffer):
        def chunks(self, chunk_length, **extra):
            chunk = super().chunks(chunk_length, **extra)
            script = sys._getframe(1).f_globals  # the script's namespace, as runpy runs it
            starts = chunk["episode_starts"]
            assert starts[:, 1:].any() and not self.active.all() and self.truncated.any()
            with torch.no_grad():
                logits, _, _ = script["agent"](chunk["obs"], chunk["hidden"], episode_starts=starts)
                values, _ = script["critic"](chunk["state"], chunk["obs"], chunk["critic_hidden"], starts)
            log_probs = script["masked_policy"](logits, chunk["avail"]).log_prob(chunk["actions"])
            torch.testing.assert_close(log_probs, chunk["log_probs"])
            torch.testing.assert_close(values, chunk["values"])
            # the last step of a time-limited episode: r + gamma V(final state) - V(s), or r - V(s) as terminal
            t, e = self.truncated.nonzero(as_tuple=True)
            bootstrap = "--no-bootstrap-time-limit" not in flags
            last = self.rewards[t, e, None] + 0.99 * self.final_values[t, e] * bootstrap - script["values"][t, e]
            torch.testing.assert_close(extra["advantages"][t, e], last)
            # one epoch, one minibatch: the logged value loss is the rollout's, before any step
            errors, active = (chunk["values"] - chunk["targets"]) ** 2, chunk["active"]
            masked, every = 0.5 * (errors * active).sum() / active.sum(), 0.5 * errors.mean()
            assert abs(masked - every) > 1e-3 * every  # the dead agents' errors count: the masks can be told apart
            expected_value_loss.append((every if "--no-value-active-masks" in flags else masked).item())
            return chunk

    monkeypatch.setattr(common.buffers, "RolloutBuffer", CheckedBuffer)
    tiny = "--num-envs 2 --num-steps 8 --chunk-length 4 --update-epochs 1 --hidden-dim 16 --eval-episodes 2"
    run_here(tmp_path, monkeypatch, "--env-id", "shortzoo:short_v0", "--total-timesteps", "40", *tiny.split(), *flags)
    out = capsys.readouterr().out
    assert "--total-timesteps 40 rounded up to whole rollouts of 16 steps" in out and "after 48 steps" in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    events = EventAccumulator(str(run_dir)).Reload()
    tags = ("losses/value_loss", "losses/approx_kl", "charts/learning_rate")
    logged = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags}
    assert [step for step, _ in logged["losses/value_loss"]] == [16, 32, 48]
    assert [value for _, value in logged["losses/value_loss"]] == pytest.approx(expected_value_loss, rel=1e-5)
    assert [value for _, value in logged["losses/approx_kl"]] == pytest.approx([0.0] * 3, abs=1e-7)  # the actor's too
    rates = [value for _, value in logged["charts/learning_rate"]]
    assert rates == pytest.approx([5e-4 * (1 - i / 3) for i in range(3)] if "--anneal-lr" in flags else [5e-4] * 3)


def test_help_says_total_timesteps_is_rounded_up_to_whole_rollouts(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        run_here(tmp_path, monkeypatch, "--help")
    assert "rounded up to whole" in " ".join(capsys.readouterr().out.split())


def test_a_checkpoint_of_before_the_critic_flag_evaluates_with_its_feed_forward_critic(tmp_path, monkeypatch, capsys):
    """Runs written before `--critic` existed had the feed-forward critic; their checkpoints hold no `critic`
    flag, and resume or evaluate with that critic without being told (Args.former_defaults)."""
    old_flags = ["--critic", "feed-forward", "--no-agent-specific-state", "--anneal-lr"]
    tiny = ["--env-id", "matrix:two_step", "--num-envs", "4", "--num-steps", "10", "--eval-episodes", "2"]
    run_here(tmp_path, monkeypatch, *tiny, "--total-timesteps", "40", "--checkpoint-interval", "40", *old_flags)
    (path,) = (tmp_path / "runs").glob("*/checkpoints/step_40.cadp_model")
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["args"]["critic"], checkpoint["args"]["value_active_masks"]  # flags an earlier version lacked
    torch.save(checkpoint, path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_here(tmp_path, monkeypatch, "--eval-only", str(path))
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert "CADP(D)" in capsys.readouterr().out
