"""CADP-QMIX: Centralized Advising and Decentralized Pruning on top of QMIX, in one file.

Paper: Zhou et al., "CADP: Towards Better Centralized Learning for Decentralized Execution in MARL", AAMAS 2025.
While training, every agent's network attends over all agents' observations (advice, Eq. 1), a branch beside its
own recurrent one; a pruning loss (Eq. 3) then drives each agent's attention onto itself, so the trained network
runs decentralized: CADP(D) needs only the agent's own observation. `grep -n "# CADP"` marks the paper's pieces;
`--no-advice` is plain QMIX through the same code. Docs and results: docs/cadp_qmix.md.
"""

if __name__ == "__main__":  # first, before torch loads: Ctrl-C while starting is one line and exit 130
    import common.startup  # noqa: F401
import copy
import math
import os
import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.buffers import ActionLog, EpisodeBuffer, gru_on_real_steps
from common.cli import check_flags, fail
from common.run import Run, RunArgs, play_eval_episodes
from common.vec_env import VecEnv


@dataclass
class Args(RunArgs):  # RunArgs (common/run.py): --seed, --cuda, --track, --save-model, --resume, --eval-only, ...
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    checkpoint_buffer_max_mb: int = 512
    """checkpoints include the replay buffer while it is at most this large (MiB); above, the actions taken, which
    a resume replays to rebuild it; docs/runs.md: Long runs"""

    # Algorithm
    env_id: str = "lbforaging:Foraging-8x8-2p-3f-v3"
    """the environment id, `module:Id` (see README); the team reward is the sum of the agents' rewards"""
    total_timesteps: int = 100_000
    """total environment steps (one joint step of all agents in one env counts 1)"""
    learning_rate: float = 5e-4
    """Adam learning rate"""
    num_envs: int = 8
    """parallel environments collecting episodes"""
    buffer_size: int = 5000
    """replay buffer capacity, in episodes"""
    batch_size: int = 32
    """episodes per gradient update; one update per finished episode, as in pymarl"""
    gamma: float = 0.99
    """discount factor"""
    target_network_frequency: int = 200
    """gradient updates (= episodes) between hard target-network updates"""
    max_grad_norm: float = 10.0
    """gradient-norm clip"""
    start_e: float = 1.0
    """starting epsilon of the epsilon-greedy exploration"""
    end_e: float = 0.05
    """final epsilon"""
    exploration_fraction: float = 0.2
    """fraction of `total_timesteps` over which epsilon decays linearly"""
    exploration_steps: int | None = None
    """steps over which epsilon decays, instead of the fraction (the release: 50k; 500k on corridor, 3s5z_vs_3s6z)"""
    learning_starts: int = 0
    """environment steps before the first update (updates also wait for `batch_size` episodes)"""
    double_q: bool = True
    """pick the next action with the online network, evaluate it with the target network"""
    obs_agent_id: bool = True
    """append a one-hot agent id to each observation"""
    obs_last_action: bool = True
    """append the agent's previous action (one-hot) to each observation"""
    hidden_dim: int = 64
    """GRU hidden size"""
    mixing_embed_dim: int = 32
    """QMIX mixing-network width"""
    hypernet_embed_dim: int = 64
    """QMIX hypernetwork hidden width (`--mixer two-layer`)"""
    mixer: Literal["two-layer", "release"] = "two-layer"
    """`two-layer`: hypernetworks with a hidden layer, output layers zeroed (Q_tot starts as a small sum);
    `release`: the authors' (pymarl's original) one-layer hypernetworks with PyTorch's default init"""
    eval_interval: int = 10_000
    """environment steps between evaluations of CADP(C) and CADP(D)"""
    eval_episodes: int = 32
    """episodes per evaluation of each model, the same ones (same seeds) at every evaluation"""
    eval_epsilon: float = 0.0
    """epsilon of the evaluation episodes (0 = greedy); a little breaks greedy deadlocks (LBF agents bumping forever)"""

    # CADP
    advice: bool = True
    """exchange advice between agents during training; `--no-advice` is plain QMIX"""
    advice_placement: Literal["post-gru", "gru-input"] = "post-gru"
    """`post-gru`: advice beside the GRU's output (the release; no advice: pymarl's RNN agent); `gru-input`: Eq. 2"""
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
            "total_timesteps learning_rate num_envs buffer_size batch_size target_network_frequency "
            "max_grad_norm hidden_dim eval_interval eval_episodes att_heads att_embed_dim mixing_embed_dim "
            "hypernet_embed_dim"
        ),
        non_negative="learning_starts prune_coef checkpoint_buffer_max_mb exploration_steps",
        fractions="gamma start_e end_e exploration_fraction prune_start_fraction prune_ramp_fraction eval_epsilon",
    )
    if args.batch_size > args.buffer_size:
        fail(f"--batch-size {args.batch_size} is larger than --buffer-size {args.buffer_size} (both count episodes)")


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


