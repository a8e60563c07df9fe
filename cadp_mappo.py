"""CADP-MAPPO: Centralized Advising and Decentralized Pruning on top of recurrent MAPPO, in one file.

Paper: Zhou et al., "CADP: Towards Better Centralized Learning for Decentralized Execution in MARL", AAMAS 2025.
The shared actor attends over all agents' observations while training (advice, Eq. 1), a branch beside its own
recurrent one (the authors' release; `--advice-placement gru-input`: into the GRU, the abstract's Eq. 2); a pruning
loss (Eq. 3) then drives each agent's attention onto itself, so the trained actor runs decentralized: CADP(D) needs
only the agent's own observation. The critic is MAPPO's recurrent one on the agent-specific state (as the release's;
`--critic feed-forward` for a stateless MLP). `grep -n "# CADP"` marks the paper's
pieces where they happen (Eq. 1-3, the advice branch, the breakpoint, the C/D evaluation, the pruned actor);
`--no-advice` is plain recurrent MAPPO through the same code. Docs and results: docs/cadp_mappo.md.
"""

if __name__ == "__main__":  # first, before torch loads: Ctrl-C while starting is one line and exit 130
    import common.startup  # noqa: F401
import math
import os
import time
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Categorical

from common.buffers import RolloutBuffer
from common.cli import check_flags, fail
from common.normalizer import ValueNormalizer  # MAPPO's value normalization: running mean and variance
from common.run import Run, RunArgs, play_eval_episodes
from common.vec_env import VecEnv


