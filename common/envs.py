"""One small multi-agent interface over several environment suites: single envs (common/vec_env.py steps
num_envs copies of them together).

Env ids follow EPyMARL's ``module:Id`` convention; ``make_env`` imports the module and picks
an adapter:

* ``lbforaging:Foraging-8x8-2p-3f-v3``, ``rware:rware-tiny-2ag-v2`` and any gymnasium id whose
  observation and action spaces are ``Tuple``s of per-agent ``Box`` / ``Discrete`` spaces;
* ``mpe2:simple_spread_v3``, ``pettingzoo.sisl:pursuit_v5``: any PettingZoo parallel env
  (``module.name.parallel_env()``, built with ``continuous_actions=False`` when it accepts it);
* ``matrix:climbing``, ``matrix:penalty``, ``matrix:two_step``: tiny cooperative games for
  fast learning tests (``MATRIX_GAMES`` holds their payoffs and optimal returns).
* ``gfootball:academy_3_vs_1_with_keeper``, ...: Google Research Football scenarios (optional extra;
  common/gfootball.py's GFootballEnv), their --num-envs copies stepped in worker processes;
* ``smax:3m``, ``smax:5m_vs_6m``, ...: SMAX maps (optional extra) are vectorised envs only: common/vec_env.py's
  ``make_vec_env`` returns common/smax.py's SMAXVecEnv for them.

Every adapter is a ``MultiAgentEnv``::

    n_agents, obs_dim, state_dim, n_actions, episode_limit, has_win,
    action_mask (text: where a deployment outside this layer finds avail)
    reset(seed=None) -> obs (n_agents, obs_dim) float32, state (state_dim,) float32,
                        avail (n_agents, n_actions) bool
    step(actions (n_agents,) int) -> obs, state, avail, reward: float, terminated: bool,
                                     truncated: bool, info: dict ({"win": bool} when has_win)
    close()
    render() -> (H, W, 3) uint8: the current step, drawn headless (made with make_env(render=True))

* reward is the TEAM reward: the sum of the agents' rewards (a shared scalar is used as is).
* terminated means a true end (no bootstrapping); truncated means a time-limit end (bootstrap).
  LBF and RWARE report their internal time limits as terminated; the adapters fix that.
* LBF: avail comes from the env's own valid-action sets (it exposes no mask), and a new
  episode's start depends on the env's RNG only (LBFEnv.reset says why).
* Heterogeneous agents: observations are zero-padded to the largest one (obs_dim), action
  counts padded to the largest one (n_actions) with padded actions unavailable in avail.
* state is the env's own global state when it has one (PettingZoo ``state()``), else the
  concatenation of all agents' padded observations.
* An agent that leaves a PettingZoo episode early (death) gets zero observations and only
  action 0 available; step's info["active"] (N,) bool says which agents are still in the episode.
* episode_limit is the env's own step limit, else DEFAULT_EPISODE_LIMIT; an adapter always
  truncates at episode_limit, so replay buffers sized by it never overflow.

* Matrix games: each agent, and the state, see a one-hot of the game state (one state for
  the one-step games; 1, 2A, 2B for two_step); after the last step it is all zeros.

Problems with an env id raise ``EnvError`` (common/cli.py; a ValueError) whose message says what was asked,
what exists and what to install. ``check_env_kwargs`` checks --env-kwargs against the env's constructor before
anything is built. ``feature_layout`` and ``checked_actions`` serve both vectorised envs.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import io
import json
import pickle
import pkgutil
import re
import sys
import warnings
from dataclasses import dataclass

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.utils.ezpickle import EzPickle

from common.cli import EnvError
from common.video import draw_lbf, draw_rware

DEFAULT_EPISODE_LIMIT = 1000  # for envs that expose no step limit of their own

_ID_EXAMPLES = (
    "lbforaging:Foraging-8x8-2p-3f-v3, rware:rware-tiny-2ag-v2, mpe2:simple_spread_v3, "
    "pettingzoo.sisl:pursuit_v5, matrix:climbing, smax:5m_vs_6m (with make_vec_env)"
)
# The env modules this project knows, and how each is installed. An id naming any other module that cannot be
# imported is answered with the closest of these, never with `pip install <that name>`: a typo there would install
# whatever package happens to own the misspelt name.
KNOWN_MODULES = {
    "lbforaging": "pip install lbforaging",
    "rware": "pip install rware",
    "mpe2": "pip install mpe2",
    "pettingzoo": "pip install pettingzoo",
    "gymnasium": "pip install gymnasium",
    "matrix": "built in",
    "smax": "pip install --no-deps -r requirements-smax.txt",
    "gfootball": "bash install_grf.sh",
}
# pip names of the known modules' dependencies whose import name differs
_PIP_NAMES = {"Box2D": "box2d-py"}


class MultiAgentEnv:
    """The interface every adapter implements (see the module docstring)."""

    n_agents: int
    obs_dim: int
    state_dim: int
    n_actions: int
    episode_limit: int
    has_win: bool = False
    # where a deployment outside this env layer gets the available-action mask (decentralized_actor.json)
    action_mask: str = (
        "every action of the agent's own action space is always available (agents with fewer "
        "actions than n_actions: the actions beyond theirs are not)"
    )

    def reset(self, seed: int | None = None):
        raise NotImplementedError

    def step(self, actions: np.ndarray):
        raise NotImplementedError

    def close(self) -> None:
        pass

    # --capture-video: built by make_env(render=True), an adapter draws its env's current step
    render_fps: int = 5

    def render(self) -> np.ndarray:
        """The env's current step as an RGB frame (H, W, 3) uint8, drawn headless."""
        raise NotImplementedError

    # a checkpoint pickles the envs mid-episode, and a resumed run must continue that very episode
    # (all attributes in one pickle: the suite's env and references into it, e.g. `unwrapped`, stay one object)
    def __getstate__(self) -> dict:
        buffer = io.BytesIO()
        _LiveStatePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(self.__dict__)
        return {"live_state": buffer.getvalue()}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(pickle.loads(state["live_state"]))

    # ---- helpers shared by the adapters ----
    def _set_sizes(self, obs_sizes: list[int], action_counts: list[int], state_dim: int | None = None) -> None:
        self.n_agents = len(obs_sizes)
        self.obs_dim = max(obs_sizes)
        self.n_actions = max(action_counts)
        self.state_dim = self.n_agents * self.obs_dim if state_dim is None else state_dim
        self._obs_sizes = obs_sizes
        # padded actions are never available; the real ones are unless the env says otherwise
        self._all_avail = np.zeros((self.n_agents, self.n_actions), bool)
        for i, n in enumerate(action_counts):
            self._all_avail[i, :n] = True

    def _pad_obs(self, per_agent) -> np.ndarray:
        """(n_agents, obs_dim) float32 from one observation per agent (None -> zeros)."""
        obs = np.zeros((self.n_agents, self.obs_dim), np.float32)
        for i, o in enumerate(per_agent):
            if o is not None:
                obs[i, : self._obs_sizes[i]] = np.ravel(o)
        return obs

    def _first_seed(self, seed: int | None) -> int | None:
        # make_env(seed=...) applies to the first reset that gets no seed of its own; later
        # resets pass None so the env's RNG continues (a fixed seed would replay one episode)
        if seed is None:
            seed, self._seed = getattr(self, "_seed", None), None
        return seed