class CADPAgent(nn.Module):
    """Per-agent Q-network, parameters shared by all agents. `--advice-placement`:
    post-gru (the authors' release): x_i = ReLU(fc1(o_i)); h_i = GRU(x_i, h_i); a_i = ReLU(advice_fc(z_i));
        Q_i = MLP(ReLU(merge([h_i, a_i]))). Without advice: pymarl's RNN agent, Q_i = Linear(h_i).
    gru-input (the extended abstract's Eq. 2): h_i = GRU([z_i, o_i], h_i); Q_i = MLP(h_i). Without advice:
        the same GRU on o_i alone."""

    def __init__(self, obs_dim: int, n_actions: int, args: Args):
        super().__init__()
        post_gru, hidden_dim = args.advice_placement == "post-gru", args.hidden_dim
        self.advice = AdviceAttention(obs_dim, args.att_heads, args.att_embed_dim) if args.advice else None
        advice_dim = args.att_heads * args.att_embed_dim if args.advice else 0
        self.fc1 = self.advice_fc = self.merge = None
        if post_gru:
            self.fc1 = nn.Linear(obs_dim, hidden_dim)
            self.gru = nn.GRU(hidden_dim, hidden_dim, batch_first=True)
            if args.advice:
                # CADP: the advice is a per-step feed-forward branch beside the recurrent one; pruning cuts
                # it down to the agent's own v_i, and the recurrent branch never sees other agents
                self.advice_fc = nn.Linear(advice_dim, hidden_dim)
                self.merge = nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.ReLU())
        else:
            # CADP Eq. 2: the GRU reads the advice *and* the raw observation; the raw one is the
            # residual path that never passes through attention, so pruning cannot cut it off
            self.gru = nn.GRU(advice_dim + obs_dim, hidden_dim, batch_first=True)
        if post_gru and not args.advice:
            self.q_head = nn.Linear(hidden_dim, n_actions)
        else:
            self.q_head = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, n_actions))

    def forward(self, obs: torch.Tensor, hidden: torch.Tensor, decentralized: bool = False, batch_sizes=None):
        """obs (batch, time, agents, obs_dim), hidden (batch, agents, hidden_dim) -> q (batch, time, agents, actions),
        new hidden, log-confidence (batch, time, heads, agents, agents); with batch_sizes (EpisodeBuffer.sample_steps)
        obs, q and the log-confidence are (steps, agents, ...) and the hidden state each episode's last."""
        advice, log_confidence = None, None
        if self.advice is not None:
            # the advice depends on observations only, so all time steps are attended at once
            advice, log_confidence = self.advice(obs, decentralized)  # (batch, time, agents, heads * embed)
        if self.fc1 is not None:
            inputs = F.relu(self.fc1(obs))
        else:
            inputs = obs if advice is None else torch.cat([advice, obs], dim=-1)  # CADP Eq. 2: [z_i, o_i]
        if batch_sizes is None:
            # each agent of each episode is one GRU sequence: (batch * agents, time, features)
            batch, time_steps, n_agents, _ = obs.shape
            sequences = inputs.transpose(1, 2).reshape(batch * n_agents, time_steps, -1)
            outputs, hidden = self.gru(sequences, hidden.reshape(1, batch * n_agents, -1))
            features = outputs.view(batch, n_agents, time_steps, -1).transpose(1, 2)  # (batch, time, agents, hidden)
        else:  # ---- plumbing: the same GRU on sample_steps' real steps alone (no padded step computed)
            features, hidden = gru_on_real_steps(self.gru, inputs, hidden, batch_sizes)  # (steps, agents, hidden)
        if self.merge is not None:
            # CADP (the release's placement): Q_i from [h_i, ReLU(advice_fc(z_i))]
            features = self.merge(torch.cat([features, F.relu(self.advice_fc(advice))], dim=-1))
        return self.q_head(features), hidden.view(-1, obs.shape[-2], hidden.shape[-1]), log_confidence


