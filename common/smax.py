"""SMAX, JaxMARL's JAX re-implementation of SMAC maps, behind ``VecMultiAgentEnv``'s interface.

Env ids ``smax:<map>``: ``smax:3m``, ``smax:2s3z``, ``smax:5m_vs_6m``, ``smax:3s5z_vs_3s6z``, ...,
every map of the installed jaxmarl (``smax_maps()``), plus ``smax:6z_vs_24zg``: SMAC corridor's armies,
6 zealots against 24 zerglings, on SMAX's open ground (SMAX has no terrain, so no corridor). Needs the optional
extra: ``pip install --no-deps -r requirements-smax.txt``. The allies are the learners; the enemies
play SMAX's heuristic (``HeuristicEnemySMAX``: each enemy attacks the closest ally), in the role of
SMAC's built-in AI.

``SMAXVecEnv(env_id, num_envs, seed, agent_id_feature, last_action_feature, env_kwargs, size_check,
capture_video)`` has the
attributes, reset/step values, info keys, seeding, auto-reset and observation features that the
module docstring of common/vec_env.py gives for ``VecMultiAgentEnv`` (``env_kwargs`` go to
``HeuristicEnemySMAX``, e.g. ``max_steps``, but ``reward_scale_rate``, which is ours; with capture_video,
``frames`` holds env 0's first episode after each reset, drawn by common/video.py's draw_smax from the game
state). What the SMAX arrays are:

* obs: each ally's own unit-list observation (relative features of the other units, then its own);
  state: SMAX's ``world_state`` (every unit's health, position, cooldown and type, team, type id);
* avail: SMAX's ``get_avail_actions``: 0-3 move, 4 stop (always available; the only action of a
  dead ally), 5 + k attack enemy k (alive and in range);
* reward: the allies' team reward, one scalar shared by all of them (used as is, not summed):
  the enemies' health lost this step as a fraction of their team's, plus 1.0 for a won battle, so a
  battle's return is at most 2; env kwarg ``reward_scale_rate`` (SMAC's, 20 in SMAC and the CADP release)
  rescales it so that this largest return equals the rate (x10 for 20), and returns are logged so scaled;
* win: every enemy dead while an ally lives (the condition of SMAX's won-battle bonus);
  active (info): the allies alive at the returned step (a dead ally's only action is stop);
  terminated: one side is all dead; truncated: the step limit (``episode_limit`` = SMAX's
  ``max_steps``, 100) ran out, after exactly that many steps (SMAX itself would play one more).

All num_envs copies step in one jitted, vmapped call; the states and RNG keys stay JAX arrays
between calls. The first call of a shape compiles (seconds); the compiled functions are shared by
envs of the same map, features and ``num_envs`` (a script's two eval envs compile once).
"""

from __future__ import annotations

import difflib
import inspect
import sys
from functools import lru_cache

import numpy as np

from common.cli import EnvError
from common.envs import check_env_kwargs, checked_actions, feature_layout
from common.video import draw_smax, smax_view

INSTALL_HINT = "pip install --no-deps -r requirements-smax.txt"

_streams = sys.stdout, sys.stderr
try:
    import jax
    import jax.numpy as jnp
    from jaxmarl.environments.smax import HeuristicEnemySMAX, Scenario, map_name_to_scenario, register_scenario
    from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO, SMAX
except ModuleNotFoundError as error:
    _MISSING = (error.name or "jaxmarl").split(".")[0]
else:
    _MISSING = None
    # unit types in SMAX's order: 0 marine, 1 marauder, 2 stalker, 3 zealot, 4 zergling, 5 hydralisk;
    # allies first, then enemies; no SMACv2 random positions or types
    ZEALOT, ZERGLING = 3, 4
    if "6z_vs_24zg" not in MAP_NAME_TO_SCENARIO:
        register_scenario(
            "6z_vs_24zg", Scenario(jnp.array([ZEALOT] * 6 + [ZERGLING] * 24, jnp.uint8), 6, 24, False, False)
        )
finally:
    # importing jaxmarl probes for brax with sys.stdout/stderr pointed at devnull, then sets them
    # to the process's own streams: that would drop any redirection (pytest's, a notebook's)
    sys.stdout, sys.stderr = _streams


