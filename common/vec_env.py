"""The vectorised envs the scripts program against: the VecEnv Protocol, VecMultiAgentEnv and make_vec_env,
which returns a VecMultiAgentEnv for every env family but SMAX (common/smax.py's SMAXVecEnv: the same interface,
all envs stepped in one JAX call). The scripts' plumbing (common/run.py) makes its envs here.

``VecMultiAgentEnv(env_id, num_envs, seed, agent_id_feature=False, last_action_feature=False,
env_kwargs=None, size_check=None, capture_video=False, env_workers=None)`` (env_kwargs: passed to make_env,
i.e. the env's constructor) steps a plain list of common/envs.py's single envs with batched arrays (E envs,
N agents, A actions); with env_workers > 0 (the default for WORKER_FAMILIES: one worker per core), envs 1..E-1
step in that many worker processes (common/workers.py) while env 0 steps in this one::

    num_envs, n_agents, n_actions, state_dim, episode_limit, has_win, action_mask, env_obs_dim,
    obs_dim = env_obs_dim (+ N with agent ids) (+ A with last actions)
    obs_layout = [("env_observation", env_obs_dim), ("agent_id_onehot", N),
                  ("last_action_onehot", A)]   # the features present, in concatenation order
    reset(seed=None) -> obs (E,N,obs_dim) float32, state (E,S) float32, avail (E,N,A) bool
    step(actions (E,N) int) -> obs, state, avail, reward (E,) float32, terminated (E,) bool,
                               truncated (E,) bool, info

* Env i is seeded with seed + i on its first reset; later resets continue its RNG, unless
  reset(seed=s) restarts env i from s + i.
* A finished env is reset inside step(): the returned arrays start its new episode, and info
  holds the finished episode's last step: final_obs, final_state, final_avail (equal to the
  returned arrays where not done), episode_return (E,) float32 and episode_length (E,) int64
  (0 where not done), win (E,) bool when has_win, and active (E, N) bool: the agents in their
  episode at the returned step (False for one that died and waits for the episode's end; all True
  at a reset, and always on envs whose agents cannot leave).
* The last-action one-hot is the action each agent took at the previous step: zeros at the
  first step of an episode; final_obs carries the actions just taken.
* Unavailable actions raise ValueError (LBF would silently turn them into no-ops).
* capture_video (--capture-video): frames holds env 0's first episode since the last reset(), a frame
  per step from the reset to the episode's last step (render_fps: the env's own frame rate).
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

from common.envs import check_env_kwargs, checked_actions, feature_layout, make_env
from common.workers import EnvWorkers

WORKER_FAMILIES = ("gfootball",)  # env families whose --num-envs copies step in worker processes (common/workers.py)


class VecEnv(Protocol):
    """num_envs copies of one multi-agent env stepped together (the module docstring has the details:
    seeding, auto-reset, the info keys). E envs, N agents, A actions."""

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


class VecMultiAgentEnv:
    """num_envs copies of one env in a plain list (gymnasium's vector envs reject per-agent
    reward lists, and their next-step autoreset inserts a dummy transition). The module
    docstring describes seeding, auto-reset and the info keys."""

    # --capture-video, worker processes; class defaults, which checkpoints of older versions rely on
    capture_video, render_fps, frames, _capturing, _workers = False, 5, (), False, None

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int,
        agent_id_feature: bool = False,
        last_action_feature: bool = False,
        env_kwargs: dict | None = None,
        size_check=None,
        capture_video: bool = False,
        env_workers: int | None = None,
    ):
        """env_workers: processes that step envs 1..num_envs-1 (env 0 stays here); None: as WORKER_FAMILIES says."""
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        check_env_kwargs(env_id, env_kwargs or {})  # one line naming the keywords, before any env is built
        first = make_env(env_id, render=capture_video, **(env_kwargs or {}))
        self.env_id, self.num_envs, self.seed = env_id, num_envs, seed
        self.n_agents, self.n_actions, self.state_dim = first.n_agents, first.n_actions, first.state_dim
        self.episode_limit, self.has_win, self.env_obs_dim = first.episode_limit, first.has_win, first.obs_dim
        self.action_mask = first.action_mask
        # --capture-video: frames of env 0's first episode after each reset() (it alone draws)
        self.capture_video, self.render_fps = capture_video, first.render_fps
        n, a = self.n_agents, self.n_actions

        self.obs_layout = feature_layout(self.env_obs_dim, n, a, agent_id_feature, last_action_feature)
        self.obs_dim = sum(size for _, size in self.obs_layout)
        if size_check is not None:  # sizes known, one env built: a memory check before the others
            size_check(self, first)
        if env_workers is None:
            env_workers = min(os.cpu_count() or 1, num_envs - 1) if env_id.partition(":")[0] in WORKER_FAMILIES else 0
        self._env_kwargs = env_kwargs or {}
        if env_workers > 0 and num_envs > 1:
            self.envs, self._workers = [first], EnvWorkers(env_id, self._env_kwargs, num_envs - 1, env_workers)
        else:
            self.envs = [first] + [make_env(env_id, **self._env_kwargs) for _ in range(num_envs - 1)]

        # preallocated buffers, updated in place each step and copied out
        self._obs = np.zeros((num_envs, n, self.obs_dim), np.float32)
        self._state = np.zeros((num_envs, self.state_dim), np.float32)
        self._avail = np.zeros((num_envs, n, a), bool)
        if agent_id_feature:  # fixed per agent: written once
            self._obs[:, :, self.env_obs_dim : self.env_obs_dim + n] = np.eye(n, dtype=np.float32)
        self._last_action = self.obs_dim - a if last_action_feature else None
        self._rows, self._cols = np.arange(num_envs)[:, None], np.arange(n)[None, :]
        self._return = np.zeros(num_envs, np.float64)
        self._length = np.zeros(num_envs, np.int64)
        self._seeded = False
        self._ready = False

    def _write_reset(self, e: int, seed: int | None) -> None:
        if e < len(self.envs):
            obs, state, avail = self.envs[e].reset(seed=seed)
        else:
            obs, state, avail = self._workers.reset(e - len(self.envs), seed)
        self._obs[e, :, : self.env_obs_dim] = obs
        self._state[e], self._avail[e] = state, avail
        if self._last_action is not None:
            self._obs[e, :, self._last_action :] = 0.0
        self._return[e], self._length[e] = 0.0, 0

    def reset(self, seed: int | None = None):
        """seed: env i restarts from seed + i (evaluation replays the same episodes); None: the first
        reset seeds env i with self.seed + i, later ones continue each env's RNG."""
        if seed is None and not self._seeded:
            seed = self.seed
        for e in range(self.num_envs):
            self._write_reset(e, None if seed is None else seed + e)
        self._seeded = self._ready = True
        if self.capture_video:
            self.frames, self._capturing = [self.envs[0].render()], True
        return self._obs.copy(), self._state.copy(), self._avail.copy()

    def step(self, actions: np.ndarray):
        if not self._ready:
            raise RuntimeError("call reset() before step()")
        actions = checked_actions(actions, self._avail)
        d = self.env_obs_dim
        reward = np.zeros(self.num_envs, np.float32)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        win = np.zeros(self.num_envs, bool)
        active = np.ones((self.num_envs, self.n_agents), bool)
        if self._workers is not None:  # the workers step theirs while env 0 steps here
            self._workers.step_async(actions[1:])
            results = [self.envs[0].step(actions[0])] + self._workers.step_wait()
        else:
            results = [env.step(env_actions) for env, env_actions in zip(self.envs, actions)]
        for e, (obs, state, avail, r, term, trunc, env_info) in enumerate(results):
            self._obs[e, :, :d], self._state[e], self._avail[e] = obs, state, avail
            reward[e], terminated[e], truncated[e] = r, term, trunc
            if "active" in env_info and not (term or trunc):  # a reset below brings every agent back
                active[e] = env_info["active"]
            self._return[e] += r  # summed in float64 from the env's own rewards
            if self.has_win:
                win[e] = env_info.get("win", False)
        if self._last_action is not None:
            self._obs[:, :, self._last_action :] = 0.0
            self._obs[self._rows, self._cols, self._last_action + actions] = 1.0
        self._length += 1
        if self._capturing:  # drawn before a reset below starts env 0's next episode
            self.frames.append(self.envs[0].render())
            self._capturing = not (terminated[0] or truncated[0])

        info = {"final_obs": self._obs.copy(), "final_state": self._state.copy(), "final_avail": self._avail.copy()}
        episode_return = np.zeros(self.num_envs, np.float32)
        episode_length = np.zeros(self.num_envs, np.int64)
        for e in np.flatnonzero(terminated | truncated):
            episode_return[e], episode_length[e] = self._return[e], self._length[e]
            self._write_reset(e, None)
        info["episode_return"], info["episode_length"], info["active"] = episode_return, episode_length, active
        if self.has_win:
            info["win"] = win
        return self._obs.copy(), self._state.copy(), self._avail.copy(), reward, terminated, truncated, info

    def close(self) -> None:
        for env in self.envs:
            env.close()
        if self._workers is not None:
            self._workers.close()

    # a checkpoint holds the workers' envs (each worker pickles its own); a restored env starts new workers
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self._workers is not None:
            state["_workers"] = self._workers.pickled()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._workers is not None:
            self._workers = EnvWorkers(self.env_id, self._env_kwargs, count=0, workers=0, saved=state["_workers"])


def make_vec_env(
    env_id: str,
    num_envs: int,
    seed: int,
    agent_id_feature: bool = False,
    last_action_feature: bool = False,
    env_kwargs: dict | None = None,
    size_check=None,
    capture_video: bool = False,
) -> VecEnv:
    """The vectorised env for an id: what the training scripts call (same arguments as
    VecMultiAgentEnv, which it returns for every family but SMAX: ``smax:<map>`` ids get
    common/smax.py's SMAXVecEnv, the same interface with all envs stepped in one JAX call). Both check
    env_kwargs against the env's constructor (common/envs.py's check_env_kwargs) before building anything.
    size_check(vec_env, one_env), if given, is called once the sizes are known and before the envs
    but one are built (SMAX: before any env state exists; one_env is None), e.g. to refuse a run that
    cannot fit in memory. capture_video: keep the frames of env 0's first episode after each reset() in .frames
    (raises EnvError for an env that cannot draw itself)."""
    args = env_id, num_envs, seed, agent_id_feature, last_action_feature, env_kwargs, size_check, capture_video
    if env_id.partition(":")[0] == "smax":
        from common.smax import SMAXVecEnv  # imported here: jax is an optional extra

        return SMAXVecEnv(*args)
    return VecMultiAgentEnv(*args)