class QMixer(nn.Module):
    """QMIX: Q_tot = monotonic mix of the agents' Q-values, weights from hypernetworks on the state."""

    def __init__(self, n_agents: int, state_dim: int, mixing_embed_dim: int, hypernet_embed_dim: int, kind="two-layer"):
        super().__init__()
        self.n_agents, self.embed_dim = n_agents, mixing_embed_dim
        s, h, e = state_dim, hypernet_embed_dim, mixing_embed_dim  # hypernetworks: state -> mixing weights
        release = kind == "release"  # the authors' QMixer as they ran it (hypernet_layers unset): one layer

        def hypernet(out: int) -> nn.Module:
            return nn.Linear(s, out) if release else nn.Sequential(nn.Linear(s, h), nn.ReLU(), nn.Linear(h, out))

        self.hyper_w1 = hypernet(n_agents * e)
        self.hyper_b1 = nn.Linear(s, e)
        self.hyper_w2 = hypernet(e)
        self.state_value = nn.Sequential(nn.Linear(s, e), nn.ReLU(), nn.Linear(e, 1))
        if release:  # and PyTorch's default init
            return
        # Start state-independent and small: Q_tot ~ a sum of the agents' Q-values with small positive
        # weights. The default init on raw states (LBF coordinates reach 7) gives |Q_tot| ~ 10-20
        # against returns <= 1, and bootstrapping at gamma 0.99 takes ~1e5 updates to shed that.
        # Only the output layers' weights start at zero: their biases keep abs() differentiable.
        for layer in (self.hyper_w1[-1], self.hyper_w2[-1], self.hyper_b1, self.state_value[-1]):
            nn.init.zeros_(layer.weight)
        nn.init.zeros_(self.hyper_b1.bias)
        nn.init.zeros_(self.state_value[-1].bias)

    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """agent_qs (batch, time, agents), state (batch, time, state_dim) -> q_tot (batch, time)."""
        # abs() keeps every mixing weight >= 0, hence dQ_tot/dQ_i >= 0 (monotonicity)
        w1 = self.hyper_w1(state).abs().view(*state.shape[:-1], self.n_agents, self.embed_dim)
        # a weighted sum over a handful of agents is cheaper elementwise than as a batched matmul
        hidden = F.elu((agent_qs.unsqueeze(-1) * w1).sum(dim=-2) + self.hyper_b1(state))  # (batch, time, embed)
        w2 = self.hyper_w2(state).abs()
        return (hidden * w2).sum(dim=-1) + self.state_value(state).squeeze(-1)


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


def epsilon_at(step: int, args: Args) -> float:
    """Epsilon, linear from start_e to end_e over --exploration-steps, else that fraction of the budget."""
    steps, fraction = args.exploration_steps, args.exploration_fraction * args.total_timesteps
    slope = (args.end_e - args.start_e) / max(fraction if steps is None else steps, 1)
    return max(slope * step + args.start_e, args.end_e)


def select_actions(agent, obs, hidden, avail, epsilon: float, decentralized: bool = False):
    """Epsilon-greedy over available actions for a batch of envs -> actions, new hidden, log-confidence.
    obs (envs, agents, obs_dim), hidden (envs, agents, hidden_dim), avail (envs, agents, actions)."""
    obs, avail = torch.as_tensor(obs, device=hidden.device), torch.as_tensor(avail, device=hidden.device)
    q, hidden, log_confidence = agent(obs.unsqueeze(1), hidden, decentralized)
    greedy = q[:, 0].masked_fill(~avail, -torch.inf).argmax(dim=-1)  # (envs, agents)
    if epsilon <= 0:
        return greedy, hidden, log_confidence
    random_actions = torch.multinomial(avail.flatten(0, 1).float(), 1).view_as(greedy)
    explore = torch.rand(greedy.shape, device=greedy.device) < epsilon
    return torch.where(explore, random_actions, greedy), hidden, log_confidence


@torch.no_grad()
def evaluate(agent, envs: VecEnv, hidden_dim: int, device, decentralized: bool, epsilon: float = 0.0):
    """CADP(C), or CADP(D) with decentralized (z_i = v_i), on one episode per eval env, greedy unless epsilon > 0:
    the mean return, win rate (or None) and confidence matrix c (heads, agents, agents; None for CADP(D))."""
    hidden = torch.zeros(envs.num_envs, envs.n_agents, hidden_dim, device=device)
    return play_eval_episodes(  # ---- plumbing: the episodes, reseeded: the same ones at every evaluation
        envs, lambda obs, avail, hidden: select_actions(agent, obs, hidden, avail, epsilon, decentralized), hidden
    )


