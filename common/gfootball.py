"""Google Research Football (GRF) behind common/envs.py's ``MultiAgentEnv`` interface.

Env ids ``gfootball:<scenario>``: every scenario of the installed gfootball (``gfootball_scenarios()``): the
academy ones (``gfootball:academy_3_vs_1_with_keeper``, ``gfootball:academy_counterattack_easy``, ...) and the
full games (``gfootball:11_vs_11_stochastic``, ``gfootball:5_vs_5``, ...). Needs the optional extra
(``bash install_grf.sh``: gfootball 2.10.2 builds from source). The learners are the left team's players;
the right team is GRF's built-in AI.

* obs: GRF's ``simple115v2`` vector of each controlled player (positions and directions of all players
  and the ball, who owns the ball, the game mode, and a one-hot of the player this agent controls: GRF
  reassigns control among the left team's players during an episode, as a human player switches);
  state: the concatenation of the agents' observations; avail: all 19 actions, always.
* win: the left team scored (GRF's ``score_reward`` of the step is +1).
* terminated: a goal, the ball out of play, the other team winning the ball (the academy scenarios end on
  each), or, with ``half_court_end``, the ball or one of our players back in our own half; truncated: the
  step limit (``time_limit``, or the scenario's own ``game_duration``).

The CADP release (CADP-VD/src/envs/gfootball, from the CDS paper) runs three scenarios with its own
settings, which are the defaults here for them: ``RELEASE_AGENTS`` controlled players, a 150-step limit,
the half-court rule, and its reward: +100 on the step the team scores, -1 on an episode's last step
otherwise (a time-limit end included), 0 on every other step. Other scenarios default to all of the left
team's outfield players (all of its players where that is fewer than 2), the scenario's own duration and
GRF's ``scoring`` reward (+1 per goal scored, -1 per goal conceded, the same for every player, used as the
team's reward). Each default is a keyword of ``GFootballEnv`` (``make_env(env_id, n_agents=...)``).
The release's own observation differs: a 26- or 30-number relative view that takes agent i to be player
-N+i of the left team, which GRF's reassignment of control breaks; GRF's standard simple115v2 is used here.

Seeding: GRF draws each episode's engine seed from Python's global ``random``; the adapter sets it from
its own generator instead, so an env's episodes follow from its seed alone. Pickling (checkpoints) saves
GRF's own ``get_state()`` (the engine mid-episode) and restores it into a new engine.
"""

from __future__ import annotations

import difflib
import logging
import os
import pkgutil
import warnings

import numpy as np

from common.cli import EnvError
from common.video import draw_gfootball

INSTALL_HINT = "bash install_grf.sh (README: Google Research Football)"
RELEASE_AGENTS = {"academy_3_vs_1_with_keeper": 3, "academy_counterattack_easy": 4, "academy_counterattack_hard": 4}
RELEASE_TIME_LIMIT = 150
REWARDS = ("release", "scoring", "scoring,checkpoints")
N_ACTIONS = 19  # GRF's default action set

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gym 0.25's deprecation notes on import
        import gfootball
        import gfootball.env as football_env
except ModuleNotFoundError as error:
    _MISSING = (error.name or "gfootball").split(".")[0]
else:
    _MISSING = None
    logging.getLogger("absl").setLevel(logging.ERROR)  # GRF logs every episode's end at INFO


def gfootball_scenarios() -> list[str]:
    """The scenario names of the installed gfootball ([] without it)."""
    if _MISSING:
        return []
    path = os.path.join(os.path.dirname(gfootball.__file__), "scenarios")
    return sorted(m.name for m in pkgutil.iter_modules([path]) if m.name not in ("tests", "test_example_multiagent"))


_default_agents: dict[str, int] = {}


def _outfield_players(scenario: str) -> int:
    """The left team's players in the scenario less its keeper (all of them where that leaves fewer than 2)."""
    if scenario not in _default_agents:
        env = _create(scenario, 1, "scoring")
        env.reset()
        roles = env.unwrapped.observation()[0]["left_team_roles"]  # role 0: goalkeeper
        env.close()
        outfield = int(np.sum(roles != 0))
        _default_agents[scenario] = outfield if outfield >= 2 else len(roles)
    return _default_agents[scenario]


