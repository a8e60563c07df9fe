"""The value-decomposition scripts' update as it was before it skipped the padding: every layer ran on batch x
the longest episode's steps of EpisodeBuffer.sample's padded batch, and a mask dropped the padded steps from the
losses. Kept, line for line, as the reference that the scripts' compute_losses (on EpisodeBuffer.sample_steps) is
tested against (tests/test_packed_update.py: the same loss and gradients) and timed against (benchmarks/speed.py),
with the random episodes of given lengths that both are fed."""

import numpy as np
import torch
import torch.nn.functional as F

from common.buffers import EpisodeBuffer


def random_buffer(envs, lengths, seed: int) -> EpisodeBuffer:
    """An EpisodeBuffer of random episodes of these lengths, stored (and padded) as the training loop stores them;
    `envs` gives the sizes (n_agents, obs_dim, state_dim, n_actions, episode_limit)."""
    rng = np.random.default_rng(seed)
    n_agents, n_actions = envs.n_agents, envs.n_actions
    buffer = EpisodeBuffer(len(lengths), envs, num_envs=1)
    for i, length in enumerate(lengths):
        buffer.obs[i, : length + 1] = rng.standard_normal((length + 1, n_agents, envs.obs_dim))
        buffer.state[i, : length + 1] = rng.standard_normal((length + 1, envs.state_dim))
        avail = rng.random((length + 1, n_agents, n_actions)) < 0.5
        avail[..., 0] = True  # as SMAX's stop and LBF's none: one action is always there
        buffer.avail[i, : length + 1] = avail
        buffer.actions[i, :length] = rng.integers(0, n_actions, (length, n_agents))
        buffer.reward[i, :length] = rng.standard_normal(length)
        buffer.terminated[i, length - 1] = rng.random() < 0.5  # a termination or a time limit
        buffer.length[i] = length
    buffer.size = len(lengths)
    return buffer


def padded_losses(module, batch: dict, agent, mixer, target_agent, target_mixer, args, prune_coef: float):
    """cadp_qmix.py's, cadp_vdn.py's or cadp_qplex.py's (`module`) loss on a batch of EpisodeBuffer.sample:
    (loss, td_loss, prune_loss, attention_reg), the last 0 but for QPLEX."""
    qplex = module.__name__.endswith("qplex")
    n_agents, n_actions = batch["obs"].shape[2], batch["avail"].shape[-1]
    mask = batch["mask"]  # (batch, time)
    initial_hidden = torch.zeros(args.batch_size, n_agents, args.hidden_dim, device=mask.device)
    q, _, log_confidence = agent(batch["obs"], initial_hidden)  # (batch, time + 1, agents, actions)
    chosen_q = q[:, :-1].gather(-1, batch["actions"].unsqueeze(-1)).squeeze(-1)  # (batch, time, agents)
    with torch.no_grad():
        target_q = target_agent(batch["obs"], initial_hidden)[0][:, 1:]
        next_avail = batch["avail"][:, 1:]
        # double Q: the online network picks the next action, the target network values it
        picker = q[:, 1:] if args.double_q else target_q
        next_actions = picker.masked_fill(~next_avail, -torch.inf).argmax(-1, keepdim=True)
        next_q = target_q.gather(-1, next_actions).squeeze(-1)
        if qplex:
            next_max_q = target_q.masked_fill(~next_avail, -torch.inf).max(-1).values
            next_onehot = F.one_hot(next_actions.squeeze(-1), n_actions).float()
            next_q_total = target_mixer(next_q, next_max_q, batch["state"][:, 1:], batch["obs"][:, 1:], next_onehot)[0]
        else:
            next_q_total = target_mixer(next_q, batch["state"][:, 1:])
        # bootstrap through time-limit ends; only a true termination stops it
        td_target = batch["reward"] + args.gamma * (1 - batch["terminated"]) * next_q_total
    if qplex:
        # QPLEX: V_i = max_a Q_i over the available actions (no gradient, as the release)
        max_q = q[:, :-1].detach().masked_fill(~batch["avail"][:, :-1], -torch.inf).max(-1).values
        onehot = F.one_hot(batch["actions"], n_actions).float()  # (batch, time, agents, actions)
        q_total, logits_sq = mixer(chosen_q, max_q, batch["state"][:, :-1], batch["obs"][:, :-1], onehot)
    else:
        q_total = mixer(chosen_q, batch["state"][:, :-1])  # (batch, time)
    td_error = torch.where(mask.bool(), q_total - td_target, 0.0)
    td_loss = td_error.pow(2).sum() / mask.sum()
    attention_reg = torch.zeros(())
    if qplex:
        attention_reg = args.attend_reg_coef * (logits_sq * mask).sum() / mask.sum()  # over the valid steps
    loss, prune_loss = td_loss + attention_reg, torch.zeros(())
    if log_confidence is not None:
        # CADP Eq. 3: the pruning loss pulls each agent's confidence onto itself
        prune_loss = module.pruning_loss(log_confidence[:, :-1], mask, args.prune_loss_scale)
        loss = loss + prune_coef * prune_loss
    return loss, td_loss, prune_loss, attention_reg