@dataclass
class Args(RunArgs):  # RunArgs (common/run.py): --seed, --cuda, --track, --save-model, --resume, --eval-only, ...
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    former_defaults: ClassVar[dict] = {"critic": "feed-forward"}  # ---- plumbing: checkpoints of before --critic
    checkpoint_interval: int = 100_000
    """environment steps between checkpoints in `runs/{run_name}/checkpoints/`, at rollout ends (0 = none)"""

    # Algorithm
    env_id: str = "lbforaging:Foraging-8x8-2p-3f-v3"
    """the environment id, `module:Id` (see README); the team reward is the sum of the agents' rewards"""
    total_timesteps: int = 1_000_000
    """environment steps to train at least (one joint step of all agents in one env counts 1), rounded up to whole
    rollouts of num_envs x num_steps"""
    learning_rate: float = 5e-4
    """Adam learning rate of the actor and the critic"""
    num_envs: int = 16
    """parallel environments collecting the rollout"""
    num_steps: int = 50
    """steps per env in each rollout (a multiple of `chunk_length`)"""
    anneal_lr: bool = False
    """anneal the learning rate linearly to 0 over training (CleanRL's default); off: constant, as the release, so that
    the pruning, late in training, runs at the full rate"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """lambda of generalized advantage estimation"""
    num_minibatches: int = 1
    """minibatches per epoch, each a set of whole chunks"""
    update_epochs: int = 10
    """epochs over each rollout"""
    norm_adv: bool = True
    """normalize the advantages of each minibatch"""
    clip_coef: float = 0.2
    """PPO's surrogate clipping range"""
    clip_vloss: bool = True
    """clip the value update to `clip_coef` around the rollout's value (MAPPO's value clipping)"""
    value_active_masks: bool = True
    """fit no values for dead agents (MAPPO's value active masks); `--no-value-active-masks`: fit them (the release)"""
    bootstrap_time_limit: bool = True
    """bootstrap a time-limit end from V(final state); `--no-bootstrap-time-limit`: as terminal (the release)"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    vf_coef: float = 1.0
    """value-loss coefficient"""
    max_grad_norm: float = 10.0
    """gradient-norm clip, applied to the actor and the critic separately"""
    target_kl: float | None = None
    """stop the epochs of an update early once the approximate KL exceeds this"""
    chunk_length: int = 10
    """time steps per recurrent training sequence (MAPPO's data_chunk_length)"""
    obs_agent_id: bool = True
    """append a one-hot agent id to each observation"""
    obs_last_action: bool = False
    """append the agent's previous action (one-hot) to each observation"""
    critic: Literal["recurrent", "feed-forward"] = "recurrent"
    """`recurrent`: MAPPO's critic (MLP base -> GRU -> LayerNorm), the release's; `feed-forward`: a stateless MLP"""
    agent_specific_state: bool = True
    """critic input [global state, own observation, agent id] per agent (our agent-specific state, the release's
    `use_state_agent`); `--no-agent-specific-state`: the global state alone"""
    hidden_dim: int = 64
    """GRU hidden size and MLP width of actor and critic"""
    eval_interval: int = 50_000
    """environment steps between evaluations of CADP(C) and CADP(D)"""
    eval_episodes: int = 32
    """episodes per evaluation of each model"""
    eval_greedy: bool = False
    """act on the most probable action, not a sample (it can deadlock: LBF 8x8-2p-3f, 0.70 greedy vs 0.99 sampled)"""

    # CADP
    advice: bool = True
    """exchange advice between agents during training; `--no-advice` is plain recurrent MAPPO"""
    advice_placement: Literal["post-gru", "gru-input"] = "post-gru"
    """`post-gru`: advice beside the GRU output (the release; no advice: MAPPO's recurrent actor); `gru-input`: Eq. 2"""
    att_heads: int = 4
    """attention heads of the advice attention (Eq. 1)"""
    att_embed_dim: int = 32
    """query/key/value size per head"""
    prune_coef: float = 0.5
    """weight alpha of the pruning loss (Eq. 3), at `prune_loss_scale`"""
    prune_loss_scale: Literal["release", "eq3"] = "release"
    """`release`: the authors' mean over heads x agents^2 entries (their alphas' scale); `eq3`: agents^2 times that"""
    prune_start_fraction: float = 0.67
    """fraction of `total_timesteps` after which the pruning loss is switched on (1 = never)"""
    prune_ramp_fraction: float = 0.0
    """fraction of `total_timesteps` over which alpha ramps linearly from 0 (0 = switch on at once)"""


def validate(args: Args) -> None:
    """Flags that cannot work stop here, each with one `error:` line (exit code 2)."""
    check_flags(
        args,
        positive=(
            "total_timesteps learning_rate num_envs num_steps num_minibatches update_epochs chunk_length "
            "max_grad_norm hidden_dim eval_interval eval_episodes att_heads att_embed_dim"
        ),
        non_negative="clip_coef ent_coef vf_coef prune_coef",
        fractions="gamma gae_lambda prune_start_fraction prune_ramp_fraction",
    )
    if args.num_steps % args.chunk_length:
        fail(f"--num-steps must be a multiple of --chunk-length (the training sequences' length, {args.chunk_length})")
    if args.num_envs * args.num_steps // args.chunk_length % args.num_minibatches:
        fail("--num-minibatches must divide the training sequences per rollout, num_envs * num_steps / chunk_length")


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


# teams up to this size attend with broadcast products instead of batched matmuls (faster on CPU)
SMALL_TEAM = 4


class AdviceAttention(nn.Module):
    """CADP Eq. 1: agent i's confidence c_i in every agent j, and the advice z_i it receives."""

    def __init__(self, obs_dim: int, heads: int, embed_dim: int):
        super().__init__()
        self.heads, self.embed_dim = heads, embed_dim
        self.query = nn.Linear(obs_dim, heads * embed_dim, bias=False)
        self.key = nn.Linear(obs_dim, heads * embed_dim, bias=False)
        self.value = nn.Linear(obs_dim, heads * embed_dim, bias=False)

    def forward(self, obs: torch.Tensor, decentralized: bool = False):
        """obs (..., agents, obs_dim) -> advice (..., agents, heads * embed_dim) and
        log-confidence (..., heads, agents i, agents j), or None when decentralized."""
        *batch, n_agents, _ = obs.shape
        value = self.value(obs).view(*batch, n_agents, self.heads, self.embed_dim)
        if decentralized:
            # CADP(D): c_i = e_i, so z_i = v_i; queries and keys are never needed
            return value.flatten(-2), None
        query = self.query(obs).view(*batch, n_agents, self.heads, self.embed_dim)
        key = self.key(obs).view(*batch, n_agents, self.heads, self.embed_dim)
        # CADP Eq. 1: alpha_ij = q_i . k_j / sqrt(d); c_ij = softmax_j(alpha_ij); z_i = sum_j c_ij v_j
        if n_agents <= SMALL_TEAM:
            # the same sums as the einsums below, as broadcast products: on a CPU these beat batched
            # matmuls of tiny (agents x agents) matrices; above ~5 agents the products grow too large
            scores = (query.unsqueeze(-3) * key.unsqueeze(-4)).sum(-1).movedim(-1, -3)  # (..., heads, i, j)
        else:
            scores = torch.einsum("...ihd,...jhd->...hij", query, key)
        log_confidence = (scores / math.sqrt(self.embed_dim)).log_softmax(dim=-1)  # (..., heads, agents i, agents j)
        confidence = log_confidence.exp()
        if n_agents <= SMALL_TEAM:
            advice = (confidence.movedim(-3, -1).unsqueeze(-1) * value.unsqueeze(-4)).sum(-3)  # (..., i, heads, d)
        else:
            advice = torch.einsum("...hij,...jhd->...ihd", confidence, value)
        return advice.flatten(-2), log_confidence


def mappo_base(input_dim: int, hidden_dim: int) -> nn.Sequential:
    """MAPPO's MLP base, the actor's and the recurrent critic's: normalized input, two LayerNorm'd ReLU layers."""
    mlp = [layer_init(nn.Linear(input_dim, hidden_dim)), nn.ReLU(), nn.LayerNorm(hidden_dim)]
    mlp += [layer_init(nn.Linear(hidden_dim, hidden_dim)), nn.ReLU(), nn.LayerNorm(hidden_dim)]
    return nn.Sequential(nn.LayerNorm(input_dim), *mlp)


def mappo_gru(hidden_dim: int) -> nn.GRU:
    """MAPPO's GRU: orthogonal weights, zero biases."""
    gru = nn.GRU(hidden_dim, hidden_dim, batch_first=True)
    for name, parameter in gru.named_parameters():
        nn.init.orthogonal_(parameter) if "weight" in name else nn.init.zeros_(parameter)
    return gru


def recurrent(gru: nn.GRU, inputs: torch.Tensor, hidden: torch.Tensor, episode_starts=None):
    """inputs (batch, time, agents, features), hidden (batch, agents, hidden_dim), episode_starts (batch, time) bool:
    True where inputs is an episode's first step, so the hidden state is zeroed before it (None: no starts) ->
    outputs (batch, time, agents, hidden_dim), the new hidden state."""
    batch, time_steps, n_agents, _ = inputs.shape
    # each agent of each sequence is one GRU sequence: (batch * agents, time, features)
    sequences = inputs.transpose(1, 2).reshape(batch * n_agents, time_steps, -1)
    hidden = hidden.reshape(1, batch * n_agents, -1)
    if episode_starts is None:  # no episode starts within the sequences: one GRU call
        outputs, hidden = gru(sequences, hidden)
    else:
        # one GRU call per stretch in which no sequence starts a new episode; a sequence whose
        # episode starts at a stretch's first step enters it with a zeroed hidden state
        keep = (~episode_starts).repeat_interleave(n_agents, dim=0).float()  # (batch * agents, time)
        boundaries = [0] + (episode_starts[:, 1:].any(dim=0).nonzero().flatten() + 1).tolist() + [time_steps]
        pieces = []
        for start, end in zip(boundaries[:-1], boundaries[1:]):
            piece, hidden = gru(sequences[:, start:end], hidden * keep[None, :, start, None])
            pieces.append(piece)
        outputs = torch.cat(pieces, dim=1)  # (batch * agents, time, hidden_dim)
    return outputs.view(batch, n_agents, time_steps, -1).transpose(1, 2), hidden.view(batch, n_agents, -1)


class CADPAgent(nn.Module):
    """Per-agent actor, parameters shared by all agents. `--advice-placement`:
    post-gru (the authors' release): x_i = MLP(LayerNorm(o_i)); h_i = LayerNorm(GRU(x_i, h_i)); a_i = ReLU(advice_fc(
        z_i)); logits = head(merge([h_i, a_i])). Without advice: MAPPO's recurrent actor, logits = head(h_i).
    gru-input (the extended abstract's Eq. 2): h_i = GRU([z_i, o_i], h_i); logits = MLP(h_i). Without advice: the
        same GRU on o_i alone."""

    def __init__(self, obs_dim: int, n_actions: int, args: Args):
        super().__init__()
        post_gru, hidden_dim = args.advice_placement == "post-gru", args.hidden_dim
        self.advice = AdviceAttention(obs_dim, args.att_heads, args.att_embed_dim) if args.advice else None
        advice_dim = args.att_heads * args.att_embed_dim if args.advice else 0
        self.base = self.gru_norm = self.advice_fc = self.merge = None
        if post_gru:
            # MAPPO's actor: its MLP base, its GRU, LayerNorm
            self.base, self.gru = mappo_base(obs_dim, hidden_dim), mappo_gru(hidden_dim)
            self.gru_norm = nn.LayerNorm(hidden_dim)
            if args.advice:
                # CADP: the advice is a per-step feed-forward branch beside the recurrent one; pruning cuts
                # it down to the agent's own v_i, and the recurrent branch never sees other agents.
                # merge is linear, as in the release: the policy head follows it directly
                self.advice_fc = nn.Linear(advice_dim, hidden_dim)
                self.merge = nn.Linear(2 * hidden_dim, hidden_dim)
            # a small last layer starts the policy near uniform over the available actions (MAPPO, CleanRL)
            self.policy_head = layer_init(nn.Linear(hidden_dim, n_actions), std=0.01)
        else:
            # CADP Eq. 2: the GRU reads the advice *and* the raw observation; the raw one is the
            # residual path that never passes through attention, so pruning cannot cut it off
            self.gru = nn.GRU(advice_dim + obs_dim, hidden_dim, batch_first=True)
            layers = [layer_init(nn.Linear(hidden_dim, hidden_dim)), nn.ReLU()]
            self.policy_head = nn.Sequential(*layers, layer_init(nn.Linear(hidden_dim, n_actions), std=0.01))

    def forward(self, obs: torch.Tensor, hidden: torch.Tensor, decentralized=False, episode_starts=None):
        """obs (batch, time, agents, obs_dim), hidden (batch, agents, hidden_dim), episode_starts (batch, time) bool:
        True where obs is an episode's first step, so the hidden state is zeroed before it (None: no starts) ->
        logits (batch, time, agents, actions), new hidden, log-confidence (batch, time, heads, agents, agents)."""
        advice, log_confidence = None, None
        if self.advice is not None:
            # the advice depends on observations only, so all time steps are attended at once
            advice, log_confidence = self.advice(obs, decentralized)  # (batch, time, agents, heads * embed)
        if self.base is not None:
            inputs = self.base(obs)
        else:
            inputs = obs if advice is None else torch.cat([advice, obs], dim=-1)  # CADP Eq. 2: [z_i, o_i]
        features, hidden = recurrent(self.gru, inputs, hidden, episode_starts)  # (batch, time, agents, hidden)
        if self.gru_norm is not None:
            features = self.gru_norm(features)
        if self.merge is not None:
            # CADP (the release's placement): the policy from [h_i, ReLU(advice_fc(z_i))]
            features = self.merge(torch.cat([features, F.relu(self.advice_fc(advice))], dim=-1))
        return self.policy_head(features), hidden, log_confidence


class Critic(nn.Module):
    """V per agent, in normalized units, from [state, o_i, one-hot i] with `--agent-specific-state`: no env here has
    SMAC's agent-specific state, so each agent's own observation (and id) stands in for the state seen from it.
    `recurrent` (MAPPO's and the release's critic): MAPPO's MLP base -> GRU -> LayerNorm -> value, its hidden state
    zeroed at episode starts as the actor's; a time-limit end is valued from the hidden state after its last step.
    `feed-forward`: a ReLU MLP; without the agent-specific state, one value per env, shared by its agents."""

    def __init__(self, state_dim: int, obs_dim: int, n_agents: int, args: Args):
        super().__init__()
        self.agent_specific, hidden_dim = args.agent_specific_state, args.hidden_dim
        input_dim = state_dim + (obs_dim + n_agents if self.agent_specific else 0)
        self.gru = None
        if args.critic == "recurrent":
            self.base, self.gru = mappo_base(input_dim, hidden_dim), mappo_gru(hidden_dim)
            self.gru_norm, self.value_head = nn.LayerNorm(hidden_dim), layer_init(nn.Linear(hidden_dim, 1), std=1.0)
        else:
            first, second = layer_init(nn.Linear(input_dim, hidden_dim)), layer_init(nn.Linear(hidden_dim, hidden_dim))
            self.net = nn.Sequential(first, nn.ReLU(), second, nn.ReLU(), layer_init(nn.Linear(hidden_dim, 1), std=1.0))

    def forward(self, state: torch.Tensor, obs: torch.Tensor, hidden: torch.Tensor, episode_starts=None):
        """state (batch, time, state_dim), obs (batch, time, agents, obs_dim), hidden (batch, agents, hidden_dim),
        episode_starts as CADPAgent's -> values (batch, time, agents), new hidden (the feed-forward's: as given)."""
        per_agent = obs.shape[:-1]  # (batch, time, agents)
        if self.agent_specific:
            # the id is appended even when obs has one, so the critic's input never depends on obs flags
            agent_ids = torch.eye(per_agent[-1], device=obs.device).expand(*per_agent, -1)
            inputs = torch.cat([state.unsqueeze(-2).expand(*per_agent, -1), obs, agent_ids], dim=-1)
        else:
            inputs = state.unsqueeze(-2)  # (batch, time, 1, state_dim): the same input for every agent
        if self.gru is None:
            return self.net(inputs).squeeze(-1).expand(per_agent), hidden
        features, hidden = recurrent(self.gru, self.base(inputs).expand(*per_agent, -1), hidden, episode_starts)
        return self.value_head(self.gru_norm(features)).squeeze(-1), hidden


def masked_policy(logits: torch.Tensor, avail: torch.Tensor) -> Categorical:
    """The policy over available actions: unavailable logits become -inf, so their probability is exactly 0 and
    they are never sampled; Categorical.entropy clamps -inf to the lowest float, so 0 * log 0 adds 0 (not NaN) to
    the entropy and its gradient. avail: bool, logits' shape. Not validated: NaN logits of a diverged update must
    reach the losses, where the divergence check names them."""
    return Categorical(logits=logits.masked_fill(~avail, -torch.inf), validate_args=False)


def compute_gae(rewards, values, last_values, final_values, terminated, truncated, gamma: float, gae_lambda: float):
    """Generalized advantage estimation over a rollout, in return units. rewards, terminated, truncated (time,
    envs); values (time, envs, agents): V of the state each step acted in; last_values (envs, agents): V of the state
    after the rollout; final_values (time, envs, agents): V of the finished episode's last state where an episode
    ended at step t (the env has already reset there). A truncation (time limit) bootstraps from that final state, a
    termination does not; both stop advantages from flowing back across the episode boundary."""
    dones = (terminated | truncated).unsqueeze(-1)  # (time, envs, 1)
    next_values = torch.where(dones, final_values, torch.cat([values[1:], last_values.unsqueeze(0)]))
    bootstrap = gamma * (~terminated).float().unsqueeze(-1)
    carry = gamma * gae_lambda * (~dones).float()
    deltas = rewards.unsqueeze(-1) + bootstrap * next_values - values  # (time, envs, agents)
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for t in reversed(range(values.shape[0])):
        running = deltas[t] + carry[t] * running
        advantages[t] = running
    return advantages


def masked_mean(x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """The mean over the active entries (agents alive at that step; MAPPO's active masks)."""
    return (x * active).sum() / active.sum().clamp(min=1)


def ppo_policy_loss(new_log_probs, old_log_probs, advantages, active, clip_coef: float):
    """PPO's clipped surrogate (to minimize), with approx KL (Schulman's k3) and the clipped fraction, each over the
    active entries: a dead agent's forced no-op is no decision (ratio 1, no gradient), and counting it would only
    shrink the step (MAPPO's policy active masks)."""
    log_ratio = new_log_probs - old_log_probs
    ratio = log_ratio.exp()
    surrogate = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef))
    loss = masked_mean(surrogate, active)
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1) - log_ratio, active)
        clipfrac = masked_mean(((ratio - 1).abs() > clip_coef).float(), active)
    return loss, approx_kl, clipfrac