def _create(scenario: str, n_agents: int, rewards: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gym 0.25's step-API notice
        return football_env.create_environment(
            env_name=scenario,
            representation="simple115v2",
            rewards=rewards,
            number_of_left_players_agent_controls=n_agents,
            render=False,
        )


class GFootballEnv:
    """One GRF game; the module docstring gives the observations, ends, reward and defaults. (A
    MultiAgentEnv of common/envs.py; not a subclass: envs.py's make_env imports this module, not the reverse.)"""

    has_win = True
    action_mask = "all 19 actions of GRF's default action set are always available"
    render_fps = 10  # GRF steps 1/10 s of game time
    resident_bytes = 60 * 2**20  # one GRF engine (measured: ~55 MiB each), for common/memory.py's check

    def __init__(
        self,
        scenario: str,
        seed: int | None = None,
        n_agents: int | None = None,
        time_limit: int | None = None,
        reward: str | None = None,
        half_court_end: bool | None = None,
    ):
        if _MISSING:
            raise EnvError(
                f"gfootball:{scenario} needs the Google Research Football extra ({_MISSING!r} is missing): "
                f"{INSTALL_HINT}"
            )
        scenarios = gfootball_scenarios()
        if scenario not in scenarios:
            close = difflib.get_close_matches(scenario, scenarios, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise EnvError(f"gfootball has no scenario {scenario!r}{hint}; available: {', '.join(scenarios)}")
        release = scenario in RELEASE_AGENTS
        reward = reward or ("release" if release else "scoring")
        if reward not in REWARDS:
            raise EnvError(f"gfootball:{scenario}: reward must be one of {', '.join(REWARDS)}, got {reward!r}")
        self.scenario, self.reward_kind = scenario, reward
        self.n_agents = n_agents or (RELEASE_AGENTS[scenario] if release else _outfield_players(scenario))
        if self.n_agents < 2:
            raise EnvError(f"gfootball:{scenario} with {self.n_agents} agent(s); CADP needs >= 2 agents")
        self.half_court_end = release if half_court_end is None else half_court_end
        self._settings = dict(
            scenario=scenario,
            n_agents=self.n_agents,
            time_limit=time_limit,
            reward=reward,
            half_court_end=self.half_court_end,
        )
        self.env = _create(scenario, self.n_agents, "scoring" if reward == "release" else reward)
        left_players = len(self.env.unwrapped._config._scenario_cfg.left_team)
        if self.n_agents > left_players:
            self.env.close()
            raise EnvError(
                f"gfootball:{scenario} has {left_players} left-team players; n_agents={self.n_agents} is too many"
            )
        duration = int(self.env.unwrapped._config._scenario_cfg.game_duration)
        self.episode_limit = min(time_limit or (RELEASE_TIME_LIMIT if release else duration), duration)
        self.obs_dim, self.n_actions = 115, N_ACTIONS
        self.state_dim = self.n_agents * self.obs_dim
        self._all_avail = np.ones((self.n_agents, self.n_actions), bool)
        self._rng = np.random.default_rng(seed)
        self._t, self._over = 0, True

    # ---- the interface ----
    def reset(self, seed: int | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        # GRF would take the episode's engine seed from Python's global `random` (and, once per env, from that
        # first seed the order in which the engine processes the two teams)
        engine_seed = int(self._rng.integers(2**31 - 1))
        config = self.env.unwrapped._config._values
        config["game_engine_random_seed"], config["reverse_team_processing"] = engine_seed, bool(engine_seed % 2)
        obs = np.asarray(self.env.reset(), np.float32).reshape(self.n_agents, self.obs_dim)
        self._t, self._over = 0, False
        return obs, obs.reshape(-1).copy(), self._all_avail.copy()

    def step(self, actions):
        if self._over:
            raise RuntimeError("the episode is over: call reset() first")
        obs, rewards, done, info = self.env.step(np.asarray(actions).tolist())
        self._t += 1
        scored = info.get("score_reward", 0) > 0
        raw = self.env.unwrapped.observation()[0]
        # GRF ends at its game_duration (a time limit) or on the scenario's rules (goal, out of play,
        # possession change: true ends); the release also ends an attack that falls back into our half
        truncated = bool(done) and raw["steps_left"] == 0 and not scored
        terminated = bool(done) and not truncated
        if self.half_court_end and not done:
            terminated = bool(raw["ball"][0] < 0 or np.any(raw["left_team"][-self.n_agents :, 0] < 0))
        if not terminated and self._t >= self.episode_limit:
            truncated = True
        self._over = terminated or truncated
        if self.reward_kind == "release":
            reward = 100.0 if scored else -float(self._over)
        else:
            reward = float(np.mean(rewards))  # the team's reward, given to each player
        obs = np.asarray(obs, np.float32).reshape(self.n_agents, self.obs_dim)
        return obs, obs.reshape(-1).copy(), self._all_avail.copy(), reward, terminated, truncated, {"win": scored}

    def render(self):
        return draw_gfootball(self.env.unwrapped.observation())

    def close(self):
        self.env.close()

    # ---- checkpoints: GRF's engine does not pickle, its get_state() does ----
    def __getstate__(self):
        engine = None if self._over else self.env.unwrapped.get_state()
        values = self.env.unwrapped._config._values
        kept = {
            k: values[k]
            for k in ("episode_number", "reverse_team_processing", "game_engine_random_seed")
            if k in values
        }
        return dict(
            settings=self._settings,
            rng=self._rng.bit_generator.state,
            t=self._t,
            over=self._over,
            engine=engine,
            values=kept,
        )

    def __setstate__(self, state):
        self.__init__(**state["settings"])
        self._rng.bit_generator.state = state["rng"]
        config = self.env.unwrapped._config._values
        config.update(state["values"])  # the episode's seed and team order, for the reset below
        if state["engine"] is not None:
            self.env.reset()
            self.env.unwrapped.set_state(state["engine"])
        config.update(state["values"])  # and the episode count, which that reset moved on
        self._t, self._over = state["t"], state["over"]