def compute_losses(batch: dict, agent, mixer, target_agent, target_mixer, args: Args, prune_coef: float):
    """The update's loss on EpisodeBuffer.sample_steps' real steps alone (that of the padded batch, without its
    padding): loss, td_loss, prune_loss, and for the logs q_total, td_target and the log-confidence, per transition."""
    obs, batch_sizes = batch["obs"], batch["batch_sizes"]  # (steps, agents, obs_dim), (time + 1,)
    now, after = batch["now"], batch["next"]  # each transition's steps t and t + 1 among the steps
    initial_hidden = obs.new_zeros(int(batch_sizes[0]), obs.shape[1], args.hidden_dim)
    q, _, log_confidence = agent(obs, initial_hidden, batch_sizes=batch_sizes)  # (steps, agents, actions)
    chosen_q = q[now].gather(-1, batch["actions"].unsqueeze(-1)).squeeze(-1)  # (transitions, agents)
    with torch.no_grad():
        target_q = target_agent(obs, initial_hidden, batch_sizes=batch_sizes)[0][after]
        next_avail = batch["avail"][after]
        # double Q: the online network picks the next action, the target network values it
        picker = q[after] if args.double_q else target_q
        next_actions = picker.masked_fill(~next_avail, -torch.inf).argmax(-1, keepdim=True)
        next_q = target_q.gather(-1, next_actions).squeeze(-1)
        next_q_total = target_mixer(next_q, batch["state"][after])
        # bootstrap through time-limit ends; only a true termination stops it
        td_target = batch["reward"] + args.gamma * (1 - batch["terminated"]) * next_q_total
    q_total = mixer(chosen_q, batch["state"][now])  # (transitions,)
    td_loss = (q_total - td_target).pow(2).mean()
    loss, prune_loss = td_loss, torch.zeros(())
    if log_confidence is not None:
        log_confidence = log_confidence[now]  # (transitions, heads, agents, agents)
        # CADP Eq. 3: the pruning loss pulls each agent's confidence onto itself
        prune_loss = pruning_loss(log_confidence, torch.ones_like(td_target), args.prune_loss_scale)
        loss = loss + prune_coef * prune_loss
    return loss, td_loss, prune_loss, q_total, td_target, log_confidence