def value_loss(new_values, old_values, targets, active, clip_coef: float, clip_vloss: bool):
    """0.5 * squared error in normalized units, pessimistic over the clipped update when clip_vloss, over the active
    entries (MAPPO's value active masks: no values fitted for dead agents). MAPPO's Huber loss with delta 10 is this
    same loss for normalized errors below 10."""
    unclipped = (new_values - targets) ** 2
    if not clip_vloss:
        return 0.5 * masked_mean(unclipped, active)
    clipped_values = old_values + (new_values - old_values).clamp(-clip_coef, clip_coef)
    return 0.5 * masked_mean(torch.max(unclipped, (clipped_values - targets) ** 2), active)


# CADP Eq. 3
def pruning_loss(log_confidence: torch.Tensor, mask: torch.Tensor, scale: str = "release") -> torch.Tensor:
    """CADP Eq. 3, L_p = sum_i KL(e_i || c_i) = sum_i -log c_ii, averaged over the valid (mask == 1) steps.
    `release`: as the authors' release computes it, the mean of KL(e_i || c_i)'s terms over all heads x agents
    x agents entries, (1/(H N^2)) sum_h sum_i -log c_ii: their alphas are tuned for this scale. `eq3`: Eq. 3
    literally (sum over agents, mean over heads), N^2 times larger.
    log_confidence (batch, time, heads, agents, agents), mask (batch, time)."""
    heads, n_agents = log_confidence.shape[-3], log_confidence.shape[-1]
    self_log_confidence = log_confidence.diagonal(dim1=-2, dim2=-1)  # (batch, time, heads, agents)
    entries = heads * n_agents**2 if scale == "release" else heads
    per_step = -self_log_confidence.sum(dim=(-2, -1)) / entries  # (batch, time)
    return (per_step * mask).sum() / mask.sum()