def _bare_instance(cls):
    return cls.__new__(cls)


def _set_instance_dict(obj, state: dict) -> None:
    obj.__dict__.update(state)


class _LiveStatePickler(pickle.Pickler):
    """Pickles a suite's env as it is, mid-episode. Two exceptions to plain pickle: gymnasium's EzPickle
    classes (mpe2, PettingZoo's sisl envs) pickle their constructor arguments, i.e. a fresh, un-reset
    env, so they are pickled by their attributes instead; pygame objects (mpe2's render canvas and
    font, which pickle cannot handle) are saved as None: a restored env cannot render."""

    def reducer_override(self, obj):
        if isinstance(obj, EzPickle) and not isinstance(obj, type):
            return _bare_instance, (type(obj),), obj.__dict__, None, None, _set_instance_dict
        if type(obj).__module__.split(".")[0] == "pygame":
            return type(None), ()
        return NotImplemented


def _space_sizes(env_id: str, obs_spaces, action_spaces) -> tuple[list[int], list[int]]:
    """Flat observation sizes and action counts per agent; EnvError for unsupported spaces."""
    if len(action_spaces) < 2:
        raise EnvError(f"{env_id} has {len(action_spaces)} agent(s); CADP needs >= 2 agents")
    for space in action_spaces:
        if isinstance(space, spaces.Box):
            raise EnvError(
                f"{env_id}: continuous actions are not supported "
                f"(CADP's scripts are for discrete actions); action space {space}"
            )
        if not isinstance(space, spaces.Discrete) or space.start != 0:
            raise EnvError(
                f"{env_id}: action space {space} is not supported; each agent needs a Discrete(n) action space"
            )
    for space in obs_spaces:
        if not isinstance(space, spaces.Box):
            raise EnvError(
                f"{env_id}: observation space {space} is not supported; "
                "each agent needs a Box (array) observation space"
            )
    return [int(np.prod(s.shape)) for s in obs_spaces], [int(s.n) for s in action_spaces]