if __name__ == "__main__":
    # ---- plumbing: flags (with --resume/--eval-only PATH: that run's, overridden by those given), seeds, device
    run = Run(Args, validate)
    args, device = run.args, run.device

    # ---- plumbing: the envs, refused up front if they and the replay buffer (with the episodes in progress) cannot fit
    envs, eval_envs = run.make_envs(
        lambda envs: {
            "replay buffer": EpisodeBuffer.nbytes_per_episode(envs) * (args.buffer_size + args.num_envs),
            "action log": 2 * args.total_timesteps * envs.n_agents,  # ActionLog's bytes, at most
        },
        "--buffer-size, --num-envs or --eval-episodes",
    )

    agent = CADPAgent(envs.obs_dim, envs.n_actions, args).to(device)
    mixer = QMixer(envs.n_agents, envs.state_dim, args.mixing_embed_dim, args.hypernet_embed_dim, args.mixer).to(device)
    target_agent, target_mixer = copy.deepcopy(agent), copy.deepcopy(mixer)
    parameters = list(agent.parameters()) + list(mixer.parameters())
    optimizer = torch.optim.Adam(parameters, lr=args.learning_rate)
    networks = dict(agent=agent, mixer=mixer, target_agent=target_agent, target_mixer=target_mixer, optimizer=optimizer)

    def evaluate_c_and_d():  # CADP: both models, C (advice) and D (z_i = v_i), on the same episodes
        return {
            mode: evaluate(agent, mode_envs, args.hidden_dim, device, mode == "decentralized", args.eval_epsilon)
            for mode, mode_envs in eval_envs.items()
        }

    run.restore(envs, networks)  # ---- plumbing: a resumed or evaluated run's weights
    if args.eval_only:  # ---- plumbing: only evaluate the given checkpoint or model, then stop
        run.report_eval_only(evaluate_c_and_d(), eval_envs)
    rb = EpisodeBuffer(args.buffer_size, envs, args.num_envs)
    # ---- plumbing: a buffer too large for the checkpoints is left out of them; every action taken is logged instead
    max_bytes = args.checkpoint_buffer_max_mb << 20
    action_log = ActionLog(envs, enabled=rb.nbytes > max_bytes)
    obs, state, avail = envs.reset()
    hidden = torch.zeros(args.num_envs, envs.n_agents, args.hidden_dim, device=device)

    # ---- plumbing: a resumed run continues exactly where its checkpoint left off (docs/runs.md: Long runs)
    def live_state():  # what a checkpoint saves: the training envs, their episodes so far, the next step's inputs
        return dict(envs=envs, episodes=rb.current, obs=obs, state=state, avail=avail, hidden=hidden)

    # and the replay buffer: loaded, or rebuilt by replaying the logged actions through these fresh envs
    counters, live = run.resume(dict(updates=0, next_eval=0, global_step=0), live_state(), replay=(rb, action_log))
    updates, next_eval, global_step = counters["updates"], counters["next_eval"], counters["global_step"]
    if run.resumed:
        if live is None:  # no saved envs (unpicklable, or a branch to a new seed or env): new episodes
            action_log.complete = False  # a replay could not repeat this reseed
            obs, state, avail = envs.reset(seed=args.seed + global_step)
        else:
            envs, rb.current, obs, state, avail, hidden = (live[name] for name in live_state())
    writer = run.start(global_step)

    while global_step < args.total_timesteps:
        epsilon = epsilon_at(global_step, args)
        with torch.no_grad():
            actions, hidden, _ = select_actions(agent, obs, hidden, avail, epsilon)
        actions = actions.cpu().numpy()
        next_obs, next_state, next_avail, reward, terminated, truncated, info = envs.step(actions)
        action_log.append(actions)
        global_step += args.num_envs
        done = terminated | truncated
        rb.add_step(obs, state, avail, actions, reward, terminated, info, done)  # as CleanRL's rb.add
        obs, state, avail = next_obs, next_state, next_avail
        hidden[torch.as_tensor(done, device=device)] = 0
        run.log_episodes(info, done, global_step)  # charts/episodic_return, charts/episodic_length, charts/win_rate

        # one gradient update per finished episode: pymarl's update-to-data ratio
        if rb.size >= args.batch_size and global_step >= args.learning_starts:
            update_start = time.perf_counter()
            for _ in range(int(done.sum())):
                prune_coef = prune_coef_at(global_step, args)
                loss, td_loss, prune_loss, q_total, td_target, log_confidence = compute_losses(
                    rb.sample_steps(args.batch_size, device), agent, mixer, target_agent, target_mixer, args, prune_coef
                )
                optimizer.zero_grad()
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(parameters, args.max_grad_norm)
                # ---- plumbing: stop the run, naming the term and step, if a loss or the gradient is NaN or inf
                run.check_finite(global_step, td_loss=td_loss, grad_norm=grad_norm, prune_loss=prune_loss)
                optimizer.step()
                updates += 1
                if updates % args.target_network_frequency == 0:
                    target_agent.load_state_dict(agent.state_dict())
                    target_mixer.load_state_dict(mixer.state_dict())

                if updates % 20 == 0:
                    losses = dict(td_loss=td_loss, q_values=q_total.mean(), target_q_values=td_target.mean())
                    for name, value in dict(losses, grad_norm=grad_norm).items():
                        writer.add_scalar(f"losses/{name}", value.item(), global_step)
                    writer.add_scalar("charts/epsilon", epsilon, global_step)
                    run.log_speed(global_step)  # charts/SPS, charts/update_time_ms
                    if log_confidence is not None:  # charts/self_attention_weight, attention_entropy, ...
                        run.log_attention(log_confidence, prune_loss, prune_coef, global_step)
            run.time_updates(time.perf_counter() - update_start, int(done.sum()))

        if global_step >= next_eval or global_step >= args.total_timesteps:
            next_eval += args.eval_interval
            results = evaluate_c_and_d()
            run.log_eval(global_step, results, eval_envs)  # eval/: returns, win rates, C's heatmap (and videos)
        run.progress.update(global_step, epsilon=epsilon)
        # ---- plumbing: every --checkpoint-interval steps and on SIGINT/SIGTERM (then exits): what a resume needs
        if run.checkpoint_due(global_step):
            counters = dict(updates=updates, next_eval=next_eval)
            buffer, actions = rb.state_dict(max_bytes, action_log), action_log.state_dict()
            run.save_checkpoint(global_step, networks, counters, live_state(), buffer=buffer, actions=actions)

    run.report_final(global_step, results)
    if args.save_model:  # ---- plumbing: the weights (torch.load(..., weights_only=True)), and
        # CADP(D) deployed: one agent's step with z_i = v_i and no query or key weights, exported by torch.export
        run.save_model(global_step, envs, dict(agent=agent, mixer=mixer), agent, outputs="q_values")
    run.close(envs, eval_envs)