# CADP: the breakpoint, after which pruning drives the advice onto each agent itself
def prune_coef_at(step: int, args: Args) -> float:
    """alpha at `step`: 0 up to the breakpoint (on once t_env > breakpoint, as the release), then `prune_coef`."""
    start = args.prune_start_fraction * args.total_timesteps
    if not args.advice or args.prune_start_fraction >= 1 or step <= start:  # 1: never, even past the budget
        return 0.0
    ramp = args.prune_ramp_fraction * args.total_timesteps
    return args.prune_coef * (1.0 if ramp <= 0 else min(1.0, (step - start) / ramp))


@torch.no_grad()
def evaluate(agent, envs: VecEnv, hidden_dim: int, device, decentralized: bool, greedy: bool):
    """CADP(C), or CADP(D) with decentralized (z_i = v_i), on one episode per eval env, sampled or greedy: the mean
    return, win rate (or None) and confidence matrix c (heads, agents, agents; None for CADP(D))."""

    def act(obs, avail, hidden):
        logits, hidden, log_confidence = agent(torch.as_tensor(obs, device=device).unsqueeze(1), hidden, decentralized)
        policy = masked_policy(logits[:, 0], torch.as_tensor(avail, device=device))
        return (policy.probs.argmax(dim=-1) if greedy else policy.sample()), hidden, log_confidence

    hidden = torch.zeros(envs.num_envs, envs.n_agents, hidden_dim, device=device)
    return play_eval_episodes(envs, act, hidden)  # ---- plumbing: the episodes, the same ones at every evaluation


