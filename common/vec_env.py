"""What both vectorised envs share (common/envs.py's VecMultiAgentEnv, common/smax.py's SMAXVecEnv):
the interface the scripts program against, as a Protocol, and the small helpers both build on.
Neither env module imports the other's code through this one, so they import in any order."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class EnvError(ValueError):
    """An env id that cannot be made; the message is meant to be shown to the user as is."""


class VecEnv(Protocol):
    """num_envs copies of one multi-agent env stepped together (common/envs.py's docstring has the
    details: seeding, auto-reset, the info keys). E envs, N agents, A actions."""

    env_id: str
    num_envs: int
    seed: int
    n_agents: int
    n_actions: int
    obs_dim: int
    env_obs_dim: int
    state_dim: int
    episode_limit: int
    has_win: bool
    obs_layout: list[tuple[str, int]]
    action_mask: str
    capture_video: bool  # then frames: env 0's first episode since the last reset(), (H, W, 3) uint8 each
    frames: list[np.ndarray]
    render_fps: int

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """obs (E, N, obs_dim) float32, state (E, S) float32, avail (E, N, A) bool."""
        ...

    def step(self, actions: np.ndarray) -> tuple:
        """actions (E, N) -> obs, state, avail, reward (E,), terminated (E,), truncated (E,), info."""
        ...

    def close(self) -> None: ...


def feature_layout(
    env_obs_dim: int, n_agents: int, n_actions: int, agent_id_feature: bool, last_action_feature: bool
) -> list[tuple[str, int]]:
    """obs_layout of a vectorised env: the parts of an observation, in concatenation order."""
    layout = [("env_observation", env_obs_dim)]
    if agent_id_feature:
        layout.append(("agent_id_onehot", n_agents))
    if last_action_feature:
        layout.append(("last_action_onehot", n_actions))
    return layout


def checked_actions(actions, avail: np.ndarray) -> np.ndarray:
    """actions (E, N) as int64, checked against avail (E, N, A). An unavailable action is a learner
    bug that the envs would hide: LBF plays it as "none", SMAX an impossible attack as "stop"."""
    actions = np.asarray(actions, dtype=np.int64)
    if actions.shape != avail.shape[:2]:
        raise ValueError(f"actions must have shape {avail.shape[:2]}, got {actions.shape}")
    if (
        actions.min() < 0
        or actions.max() >= avail.shape[2]
        or not np.take_along_axis(avail, actions[..., None], axis=2).all()
    ):
        raise ValueError("some actions are unavailable (see avail)")
    return actions