def smax_maps() -> list[str]:
    """The SMAX map names of the installed jaxmarl ([] without it)."""
    return [] if _MISSING else sorted(MAP_NAME_TO_SCENARIO)


# SMAC's `reward_scale_rate`: the team reward is rescaled so that a battle's largest possible return equals it
# (SMAC's own default and the CADP release's: 20); SMAX's largest return is 1 (all enemy health) + the win bonus
REWARD_SCALE_RATE = "reward_scale_rate"
# SMAC's state is normalised (positions by the map's size, cooldowns by their longest); SMAX's world_state is not
# (positions up to 32, unit type ids up to 5): `normalize_state` brings it into [0, 1] as SMAC's
NORMALIZE_STATE = "normalize_state"


def world_state_normalizer(env):
    """world_state -> world_state in [0, 1]: each unit's x and y divided by the map's size, its weapon cooldown
    clipped at 0 (SMAX counts it on below 0 once the weapon is ready; SMAC's stops at 0) and divided by the
    longest one, and the unit type ids by the last id (health is a fraction already, the type bits and teams are
    0 or 1). world_state: 10 features per unit (health, x, y, cooldown, 6 type bits), then every unit's team,
    then every unit's type id."""
    smax, features = env._env, len(env._env.own_features)
    unit = np.ones(features, np.float32)
    unit[1], unit[2] = 1 / smax.map_width, 1 / smax.map_height
    unit[3] = 1 / float(np.max(np.asarray(smax.unit_type_weapon_cooldowns)))
    types = np.full(smax.num_agents, 1 / (len(smax.unit_type_names) - 1), np.float32)
    scale = jnp.asarray(np.concatenate([np.tile(unit, smax.num_agents), np.ones(smax.num_agents, np.float32), types]))
    position = np.arange(env.state_size)
    cooldown = jnp.asarray((position % features == 3) & (position < smax.num_agents * features))
    return lambda world_state: jnp.where(cooldown, jnp.clip(world_state, 0.0), world_state) * scale


def smax_keywords(env_id: str) -> dict:
    """--env-kwargs a SMAX id takes: HeuristicEnemySMAX's and SMAX's constructor keywords (but the scenario and
    team sizes, which the map sets), and reward_scale_rate."""
    if _MISSING:
        raise EnvError(f"{env_id} needs jaxmarl and jax ({_MISSING!r} is not installed); {INSTALL_HINT}")
    keywords = {}
    for cls in (HeuristicEnemySMAX, SMAX):
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if (
                name not in ("self", "scenario", "num_allies", "num_enemies")
                and param.kind is param.POSITIONAL_OR_KEYWORD
            ):
                keywords[name] = param
    keywords[REWARD_SCALE_RATE] = inspect.Parameter(REWARD_SCALE_RATE, inspect.Parameter.KEYWORD_ONLY, default=0.0)
    keywords[NORMALIZE_STATE] = inspect.Parameter(NORMALIZE_STATE, inspect.Parameter.KEYWORD_ONLY, default=False)
    return keywords


def reward_scale(env, rate: float | None) -> float:
    """The factor that makes a battle's largest return `rate` (None or 0: SMAX's own rewards, factor 1)."""
    if not rate:
        return 1.0
    largest_return = (0.0 if env._env.use_self_play_reward else 1.0) + env._env.won_battle_bonus
    return rate / largest_return