if __name__ == "__main__":
    # ---- plumbing: flags (with --resume/--eval-only PATH: that run's, overridden by those given), seeds, device
    run = Run(Args, validate)
    args, device = run.args, run.device
    batch_size = args.num_envs * args.num_steps  # environment steps per rollout (not flags: they follow from these)
    num_chunks = batch_size // args.chunk_length  # training sequences per rollout

    # ---- plumbing: the envs, refused up front if they and the rollout with its update's activations cannot fit
    def needs(envs):  # per env step: the stored rollout, its chunked copy, the update's activations (~42 KB on LBF)
        advice_dim, critic_input = args.att_heads * args.att_embed_dim, 3 * (envs.state_dim + envs.obs_dim)
        per_agent = 3 * envs.obs_dim + critic_input + 61 * args.hidden_dim + 4 * envs.n_actions + 8 * advice_dim
        step_bytes = 4 * envs.n_agents * per_agent + 12 * envs.state_dim
        return {"rollout and update": step_bytes * batch_size // args.num_minibatches}

    envs, eval_envs = run.make_envs(needs, "--num-envs, --num-steps or --eval-episodes (or raise --num-minibatches)")

    n_agents, hidden_dim = envs.n_agents, args.hidden_dim
    agent = CADPAgent(envs.obs_dim, envs.n_actions, args).to(device)
    critic = Critic(envs.state_dim, envs.obs_dim, n_agents, args).to(device)
    value_normalizer = ValueNormalizer().to(device)
    optimizer = torch.optim.Adam(list(agent.parameters()) + list(critic.parameters()), lr=args.learning_rate, eps=1e-5)
    networks = dict(actor=agent, critic=critic, value_normalizer=value_normalizer, optimizer=optimizer)

    def evaluate_c_and_d():  # CADP: both models, C (advice) and D (z_i = v_i), on the same episodes
        return {
            mode: evaluate(agent, mode_envs, hidden_dim, device, mode == "decentralized", args.eval_greedy)
            for mode, mode_envs in eval_envs.items()
        }

    run.restore(envs, networks)  # ---- plumbing: a resumed or evaluated run's weights
    if args.eval_only:  # ---- plumbing: only evaluate the given checkpoint or model, then stop
        run.report_eval_only(evaluate_c_and_d(), eval_envs, "greedy" if args.eval_greedy else "sampled")
    num_iterations = run.whole_rollouts(batch_size)  # ---- plumbing: --total-timesteps rounded up, said when it is

    rb = RolloutBuffer(args.num_steps, envs, hidden_dim, device)  # (time, envs, ...) tensors, as CleanRL's storage

    def as_tensors(*arrays):
        return [torch.as_tensor(array, device=device) for array in arrays]

    obs, state, avail = as_tensors(*envs.reset())
    hidden = critic_hidden = torch.zeros(args.num_envs, n_agents, hidden_dim, device=device)  # actor's, critic's
    episode_start = torch.ones(args.num_envs, dtype=torch.bool, device=device)
    active = torch.ones(args.num_envs, n_agents, device=device)  # every agent is in a fresh episode

    # ---- plumbing: a resumed run continues exactly where its checkpoint left off, at the end of a rollout
    def live_state():  # what a checkpoint saves: the training envs and the next rollout's inputs
        return dict(
            envs=envs,
            obs=obs,
            state=state,
            avail=avail,
            hidden=hidden,
            active=active,
            episode_start=episode_start,
            critic_hidden=critic_hidden,
        )

    complete = lambda saved: saved["iteration"] >= num_iterations  # noqa: E731
    counters, live = run.resume(dict(iteration=0, next_eval=0, global_step=0), live_state(), complete)
    next_eval, global_step = counters["next_eval"], counters["global_step"]
    if run.resumed and live is None:  # no saved envs (unpicklable, or a branch to a new seed or env): new episodes
        obs, state, avail = as_tensors(*envs.reset(seed=args.seed + global_step))
    elif run.resumed:
        envs, obs, state, avail = live["envs"], live["obs"], live["state"], live["avail"]
        hidden, episode_start, active = live["hidden"], live["episode_start"], live["active"]
        critic_hidden = live.get("critic_hidden", critic_hidden)  # none in checkpoints of the feed-forward critic
    writer = run.start(global_step)

    for iteration in range(counters["iteration"] + 1, num_iterations + 1):
        if args.anneal_lr:  # one optimizer, one parameter group: the actor's and the critic's parameters
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate

        for step in range(args.num_steps):
            global_step += args.num_envs
            rb.add(step, obs=obs, state=state, avail=avail, hidden=hidden, episode_starts=episode_start, active=active)
            rb.add(step, critic_hidden=critic_hidden)
            with torch.no_grad():
                starts = episode_start.unsqueeze(1)  # (envs, time = 1)
                logits, hidden, _ = agent(obs.unsqueeze(1), hidden, episode_starts=starts)
                values, critic_hidden = critic(state.unsqueeze(1), obs.unsqueeze(1), critic_hidden, starts)
                policy = masked_policy(logits[:, 0], avail)  # over (envs, agents)
                actions = policy.sample()
                rb.add(step, actions=actions, log_probs=policy.log_prob(actions), values=values[:, 0])
            next_obs, next_state, next_avail, reward, terminated, truncated, info = envs.step(actions.cpu().numpy())
            done = terminated | truncated
            rb.add(step, rewards=reward, terminated=terminated, truncated=truncated)
            if done.any():  # V(final state), from the critic's hidden state after that step; only a truncation uses it
                with torch.no_grad():
                    final_state, final_obs = as_tensors(info["final_state"], info["final_obs"])
                    final_values, _ = critic(final_state.unsqueeze(1), final_obs.unsqueeze(1), critic_hidden)
                    rb.final_values[step] = value_normalizer.denormalize(final_values[:, 0])
            run.log_episodes(info, done, global_step)  # charts/episodic_return, charts/episodic_length, charts/win_rate
            obs, state, avail = as_tensors(next_obs, next_state, next_avail)
            episode_start = torch.as_tensor(done, device=device)
            active = torch.as_tensor(info["active"], dtype=torch.float32, device=device)

        update_start = time.perf_counter()
        with torch.no_grad():
            values = value_normalizer.denormalize(rb.values)  # (time, envs, agents), return units
            last_values, _ = critic(state.unsqueeze(1), obs.unsqueeze(1), critic_hidden, episode_start.unsqueeze(1))
            last_values = value_normalizer.denormalize(last_values[:, 0])
            # --no-bootstrap-time-limit (the release): a time limit ends the returns as a termination does
            ends = rb.final_values, rb.terminated | (rb.truncated & (not args.bootstrap_time_limit)), rb.truncated
            advantages = compute_gae(rb.rewards, values, last_values, *ends, args.gamma, args.gae_lambda)
            returns = advantages + values
            value_normalizer.update(returns)
            targets = value_normalizer.normalize(returns)

        # training sequences: (chunks, chunk_length, ...), each starting from the GRU state stored at its start
        chunk = rb.chunks(args.chunk_length, advantages=advantages, targets=targets)
        prune_coef = prune_coef_at(global_step, args)
        minibatch_chunks = num_chunks // args.num_minibatches
        clipfracs = []
        for _ in range(args.update_epochs):
            order = torch.randperm(num_chunks, device=device)
            for start in range(0, num_chunks, minibatch_chunks):
                mb = {name: tensor[order[start : start + minibatch_chunks]] for name, tensor in chunk.items()}
                logits, _, log_confidence = agent(mb["obs"], mb["hidden"], episode_starts=mb["episode_starts"])
                policy = masked_policy(logits, mb["avail"])  # over (chunks, chunk_length, agents)
                mb_advantages, mb_active = mb["advantages"], mb["active"]  # (chunks, chunk_length, agents)
                if args.norm_adv:  # statistics of the living agents' advantages, as MAPPO's
                    living = mb_advantages[mb_active.bool()]
                    mb_advantages = (mb_advantages - living.mean()) / (living.std() + 1e-8)
                policy_loss, approx_kl, clipfrac = ppo_policy_loss(
                    policy.log_prob(mb["actions"]), mb["log_probs"], mb_advantages, mb_active, args.clip_coef
                )
                entropy = masked_mean(policy.entropy(), mb_active)
                actor_loss = policy_loss - args.ent_coef * entropy
                if log_confidence is not None:
                    # CADP Eq. 3: the pruning loss pulls each agent's confidence onto itself
                    every_step = torch.ones(log_confidence.shape[:2], device=device)  # chunks have no padding
                    prune_loss = pruning_loss(log_confidence, every_step, args.prune_loss_scale)
                    actor_loss = actor_loss + prune_coef * prune_loss
                new_values, _ = critic(mb["state"], mb["obs"], mb["critic_hidden"], episode_starts=mb["episode_starts"])
                fitted = mb_active if args.value_active_masks else torch.ones_like(mb_active)  # the release: all agents
                v_loss = value_loss(new_values, mb["values"], mb["targets"], fitted, args.clip_coef, args.clip_vloss)

                optimizer.zero_grad()
                (actor_loss + args.vf_coef * v_loss).backward()
                # clipped apart, as MAPPO's two optimizers do: large value gradients must not shrink the policy's
                grad_norm = nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                nn.utils.clip_grad_norm_(critic.parameters(), args.max_grad_norm)
                # ---- plumbing: stop the run, naming the term and step, if a loss or the gradient is NaN or inf
                prune_term = prune_loss if log_confidence is not None else 0.0
                losses = dict(policy_loss=policy_loss, value_loss=v_loss, entropy=entropy, prune_loss=prune_term)
                run.check_finite(global_step, **losses, grad_norm=grad_norm)
                optimizer.step()
                clipfracs.append(clipfrac.item())
            if args.target_kl is not None and approx_kl > args.target_kl:
                break

        run.time_updates(time.perf_counter() - update_start, 1)

        predicted, actual = values.flatten(), returns.flatten()
        explained_variance = (1 - (actual - predicted).var() / actual.var()).item() if actual.var() > 0 else math.nan
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        writer.add_scalar("losses/policy_loss", policy_loss.item(), global_step)
        writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
        writer.add_scalar("losses/entropy", entropy.item(), global_step)
        writer.add_scalar("losses/approx_kl", approx_kl.item(), global_step)
        writer.add_scalar("losses/clipfrac", np.mean(clipfracs), global_step)
        writer.add_scalar("losses/explained_variance", explained_variance, global_step)
        writer.add_scalar("losses/grad_norm", grad_norm.item(), global_step)
        run.log_speed(global_step)  # charts/SPS, charts/update_time_ms
        if log_confidence is not None:  # charts/self_attention_weight, attention_entropy, ...
            run.log_attention(log_confidence, prune_loss, prune_coef, global_step)

        if global_step >= next_eval or iteration == num_iterations:
            next_eval += args.eval_interval
            results = evaluate_c_and_d()
            run.log_eval(global_step, results, eval_envs)  # eval/: returns, win rates, C's heatmap (and videos)
        run.progress.update(global_step, prune_coef=prune_coef)
        # ---- plumbing: every --checkpoint-interval steps and on SIGINT/SIGTERM (then exits): what a resume needs
        if run.checkpoint_due(global_step):
            run.save_checkpoint(global_step, networks, dict(iteration=iteration, next_eval=next_eval), live_state())

    run.report_final(global_step, results)
    if args.save_model:  # ---- plumbing: the weights (torch.load(..., weights_only=True)), and
        # CADP(D) deployed: one agent's step with z_i = v_i and no query or key weights, exported by torch.export
        run.save_model(
            global_step, envs, dict(actor=agent, critic=critic, value_normalizer=value_normalizer), agent, "logits"
        )
    run.close(envs, eval_envs)