# gymnasium envs with per-agent Tuple spaces (LBF, RWARE, ...)
class GymnasiumEnv(MultiAgentEnv):
    """A gymnasium env whose spaces are Tuples of per-agent spaces. Subclasses fix the
    quirks of one suite by overriding _avail (action mask) and _hit_time_limit."""

    def __init__(self, env, env_id: str, seed: int | None = None):
        self.env, self.unwrapped, self._seed = env, env.unwrapped, seed
        obs_space, act_space = env.observation_space, env.action_space
        if not (isinstance(obs_space, spaces.Tuple) and isinstance(act_space, spaces.Tuple)):
            raise EnvError(
                f"{env_id} looks single-agent (observation space {type(obs_space).__name__}, "
                f"action space {type(act_space).__name__}); a multi-agent gymnasium env "
                "needs per-agent Tuple spaces (one entry per agent)"
            )
        self._set_sizes(*_space_sizes(env_id, obs_space.spaces, act_space.spaces))
        self.episode_limit = self._find_episode_limit()
        self._t = 0

    def _find_episode_limit(self) -> int:
        if self.env.spec is not None and self.env.spec.max_episode_steps:
            return int(self.env.spec.max_episode_steps)  # a TimeLimit wrapper reports truncation itself
        for name in ("_max_episode_steps", "max_steps", "max_episode_steps"):
            value = getattr(self.unwrapped, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return DEFAULT_EPISODE_LIMIT

    def _avail(self) -> np.ndarray:
        return self._all_avail.copy()

    def _hit_time_limit(self) -> bool:
        """True when a terminated=True from the env was really its internal time limit."""
        return False

    def reset(self, seed=None):
        obs, _ = self.env.reset(seed=self._first_seed(seed))
        self._t = 0
        obs = self._pad_obs(obs)
        return obs, obs.reshape(-1).copy(), self._avail()

    def step(self, actions):
        obs, rewards, terminated, truncated, _ = self.env.step(tuple(np.asarray(actions).tolist()))
        self._t += 1
        # a few envs report per-agent done lists instead of team-level bools (np.* is slow
        # on plain Python values, hence the type checks: this runs ~1e6 times per training)
        if type(terminated) is not bool or type(truncated) is not bool:
            terminated, truncated = bool(np.all(terminated)), bool(np.all(truncated))
        if terminated and self._hit_time_limit():
            terminated, truncated = False, True
        # a true end wins over a time limit reached on the same step (nothing to bootstrap)
        truncated = not terminated and (truncated or self._t >= self.episode_limit)
        obs = self._pad_obs(obs)
        reward = float(sum(rewards)) if isinstance(rewards, (list, tuple)) else float(np.sum(rewards))
        return obs, obs.reshape(-1).copy(), self._avail(), reward, terminated, truncated, {}

    def render(self):
        return self.env.render()  # made with render_mode="rgb_array"

    def close(self):
        self.env.close()


class LBFEnv(GymnasiumEnv):
    """Level-Based Foraging: the mask and the time limit are only in the env's internals."""

    action_mask = (
        "LBF's own valid-action sets: action a is available to agent i when Action(a) is in "
        "env.unwrapped._valid_actions[env.unwrapped.players[i]], recomputed by every reset and step; "
        "LBF silently plays any other action as a no-op, so mask them"
    )

    def reset(self, seed=None):
        # LBF places new players away from the previous episode's (never cleared) positions,
        # so a start would depend on how the last episode ended, i.e. on the policy, and
        # reset(seed) would not repeat; cleared, it depends on the env's RNG alone
        for player in self.unwrapped.players:
            player.position = None
        return super().reset(seed)

    def _avail(self):
        # LBF turns invalid actions into "none" without telling; its own per-player valid
        # sets (recomputed at the end of reset and step) are what it checks against
        avail = np.zeros((self.n_agents, self.n_actions), bool)
        valid = self.unwrapped._valid_actions
        for i, player in enumerate(self.unwrapped.players):
            for action in valid[player]:
                avail[i, action.value] = True
        return avail

    def _hit_time_limit(self):
        # the 50-step limit ends with terminated=True like eating all food does; food left
        # means it was the limit (eating the last food on the last step is a termination)
        env = self.unwrapped
        return env.current_step >= env._max_episode_steps and env.field.sum() > 0

    def render(self):
        return draw_lbf(self.unwrapped)  # LBF's own renderer needs a window (pyglet)


class RWAREEnv(GymnasiumEnv):
    """RWARE never reaches a true terminal state: both of its ends (max_steps and the
    optional max_inactivity_steps) are cut-offs it reports as terminated=True."""

    def _hit_time_limit(self):
        return True

    def render(self):
        return draw_rware(self.unwrapped)  # RWARE's own renderer needs a window (pyglet)


# PettingZoo parallel envs (mpe2, pettingzoo.sisl, ...)
class PettingZooEnv(MultiAgentEnv):
    """A PettingZoo ParallelEnv in the fixed agent order of env.possible_agents."""

    action_mask = (
        "every action of the agent's own action space while the agent is in the episode (in env.agents); "
        "one that has left it gets a zero observation and only action 0"
    )

    def __init__(self, env, env_id: str, seed: int | None = None):
        self.env, self._seed = env, seed
        self.agents = list(env.possible_agents)
        self._index = {a: i for i, a in enumerate(self.agents)}
        state_space = getattr(env, "state_space", None)
        self._use_state = isinstance(state_space, spaces.Box)
        self._set_sizes(
            *_space_sizes(
                env_id, [env.observation_space(a) for a in self.agents], [env.action_space(a) for a in self.agents]
            ),
            state_dim=int(np.prod(state_space.shape)) if self._use_state else None,
        )
        self._only_noop = np.zeros(self.n_actions, bool)
        self._only_noop[0] = True
        self.episode_limit = _find_max_cycles(env) or DEFAULT_EPISODE_LIMIT
        self._t = 0

    def _state(self, obs):
        if self._use_state:
            return np.asarray(self.env.state(), np.float32).reshape(-1)
        return obs.reshape(-1).copy()

    def reset(self, seed=None):
        obs, _ = self.env.reset(seed=self._first_seed(seed))
        self._t = 0
        obs = self._pad_obs([obs.get(a) for a in self.agents])
        return obs, self._state(obs), self._all_avail.copy()

    def step(self, actions):
        live = list(self.env.agents)  # a copy: the env empties this very list in step()
        if not live:  # empty once an episode is over
            raise RuntimeError("the episode is over: call reset() first")
        obs, rewards, terms, truncs, _ = self.env.step({a: int(actions[self._index[a]]) for a in live})
        self._t += 1
        all_done = all(terms.get(a, False) or truncs.get(a, False) for a in live)
        terminated = all_done and all(terms.get(a, False) for a in live)
        truncated = not terminated and (all_done or self._t >= self.episode_limit)
        avail = self._all_avail.copy()
        per_agent = []
        for i, a in enumerate(self.agents):
            # gone: dead before (no obs), dead now, or cut off alone while the others go on
            gone = a not in obs or terms.get(a, False) or (truncs.get(a, False) and not all_done)
            per_agent.append(None if gone else obs[a])
            if gone:
                avail[i] = self._only_noop
        obs = self._pad_obs(per_agent)
        active = np.array([agent is not None for agent in per_agent])
        return (obs, self._state(obs), avail, float(sum(rewards.values())), terminated, truncated, {"active": active})

    def render(self):
        return self.env.render()  # made with render_mode="rgb_array"

    def close(self):
        self.env.close()


def _find_max_cycles(env) -> int | None:
    # mpe2 keeps max_cycles on the unwrapped env, pursuit on the base game inside it (.env)
    obj = env.unwrapped
    for _ in range(4):
        value = getattr(obj, "max_cycles", None)
        if isinstance(value, int) and value > 0:
            return value
        obj = getattr(obj, "env", None)
        if obj is None:
            return None
    return None


# Matrix games: 2 agents, known optimum, learnable in seconds
@dataclass(frozen=True)
class MatrixGame:
    """A common-payoff game on a few states. In state s the team gets payoffs[s][a0, a1] and
    moves to next_state[s][a0, a1] (-1: the episode ends). Agents and state see a one-hot of
    the current game state; after the last step the observation is all zeros."""

    payoffs: tuple[np.ndarray, ...]
    next_state: tuple[np.ndarray, ...]
    optimal_return: float
    state_names: tuple[str, ...]
    episode_limit: int


def _one_step_game(payoff) -> MatrixGame:
    payoff = np.array(payoff, np.float32)
    return MatrixGame((payoff,), (np.full(payoff.shape, -1),), float(payoff.max()), ("1",), 1)


MATRIX_GAMES: dict[str, MatrixGame] = {
    "climbing": _one_step_game([[11, -30, 0], [-30, 7, 6], [0, 0, 5]]),
    "penalty": _one_step_game([[10, 0, -100], [0, 2, 0], [-100, 0, 10]]),
    # QMIX paper's two-step game: agent 0's first action picks state 2A (0) or 2B (1)
    "two_step": MatrixGame(
        payoffs=(np.zeros((2, 2), np.float32), np.full((2, 2), 7, np.float32), np.array([[0, 1], [1, 8]], np.float32)),
        next_state=(np.array([[1, 1], [2, 2]]), np.full((2, 2), -1), np.full((2, 2), -1)),
        optimal_return=8.0,
        state_names=("1", "2A", "2B"),
        episode_limit=2,
    ),
}


class MatrixGameEnv(MultiAgentEnv):
    action_mask = "every action is always available"

    def __init__(self, name: str):
        if name not in MATRIX_GAMES:
            raise EnvError(f"unknown matrix game {name!r}; available: {', '.join(MATRIX_GAMES)}")
        self.game = MATRIX_GAMES[name]
        n_states = len(self.game.payoffs)
        self._set_sizes([n_states] * 2, [self.game.payoffs[0].shape[0]] * 2, n_states)
        self.episode_limit = self.game.episode_limit
        self._s = 0

    def _observe(self):
        state = np.zeros(self.state_dim, np.float32)
        if self._s >= 0:
            state[self._s] = 1.0
        return np.tile(state, (2, 1)), state, self._all_avail.copy()

    def reset(self, seed=None):
        self._s = 0  # deterministic: nothing to seed
        return self._observe()

    def step(self, actions):
        if self._s < 0:
            raise RuntimeError("the episode is over: call reset() first")
        a0, a1 = int(actions[0]), int(actions[1])
        reward = float(self.game.payoffs[self._s][a0, a1])
        self._s = int(self.game.next_state[self._s][a0, a1])
        return (*self._observe(), reward, self._s < 0, False, {})


# make_env: env id -> adapter, with one-line errors
def _install_hint(module_name: str, missing: str) -> str:
    """What installs `missing`, a module that the env module `module_name` (a known one) needs."""
    top, family = missing.split(".")[0], module_name.split(".")[0]
    if family == "pettingzoo" and "." in module_name and top != "pettingzoo":  # an env family's extra
        return f'pip install "pettingzoo[{module_name.split(".")[1]}]"'
    if top in _PIP_NAMES:
        return f"pip install {_PIP_NAMES[top]}"
    if family in KNOWN_MODULES:  # installing the env's package brings its dependencies
        return KNOWN_MODULES[family]
    return f"install the package that provides {top!r}"


def _not_found(module_name: str, missing: str, env_id: str) -> str:
    """The message for an env module that cannot be found: how to install a known one, the closest submodule of
    an installed package, or the closest known module; never a pip command made of what was typed."""
    parent, _, child = missing.rpartition(".")
    if parent in sys.modules:  # e.g. pettingzoo.sisll: the package imported, its submodule does not exist
        names = sorted(m.name for m in pkgutil.iter_modules(getattr(sys.modules[parent], "__path__", [])))
        close = difflib.get_close_matches(child, names, n=1)
        hint = f"did you mean {parent}.{close[0]}? " if close else ""
        return f"{env_id}: {parent!r} has no module {child!r}; {hint}its modules: {', '.join(names) or 'none'}"
    top = missing.split(".")[0]
    if top in KNOWN_MODULES:
        return f"{env_id}: module {module_name!r} is not installed; {KNOWN_MODULES[top]}"
    close = difflib.get_close_matches(top, KNOWN_MODULES, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    return (
        f"{env_id}: no module named {top!r}; {hint}the env modules this project knows: {', '.join(KNOWN_MODULES)} "
        "(a module of your own must be importable, e.g. on PYTHONPATH)"
    )


def _import(module_name: str, env_id: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or module_name
        if module_name == missing or module_name.startswith(missing + "."):
            raise EnvError(_not_found(module_name, missing, env_id)) from None
        raise EnvError(
            f"{env_id}: module {module_name!r} needs {missing!r}, which is not installed; "
            f"{_install_hint(module_name, missing)}"
        ) from None
    except ImportError as e:  # e.g. pettingzoo.mpe, which now says it moved to mpe2
        raise EnvError(f"{env_id}: cannot import {module_name!r}: {e}") from None


def _entry_module(spec) -> str:
    """The top-level package of a registered gymnasium id's entry point."""
    entry = spec.entry_point
    if not isinstance(entry, str):  # a callable entry point
        entry = getattr(entry, "__module__", "")
    return entry.split(":")[0].split(".")[0]


def _gymnasium_ids(module_name: str) -> list[str]:
    """Registered gymnasium ids whose entry point lives in the module's package."""
    top = module_name.split(".")[0]
    return [env_id for env_id, spec in gymnasium.registry.items() if _entry_module(spec) == top]


_CANNOT_RENDER = (
    "drop --capture-video (it records LBF, RWARE, SMAX and PettingZoo envs that render rgb_array, e.g. mpe2)"
)


def _finish(adapter: MultiAgentEnv, env, env_id: str, draws_itself: bool) -> MultiAgentEnv:
    """The adapter, with its env's own frame rate (metadata render_fps) for --capture-video; draws_itself: the env
    must render rgb_array frames (it was made with render_mode="rgb_array"), else EnvError."""
    if draws_itself and "rgb_array" not in env.metadata.get("render_modes", []):
        raise EnvError(f"{env_id} cannot draw itself (no rgb_array render mode); {_CANNOT_RENDER}")
    fps = (getattr(env, "metadata", None) or {}).get("render_fps")
    if isinstance(fps, (int, float)) and fps > 0:
        adapter.render_fps = int(fps)
    return adapter


def _pettingzoo_names(module) -> list[str]:
    names = {m.name for m in pkgutil.iter_modules(getattr(module, "__path__", []))} | set(dir(module))
    return sorted(n for n in names if re.fullmatch(r"[a-z][a-z0-9_]*_v\d+", n))


def make_env(env_id: str, seed: int | None = None, render: bool = False, **env_kwargs) -> MultiAgentEnv:
    """The adapter for `module:Id`. seed applies to the first reset() that gets no seed;
    env_kwargs go to the env's constructor (gymnasium.make / parallel_env). render: the adapter's
    render() draws the current step (--capture-video); an env that cannot draw itself raises EnvError."""
    module_name, _, name = env_id.partition(":")
    if not module_name or not name:
        raise EnvError(
            f"env id {env_id!r} must look like 'module:Id' (the module to import, then the env), e.g. {_ID_EXAMPLES}"
        )
    if module_name == "matrix":
        if render:
            raise EnvError(f"{env_id}: a matrix game has no picture to draw; {_CANNOT_RENDER}")
        return MatrixGameEnv(name)
    if module_name == "gfootball":  # Google Research Football: its own adapter (optional extra)
        from common.gfootball import GFootballEnv  # imported here: gfootball is an optional extra

        return GFootballEnv(name, seed, **env_kwargs)
    if module_name == "smax":  # batched JAX code: no single-env adapter (nor a pip package "smax")
        raise EnvError(f"{env_id}: SMAX maps are vectorised envs only: make_vec_env({env_id!r}, ...)")
    module = _import(module_name, env_id)
    if name in gymnasium.registry:
        # LBF and RWARE are drawn by common/video.py; other gymnasium envs must draw themselves
        own_drawing = _entry_module(gymnasium.registry[name]) in ("lbforaging", "rware")
        if render and not own_drawing:
            env_kwargs.setdefault("render_mode", "rgb_array")
        env = gymnasium.make(name, disable_env_checker=True, **env_kwargs)
        family = type(env.unwrapped).__module__.split(".")[0]
        adapter = {"lbforaging": LBFEnv, "rware": RWAREEnv}.get(family, GymnasiumEnv)
        try:
            return _finish(adapter(env, env_id, seed), env, env_id, draws_itself=render and not own_drawing)
        except EnvError:
            env.close()
            raise
    gym_ids = _gymnasium_ids(module_name)
    if gym_ids:
        close = difflib.get_close_matches(name, gym_ids, n=5, cutoff=0.5)
        raise EnvError(
            f"{env_id}: {module_name!r} registers no id {name!r} ({len(gym_ids)} ids exist); "
            f"closest: {', '.join(close or sorted(gym_ids)[:5])}"
        )

    try:  # PettingZoo layout: module.name is a submodule with parallel_env()
        with warnings.catch_warnings():
            # pettingzoo's own env modules warn on import that `module.name_vN` is the "old
            # creation API"; it is the documented way and nothing a user can act on
            warnings.simplefilter("ignore", DeprecationWarning)
            env_module = importlib.import_module(f"{module_name}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{module_name}.{name}":  # the env module exists but misses a dependency
            raise EnvError(
                f"{env_id} needs {e.name!r}, which is not installed; {_install_hint(module_name, e.name or name)}"
            ) from None
        names = _pettingzoo_names(module)
        if not names:
            raise EnvError(
                f"{env_id}: {module_name!r} registers no gymnasium ids and has no PettingZoo "
                f"envs (`name_vN` modules); expected ids like {_ID_EXAMPLES}"
            ) from None
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise EnvError(f"{env_id}: {module_name!r} has no env {name!r}{hint}; available: {', '.join(names)}") from None
    if not hasattr(env_module, "parallel_env"):
        raise EnvError(f"{env_id}: {module_name}.{name} has no parallel_env(); a PettingZoo parallel env is needed")
    try:
        params = inspect.signature(getattr(env_module, "raw_env", env_module.parallel_env)).parameters
    except (TypeError, ValueError):
        params = {}
    if "continuous_actions" in params:  # mpe2 can be continuous; CADP needs discrete actions
        env_kwargs.setdefault("continuous_actions", False)
    if render:
        env_kwargs.setdefault("render_mode", "rgb_array")
    env = env_module.parallel_env(**env_kwargs)
    try:
        return _finish(PettingZooEnv(env, env_id, seed), env, env_id, draws_itself=render)
    except EnvError:
        env.close()
        raise


# --env-kwargs: the keywords each family's constructor takes, checked before anything is built
def env_keywords(env_id: str) -> tuple[str, dict[str, inspect.Parameter] | None]:
    """(family, {keyword: Parameter}) of what the env's constructor accepts through env_kwargs; the dict is None
    when the constructor takes any keyword (**kwargs). Raises EnvError for an id that cannot be made."""
    module_name, _, name = env_id.partition(":")
    if module_name == "matrix":
        return "matrix games", {}
    if module_name == "gfootball":
        from common.gfootball import GFootballEnv  # optional extra; the signature is ours either way

        return "gfootball", _parameters(GFootballEnv.__init__, skip=("self", "scenario", "seed"))
    if not module_name or not name or module_name == "smax":
        make_env(env_id)  # raises its one-line error: a malformed id, or SMAX's (common/smax.py checks its own)
    _import(module_name, env_id)  # registers its ids
    if name in gymnasium.registry:
        entry = gymnasium.registry[name].entry_point
        if isinstance(entry, str):
            entry_module, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(entry_module), attr)
        keywords = _parameters(entry.__init__ if inspect.isclass(entry) else entry, skip=("self",))
        if keywords is not None:  # the registration's kwargs are the defaults a user overrides (LBF sets them all)
            registered = gymnasium.registry[name].kwargs
            keywords = {k: p.replace(default=registered.get(k, p.default)) for k, p in keywords.items()}
        return module_name.split(".")[0], keywords
    try:  # PettingZoo: the raw env's constructor is what parallel_env(**kwargs) passes them to
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            env_module = importlib.import_module(f"{module_name}.{name}")
    except ModuleNotFoundError:
        make_env(env_id)  # raises the one-line error naming what exists
        raise
    target = getattr(env_module, "raw_env", getattr(env_module, "parallel_env", None))
    return module_name.split(".")[0], _parameters(getattr(target, "__init__", target), skip=("self",))


def _parameters(function, skip: tuple[str, ...]) -> dict[str, inspect.Parameter] | None:
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return {k: p for k, p in params.items() if k not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _type_ok(value, default) -> bool:
    """Whether a JSON value fits where the constructor's default is `default` (no default, None: anything)."""
    if default is inspect.Parameter.empty or default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)) or hasattr(default, "shape"):  # lists, tuples, arrays
        return isinstance(value, list)
    return True


def _plain(value):
    """A default as JSON would spell it (arrays as lists)."""
    return value.tolist() if hasattr(value, "tolist") else list(value) if isinstance(value, tuple) else value


def check_env_kwargs(env_id: str, env_kwargs: dict, keywords: tuple[str, dict] | None = None) -> None:
    """EnvError, in one line listing the family's keywords, for an unknown keyword or a value of the wrong type.
    keywords: (family, {keyword: Parameter}) of an env make_env does not build (SMAX's), else env_keywords'."""
    if not env_kwargs:
        return
    family, keywords = keywords or env_keywords(env_id)
    if keywords is None:  # the constructor takes **kwargs: what it rejects, it rejects itself
        return
    valid = ", ".join(sorted(keywords)) or "none"
    for key, value in env_kwargs.items():
        if key not in keywords:
            close = difflib.get_close_matches(key, keywords, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise EnvError(f"--env-kwargs: {env_id} takes no keyword {key!r}{hint}; {family} takes: {valid}")
        default = keywords[key].default
        if not _type_ok(value, default):
            wanted = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
            raise EnvError(
                f"--env-kwargs: {key}={json.dumps(value)} for {env_id} should be "
                f"{wanted.get(type(default), 'a list')} (its default is {json.dumps(_plain(default))}); "
                f"{family} takes: {valid}"
            )


# ---- shared by both vectorised envs (common/vec_env.py's VecMultiAgentEnv, common/smax.py's SMAXVecEnv) ----
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