@lru_cache(maxsize=None)
def _smax_functions(
    map_name: str, agent_id_feature: bool, last_action_feature: bool, with_final_state: bool = False, **env_kwargs
):
    """(env, reset, step): batched, jitted functions over one env's key, state and actions.
    jit keys its compile cache on the function object, so one per configuration serves every
    instance of it. with_final_state: step also returns the game states before the auto-reset
    (--capture-video draws a finished episode's last step from them)."""
    rate, normalize = env_kwargs.pop(REWARD_SCALE_RATE, None), env_kwargs.pop(NORMALIZE_STATE, False)
    arrays = [name for name, param in smax_keywords(map_name).items() if hasattr(param.default, "shape")]
    env_kwargs = {k: jnp.asarray(v, jnp.float32) if k in arrays else v for k, v in env_kwargs.items()}
    env = HeuristicEnemySMAX(scenario=map_name_to_scenario(map_name), **env_kwargs)
    scale = reward_scale(env, rate)
    world_state = world_state_normalizer(env) if normalize else (lambda state: state)  # SMAX's own by default
    n, a = env.num_allies, env.action_spaces[env.agents[0]].n
    no_last_action = jnp.zeros((n, a), jnp.float32)

    def observe(obs, state, last_action):
        """obs (n, obs_dim) with the features in obs_layout's order, world state (S,), avail (n, a)."""
        parts = [jnp.stack([obs[agent] for agent in env.agents])]
        if agent_id_feature:
            parts.append(jnp.eye(n, dtype=jnp.float32))
        if last_action_feature:
            parts.append(last_action)
        avail = env.get_avail_actions(state)
        return (
            jnp.concatenate(parts, axis=-1),
            world_state(obs["world_state"]),
            jnp.stack([avail[agent] for agent in env.agents]).astype(bool),
        )

    def reset(key):
        key, reset_key = jax.random.split(key)
        obs, state = env.reset(reset_key)
        return key, state, observe(obs, state, no_last_action)

    def step(key, state, actions):  # actions (n,) int32
        key, step_key, reset_key = jax.random.split(key, 3)
        # step_env, not step: step's own auto-reset would hide the finished episode's last arrays
        obs, state, rewards, dones, _ = env.step_env(
            step_key, state, {agent: actions[i] for i, agent in enumerate(env.agents)}
        )
        final = observe(obs, state, jax.nn.one_hot(actions, a, dtype=jnp.float32))
        alive = state.state.unit_alive  # (n + enemies,), allies first
        allies_dead, enemies_dead = ~alive[:n].any(), ~alive[n:].any()
        terminated = allies_dead | enemies_dead
        # SMAX tests its limit before counting the step, so its episodes last max_steps + 1 steps;
        # like SMAC's episode_limit (and so that buffers of episode_limit steps fit), end at max_steps
        done = dones["__all__"] | (state.state.step >= env.max_steps)

        # vmap turns a cond into a select of both branches anyway: always compute the reset
        _, reset_state, fresh = reset(reset_key)
        final_state = state.state
        state = jax.tree.map(lambda r, s: jnp.where(done, r, s), reset_state, state)
        current = jax.tree.map(lambda r, f: jnp.where(done, r, f), fresh, final)
        active = state.state.unit_alive[:n]  # of the returned (current) step: all alive after a reset
        outputs = (
            key,
            state,
            current,
            final,
            rewards[env.agents[0]] * scale,
            terminated,
            done & ~terminated,
            enemies_dead & ~allies_dead,
            active,
        )
        return (*outputs, final_state) if with_final_state else outputs

    return env, jax.jit(jax.vmap(reset)), jax.jit(jax.vmap(step))


class SMAXVecEnv:
    """num_envs copies of one SMAX map, stepped together (see the module docstring)."""

    has_win = True
    # --capture-video; class defaults, which checkpoints of older versions rely on
    capture_video, render_fps, frames, _capturing = False, 8, (), False

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
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if _MISSING:
            raise EnvError(f"{env_id} needs jaxmarl and jax ({_MISSING!r} is not installed); {INSTALL_HINT}")
        map_name = env_id.partition(":")[2]
        if map_name not in MAP_NAME_TO_SCENARIO:
            close = difflib.get_close_matches(map_name, smax_maps(), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise EnvError(f"{env_id}: SMAX has no map {map_name!r}{hint}; available: {', '.join(smax_maps())}")
        check_env_kwargs(env_id, env_kwargs or {}, ("SMAX", smax_keywords(env_id)))
        self._config = (map_name, agent_id_feature, last_action_feature, capture_video, dict(env_kwargs or {}))
        env, self._reset_fn, self._step_fn = _functions(self._config)
        self._env = env  # the jaxmarl env: its map and unit stats, for drawing
        self.capture_video = capture_video  # then env 0's first episode after each reset(), drawn from its game state

        self.env_id, self.num_envs, self.seed = env_id, num_envs, seed
        self.n_agents, self.n_actions = env.num_allies, env.action_spaces[env.agents[0]].n
        self.state_dim, self.env_obs_dim, self.episode_limit = env.state_size, env.obs_size, env.max_steps
        self.action_mask = (
            "SMAX's env.get_avail_actions(state)[agent]: move 0-3 and stop 4 always, attack 5 + k "
            "while enemy k is alive and in range; a dead ally only stop"
        )
        self.obs_layout = feature_layout(
            self.env_obs_dim, self.n_agents, self.n_actions, agent_id_feature, last_action_feature
        )
        self.obs_dim = sum(size for _, size in self.obs_layout)
        if size_check is not None:  # before reset() allocates the envs' states
            size_check(self, None)

        self._keys = self._states = self._avail = None  # JAX keys (E, 2) and states; avail as numpy
        self._return = np.zeros(num_envs, np.float64)
        self._length = np.zeros(num_envs, np.int64)

    def reset(self, seed: int | None = None):
        # env i starts from seed + i once (or whenever a seed is given); later resets continue its key
        if self._keys is None or seed is not None:
            first = self.seed if seed is None else seed
            self._keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(self.num_envs) + first)
        self._keys, self._states, arrays = self._reset_fn(self._keys)
        self._return[:], self._length[:] = 0.0, 0
        obs, state, self._avail = _to_numpy(arrays)
        if self.capture_video:
            self._view = smax_view(np.asarray(self._states.state.unit_positions[0]), self._env)
            self.frames, self._capturing = [self._draw(self._states.state)], True
        return obs, state, self._avail.copy()

    def _draw(self, states) -> np.ndarray:
        """Env 0 of a batch of SMAX game states, drawn (common/video.py)."""
        unit = {
            "positions": states.unit_positions[0],
            "alive": states.unit_alive[0],
            "teams": states.unit_teams[0],
            "health": states.unit_health[0],
            "types": states.unit_types[0],
            "prev_attack_actions": states.prev_attack_actions[0],
            "step": states.step[0],
        }
        return draw_smax({name: np.asarray(value) for name, value in unit.items()}, self._env, self._view)

    def step(self, actions: np.ndarray):
        if self._states is None:
            raise RuntimeError("call reset() before step()")
        actions = checked_actions(actions, self._avail)
        outputs = self._step_fn(self._keys, self._states, jnp.asarray(actions, jnp.int32))
        self._keys, self._states, current, final, reward, terminated, truncated, win, active = outputs[:9]
        obs, state, self._avail = _to_numpy(current)
        final_obs, final_state, final_avail = _to_numpy(final)
        reward, terminated, truncated, win, active = _to_numpy((reward, terminated, truncated, win, active))
        if self._capturing:  # env 0's last step, before the auto-reset
            self.frames.append(self._draw(outputs[9]))
            self._capturing = not (terminated[0] or truncated[0])

        self._return += reward  # summed in float64, as VecMultiAgentEnv does
        self._length += 1
        done = terminated | truncated
        episode_return = np.where(done, self._return, 0.0).astype(np.float32)
        episode_length = np.where(done, self._length, 0)
        self._return[done], self._length[done] = 0.0, 0
        info = {
            "final_obs": final_obs,
            "final_state": final_state,
            "final_avail": final_avail,
            "episode_return": episode_return,
            "episode_length": episode_length,
            "win": win,
            "active": active,
        }
        return obs, state, self._avail.copy(), reward, terminated, truncated, info

    def close(self) -> None:
        self._keys = self._states = self._avail = None

    @property
    def envs(self) -> list[SMAXVecEnv]:
        """Stands in for VecMultiAgentEnv's list of per-env adapters, for code that pickles or
        measures that list: here one batched state holds every copy."""
        return [self]

    # pickling (checkpoints): the keys and states are JAX arrays, which pickle as numpy; the
    # jitted functions close over the jaxmarl env; both are rebuilt (or found compiled) on load
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_env", "_reset_fn", "_step_fn")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._env, self._reset_fn, self._step_fn = _functions(self._config)


def _functions(config: tuple):
    *flags, env_kwargs = config
    try:
        return _smax_functions(*flags, **env_kwargs)
    except TypeError:  # an unhashable kwarg: compiled for this instance only
        return _smax_functions.__wrapped__(*flags, **env_kwargs)


def _to_numpy(arrays) -> tuple[np.ndarray, ...]:
    # np.asarray of a CPU JAX array is a read-only view of its buffer; one copy makes it the
    # caller's (writable, as VecMultiAgentEnv's arrays are; torch.as_tensor warns on read-only ones)
    return tuple(np.array(x) for x in arrays)
