"""Tests of common/envs.py, common/vec_env.py's VecMultiAgentEnv and common/workers.py: shapes, time limits vs
terminations, action masks, padding, auto-reset bookkeeping, observation features, matrix games, worker processes,
snapshots (old checkpoints' included) and error messages."""

import importlib.util
import os
import pickle
import signal
import sys
import types
import zlib

import numpy as np
import pytest
from env_checks import check_agent_id_and_last_action_features, random_actions
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from common.cli import EnvError
from common.envs import MATRIX_GAMES, make_env
from common.vec_env import VecMultiAgentEnv

LBF = "lbforaging:Foraging-8x8-2p-3f-v3"


def check_step_types(env, out):
    obs, state, avail, reward, terminated, truncated, info = out
    assert obs.shape == (env.n_agents, env.obs_dim) and obs.dtype == np.float32
    assert state.shape == (env.state_dim,) and state.dtype == np.float32
    assert avail.shape == (env.n_agents, env.n_actions) and avail.dtype == bool
    assert avail[:, 0].all()  # action 0 (no-op) is always available in these suites
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    assert isinstance(info, dict)


@pytest.mark.parametrize(
    "env_id, n_agents, obs_dim, state_dim, n_actions, limit, steps",
    [
        (LBF, 2, 15, 30, 6, 50, 60),
        ("rware:rware-tiny-2ag-v2", 2, 71, 142, 5, 500, 20),
        ("mpe2:simple_spread_v3", 3, 18, 54, 5, 25, 30),
        ("pettingzoo.sisl:pursuit_v5", 8, 147, 16 * 16 * 3, 5, 500, 3),  # slow env: few steps
        ("matrix:climbing", 2, 1, 1, 3, 1, 3),
        ("matrix:two_step", 2, 3, 3, 2, 2, 5),
    ],
)
def test_reset_step_shapes(env_id, n_agents, obs_dim, state_dim, n_actions, limit, steps):
    env = make_env(env_id, seed=0)
    assert (env.n_agents, env.obs_dim, env.state_dim, env.n_actions, env.episode_limit) == (
        n_agents,
        obs_dim,
        state_dim,
        n_actions,
        limit,
    )
    assert env.has_win is False
    rng = np.random.default_rng(0)
    obs, state, avail = env.reset()
    check_step_types(env, (obs, state, avail, 0.0, False, False, {}))
    for _ in range(steps):
        out = env.step(random_actions(rng, avail))
        check_step_types(env, out)
        avail = out[2]
        if out[4] or out[5]:
            obs, state, avail = env.reset()
    env.close()


@pytest.mark.parametrize("env_id", [LBF, "rware:rware-tiny-2ag-v2", "mpe2:simple_spread_v3"])
def test_reset_with_a_seed_repeats_after_an_episode(env_id):
    env = make_env(env_id)
    first = env.reset(seed=7)[0]
    env.step(np.zeros(env.n_agents, int))  # LBF: the players stay on their start cells
    np.testing.assert_array_equal(env.reset(seed=7)[0], first)


def test_lbf_next_start_does_not_depend_on_where_the_last_episode_ended():
    env_id = "lbforaging:Foraging-5x5-2p-1f-v3"
    probe, a, b = (make_env(env_id, seed=3) for _ in range(3))
    for env in (probe, a, b):
        env.reset()
    expected = probe.reset()[0]
    # a's players stand on the very cells the next start uses (where LBF itself would
    # reject them), b's players where they started
    for player, player_probe in zip(a.unwrapped.players, probe.unwrapped.players):
        player.position = player_probe.position
    np.testing.assert_array_equal(a.reset()[0], expected)
    np.testing.assert_array_equal(b.reset()[0], expected)


def test_seed_makes_reset_reproducible_and_later_resets_differ():
    a, b = make_env(LBF, seed=3), make_env(LBF, seed=3)
    first = a.reset()[0]
    np.testing.assert_array_equal(first, b.reset()[0])
    # later resets continue the RNG instead of replaying the seeded episode
    assert any(not np.array_equal(first, a.reset()[0]) for _ in range(5))


# ---- LBF: time limit vs termination, action mask ---------------------------------------
def test_lbf_noop_episode_is_truncated_at_the_limit():
    env = make_env(LBF, seed=0)
    env.reset()
    for t in range(1, 51):
        *_, terminated, truncated, _ = env.step(np.zeros(2, int))
        assert not terminated
        assert truncated == (t == 50)


def test_lbf_random_episodes_end_by_limit_as_truncated_and_early_as_terminated():
    env = make_env("lbforaging:Foraging-5x5-2p-1f-v3", seed=1)
    rng = np.random.default_rng(1)
    early_ends = 0
    for _ in range(30):
        _, _, avail = env.reset()
        for t in range(1, 51):  # noqa: B007 (t is read after the loop)
            _, _, avail, _, terminated, truncated, _ = env.step(random_actions(rng, avail))
            if terminated or truncated:
                break
        food_left = env.unwrapped.field.sum() > 0
        assert terminated != truncated
        assert truncated == food_left  # ran out of time with food left
        if t < 50:
            assert terminated
            early_ends += 1
    assert early_ends > 0  # the random policy does eat all food sometimes on 5x5


def stage_lbf(env, food_at, positions, current_step=0, food_level=1):
    """Put one food and the (level-1) players where a test wants them."""
    u = env.unwrapped
    u.field[:] = 0
    u.field[food_at] = food_level
    u._food_spawned = food_level
    for player, pos in zip(u.players, positions):
        player.position, player.level = pos, 1
    u.current_step = current_step
    u._gen_valid_moves()


@pytest.mark.parametrize("current_step", [0, 49])  # 49: eats the last food on the last step
def test_lbf_eating_all_food_is_terminated(current_step):
    env = make_env("lbforaging:Foraging-5x5-2p-1f-v3", seed=0)
    env.reset()
    stage_lbf(env, (2, 2), [(2, 1), (4, 4)], current_step)
    _, _, _, reward, terminated, truncated, _ = env.step(np.array([5, 0]))  # agent 0 loads
    assert reward > 0 and terminated and not truncated


def test_lbf_team_reward_is_the_sum_of_the_agents_rewards():
    env = make_env("lbforaging:Foraging-5x5-2p-1f-v3", seed=0)
    env.reset()
    stage_lbf(env, (2, 2), [(2, 1), (2, 3)], food_level=2)  # needs both level-1 agents
    _, _, _, reward, terminated, _, _ = env.step(np.array([5, 5]))
    assert [p.reward for p in env.unwrapped.players] == [0.5, 0.5]
    assert reward == 1.0 and terminated


def test_lbf_agent_in_corner_cannot_move_into_walls():
    env = make_env("lbforaging:Foraging-5x5-2p-1f-v3", seed=0)
    env.reset()
    stage_lbf(env, (2, 2), [(0, 0), (2, 3)])
    avail = env.step(np.zeros(2, int))[2]  # no-ops: the mask is of the state after the step
    np.testing.assert_array_equal(avail[0], [1, 0, 1, 0, 1, 0])  # none, south, east only
    np.testing.assert_array_equal(avail[1], [1, 1, 1, 0, 1, 1])  # food to the west: load


def test_lbf_avail_matches_the_envs_own_valid_actions():
    from lbforaging.foraging.environment import Action

    env = make_env("lbforaging:Foraging-6x6-3p-3f-v3", seed=2)
    rng = np.random.default_rng(2)
    _, _, avail = env.reset()
    u = env.unwrapped
    for _ in range(300):
        for i, player in enumerate(u.players):
            for a in range(6):
                assert avail[i, a] == u._is_valid_action(player, Action(a))
        _, _, avail, _, terminated, truncated, _ = env.step(rng.integers(0, 6, 3))  # invalid ones too
        if terminated or truncated:
            _, _, avail = env.reset()


# ---- RWARE --------------------------------------------------------------------------------
def test_rware_time_limit_is_truncation():
    env = make_env("rware:rware-tiny-2ag-v2", seed=0)
    _, _, avail = env.reset()
    assert avail.all()
    for t in range(1, 501):  # no-ops never deliver: a plain 500-step episode
        *_, terminated, truncated, _ = env.step(np.zeros(2, int))
        assert not terminated and truncated == (t == 500)


# ---- PettingZoo ---------------------------------------------------------------------------
def test_speaker_listener_is_padded():
    env = make_env("mpe2:simple_speaker_listener_v4", seed=0)
    assert env.agents == ["speaker_0", "listener_0"]
    assert (env.obs_dim, env.n_actions) == (11, 5)
    rng = np.random.default_rng(0)
    obs, _, avail = env.reset()
    for _ in range(5):
        assert not obs[0, 3:].any() and obs[0, :3].any()  # speaker sees 3 numbers, rest padding
        np.testing.assert_array_equal(avail, [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
        obs, _, avail, *_ = env.step(random_actions(rng, avail))


def test_simple_spread_state_is_the_envs_state():
    env = make_env("mpe2:simple_spread_v3", seed=0)
    obs, state, _ = env.reset()
    np.testing.assert_allclose(state, env.env.state())
    obs, state, *_ = env.step(np.array([1, 2, 3]))
    np.testing.assert_allclose(state, env.env.state())
    np.testing.assert_allclose(state, obs.reshape(-1))  # mpe2's state: the agents' observations


class DyingEnv:
    """A 3-agent PettingZoo-style parallel env: agent b dies after step 2, the rest after 4."""

    possible_agents = ["a", "b", "c"]
    max_cycles = 10

    def observation_space(self, agent):
        return spaces.Box(-1, 1, (2,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(3)

    @property
    def unwrapped(self):
        return self

    def reset(self, seed=None, options=None):
        self.t, self.agents = 0, list(self.possible_agents)
        return {a: np.full(2, 0.5, np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents)
        self.t += 1
        obs = {a: np.full(2, self.t / 10, np.float32) for a in self.agents}
        terms = {a: self.t >= 4 or (a == "b" and self.t == 2) for a in self.agents}
        truncs = {a: False for a in self.agents}
        rewards = {a: 1.0 for a in self.agents}
        self.agents = [a for a in self.agents if not terms[a]]
        return obs, rewards, terms, truncs, {a: {} for a in obs}

    def close(self):
        pass


@pytest.fixture
def fake_pettingzoo(monkeypatch):
    """A module `fakezoo` with two PettingZoo-style envs: dying_v0 and continuous_v0."""
    package = types.ModuleType("fakezoo")
    package.__path__ = []
    dying = types.ModuleType("fakezoo.dying_v0")
    dying.parallel_env = DyingEnv
    continuous = types.ModuleType("fakezoo.continuous_v0")

    class ContinuousEnv(DyingEnv):
        def action_space(self, agent):
            return spaces.Box(-1, 1, (2,), np.float32)

    continuous.parallel_env = ContinuousEnv
    for module in (package, dying, continuous):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    package.dying_v0, package.continuous_v0 = dying, continuous


def test_dead_agent_gets_zero_obs_and_only_noop(fake_pettingzoo):
    env = make_env("fakezoo:dying_v0")
    assert env.episode_limit == 10 and env.state_dim == 6
    obs, state, avail = env.reset()
    assert avail.all()
    obs, state, avail, reward, terminated, truncated, _ = env.step(np.array([1, 2, 0]))
    assert reward == 3.0 and not (terminated or truncated)
    obs, state, avail, reward, terminated, truncated, info = env.step(np.array([1, 2, 0]))  # b dies
    assert not obs[1].any() and obs[0].any() and not state[2:4].any()
    np.testing.assert_array_equal(avail[1], [1, 0, 0])
    assert avail[[0, 2]].all()
    np.testing.assert_array_equal(info["active"], [True, False, True])  # MAPPO's active mask
    obs, _, avail, reward, terminated, truncated, _ = env.step(np.array([1, 2, 0]))  # b's action ignored
    assert reward == 2.0 and not obs[1].any() and not terminated
    *_, terminated, truncated, _ = env.step(np.array([1, 0, 0]))
    assert terminated and not truncated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(3, int))


def test_vec_active_marks_the_dead_until_the_reset(fake_pettingzoo):
    vec = VecMultiAgentEnv("fakezoo:dying_v0", 2, seed=0)
    vec.reset()
    actives = [vec.step(np.zeros((2, 3), int))[6]["active"] for _ in range(5)]
    alive, b_dead = np.ones((2, 3), bool), np.array([[True, False, True]] * 2)
    for got, expected in zip(actives, [alive, b_dead, b_dead, alive, alive]):  # step 4 ends it: a new episode
        np.testing.assert_array_equal(got, expected)
    lbf = VecMultiAgentEnv("lbforaging:Foraging-5x5-2p-1f-v3", 2, seed=0)
    _, _, avail = lbf.reset()
    assert lbf.step(random_actions(np.random.default_rng(0), avail))[6]["active"].all()  # no deaths in LBF


def test_vec_pettingzoo_auto_resets_at_max_cycles():
    vec = VecMultiAgentEnv("mpe2:simple_spread_v3", 2, seed=0)
    rng = np.random.default_rng(0)
    _, _, avail = vec.reset()
    for t in range(1, 61):  # 2.4 episodes: stepping an emptied agent list would raise
        obs, state, avail, reward, terminated, truncated, info = vec.step(random_actions(rng, avail))
        assert not terminated.any()
        assert truncated.all() == (t % 25 == 0) and truncated.any() == (t % 25 == 0)
        np.testing.assert_array_equal(info["episode_length"], 25 if t % 25 == 0 else 0)
        if t % 25 == 0:  # the final obs is the last step, the returned obs the new episode
            assert not np.allclose(info["final_obs"], obs)
            np.testing.assert_allclose(state, [vec.envs[e].env.state() for e in range(2)])


def test_env_kwargs_reach_the_constructor():
    vec = VecMultiAgentEnv("mpe2:simple_spread_v3", 1, seed=0, env_kwargs={"N": 4, "max_cycles": 3})
    assert (vec.n_agents, vec.episode_limit) == (4, 3)
    vec.reset()
    truncated = [vec.step(np.zeros((1, 4), int))[5][0] for _ in range(3)]
    assert truncated == [False, False, True]


# ---- VecMultiAgentEnv -----------------------------------------------------------------------
def test_vec_auto_reset_matches_single_envs_run_alongside():
    """Replays every env with the same seed and actions: obs, final obs, returns, lengths."""
    num_envs, seed = 3, 5
    vec = VecMultiAgentEnv("lbforaging:Foraging-5x5-2p-1f-v3", num_envs, seed)
    singles = [make_env("lbforaging:Foraging-5x5-2p-1f-v3") for _ in range(num_envs)]
    obs, state, avail = vec.reset()
    for e, env in enumerate(singles):
        o, s, a = env.reset(seed=seed + e)
        np.testing.assert_array_equal(obs[e], o)
    returns, lengths = np.zeros(num_envs), np.zeros(num_envs, int)
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(300):
        actions = random_actions(rng, avail)
        obs, state, avail, reward, terminated, truncated, info = vec.step(actions)
        assert reward.dtype == np.float32 and terminated.dtype == bool and truncated.dtype == bool
        assert info["episode_return"].dtype == np.float32 and info["episode_length"].dtype == np.int64
        for e, env in enumerate(singles):
            o, s, a, r, te, tr, _ = env.step(actions[e])
            returns[e] += r
            lengths[e] += 1
            assert (te, tr, np.float32(r)) == (terminated[e], truncated[e], reward[e])
            np.testing.assert_array_equal(info["final_obs"][e], o)
            np.testing.assert_array_equal(info["final_state"][e], s)
            np.testing.assert_array_equal(info["final_avail"][e], a)
            if te or tr:
                assert info["episode_return"][e] == pytest.approx(returns[e], abs=1e-6)
                assert info["episode_length"][e] == lengths[e]
                returns[e], lengths[e] = 0, 0
                o, s, a = env.reset()
                finished += 1
            else:
                assert info["episode_return"][e] == 0 and info["episode_length"][e] == 0
            np.testing.assert_array_equal(obs[e], o)
            np.testing.assert_array_equal(state[e], s)
            np.testing.assert_array_equal(avail[e], a)
    assert finished >= 6


def _trace(vec, rng, steps):
    obs, state, avail = vec.reset()
    out = [obs, state, avail]
    for _ in range(steps):
        obs, state, avail, reward, terminated, truncated, info = vec.step(random_actions(rng, avail))
        out += [obs, state, avail, reward, terminated, truncated, info["final_obs"], info["episode_return"]]
    return out


def test_envs_in_worker_processes_step_as_in_one():
    """common/workers.py: envs 1.. in 2 worker processes give the same arrays, reseeded resets included, and a
    pickled vectorised env (a checkpoint) restarts workers that hold the same envs mid-episode."""
    kwargs = dict(agent_id_feature=True, last_action_feature=True)
    local = VecMultiAgentEnv("lbforaging:Foraging-5x5-2p-1f-v3", 4, 3, **kwargs)
    remote = VecMultiAgentEnv("lbforaging:Foraging-5x5-2p-1f-v3", 4, 3, **kwargs, env_workers=2)
    assert local._workers is None and remote._workers.sizes == [2, 1]
    for vec in (local, remote):
        vec.trace = _trace(vec, np.random.default_rng(0), 120)
        vec.reset(seed=11)  # evaluation's reseeding
        vec.trace += _trace(vec, np.random.default_rng(1), 30)
    assert len(local.trace) == len(remote.trace)
    assert all(np.array_equal(a, b) for a, b in zip(local.trace, remote.trace))
    for process in remote._workers._processes:  # Ctrl-C reaches them too: the trainer, not they, stops on it
        os.kill(process.pid, signal.SIGINT)
    restored = pickle.loads(pickle.dumps(remote))
    rng_a, rng_b = np.random.default_rng(2), np.random.default_rng(2)
    obs_a, *_, avail = remote.step(random_actions(rng_a, remote._avail))
    obs_b, *_ = restored.step(random_actions(rng_b, restored._avail))
    np.testing.assert_array_equal(obs_a, obs_b)
    processes = remote._workers._processes + restored._workers._processes
    for vec in (local, remote, restored):
        vec.close()
    assert all(process.poll() is not None for process in processes)  # the workers have ended


def test_vec_seeds_env_i_with_seed_plus_i_once():
    a, b = VecMultiAgentEnv(LBF, 2, seed=7), VecMultiAgentEnv(LBF, 2, seed=7)
    first = a.reset()[0]
    np.testing.assert_array_equal(first, b.reset()[0])
    np.testing.assert_array_equal(first[1], make_env(LBF, seed=8).reset()[0])
    assert not np.array_equal(first[0], first[1])
    assert any(not np.array_equal(first, a.reset()[0]) for _ in range(5))  # no reseeding


def test_vec_agent_id_and_last_action_features():
    vec = VecMultiAgentEnv(LBF, 4, seed=0, agent_id_feature=True, last_action_feature=True)
    n = vec.n_agents
    assert vec.obs_layout == [("env_observation", 15), ("agent_id_onehot", 2), ("last_action_onehot", 6)]
    assert vec.obs_dim == 15 + 2 + 6
    assert vec.reset()[0].shape == (4, n, vec.obs_dim)
    check_agent_id_and_last_action_features(vec, steps=120)


def test_vec_rejects_unavailable_and_misshaped_actions():
    vec = VecMultiAgentEnv("mpe2:simple_speaker_listener_v4", 2, seed=0)
    with pytest.raises(RuntimeError):
        vec.step(np.zeros((2, 2), int))
    vec.reset()
    with pytest.raises(ValueError, match="unavailable"):
        vec.step(np.array([[4, 0], [0, 0]]))  # the speaker has 3 actions
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.zeros(2, int))


def test_vec_dying_agents_auto_reset(fake_pettingzoo):
    vec = VecMultiAgentEnv("fakezoo:dying_v0", 2, seed=0, last_action_feature=True)
    _, _, avail = vec.reset()
    for t in range(1, 9):
        obs, _, avail, _, terminated, _, info = vec.step(np.zeros((2, 3), int))
        assert terminated.all() == (t % 4 == 0)
        if t % 4 == 0:
            np.testing.assert_array_equal(info["episode_return"], 3 + 3 + 2 + 2)
            assert avail.all()  # everybody is back after the reset


# ---- Matrix games -----------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["climbing", "penalty"]), a0=st.integers(0, 2), a1=st.integers(0, 2))
def test_one_step_matrix_game_pays_the_table(name, a0, a1):
    env = make_env(f"matrix:{name}")
    obs, state, avail = env.reset()
    np.testing.assert_array_equal(obs, [[1.0], [1.0]])
    _, _, _, reward, terminated, truncated, _ = env.step(np.array([a0, a1]))
    assert reward == MATRIX_GAMES[name].payoffs[0][a0, a1] and terminated and not truncated


def test_matrix_payoffs_and_optima():
    assert MATRIX_GAMES["climbing"].payoffs[0].tolist() == [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]
    assert MATRIX_GAMES["penalty"].payoffs[0].tolist() == [[10, 0, -100], [0, 2, 0], [-100, 0, 10]]
    assert [MATRIX_GAMES[g].optimal_return for g in ("climbing", "penalty", "two_step")] == [11, 10, 8]


@settings(max_examples=40, deadline=None)
@given(first=st.tuples(st.integers(0, 1), st.integers(0, 1)), second=st.tuples(st.integers(0, 1), st.integers(0, 1)))
def test_two_step_game_transitions(first, second):
    env = make_env("matrix:two_step")
    obs, state, _ = env.reset()
    np.testing.assert_array_equal(obs, [[1, 0, 0]] * 2)
    obs, state, _, reward, terminated, truncated, _ = env.step(np.array(first))
    assert reward == 0 and not terminated and not truncated
    expected = [0, 1, 0] if first[0] == 0 else [0, 0, 1]  # agent 0 picks 2A or 2B
    np.testing.assert_array_equal(obs, [expected] * 2)
    np.testing.assert_array_equal(state, expected)
    _, _, _, reward, terminated, truncated, _ = env.step(np.array(second))
    assert reward == (7 if first[0] == 0 else [[0, 1], [1, 8]][second[0]][second[1]])
    assert terminated and not truncated


# ---- Errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "env_id, words",
    [
        ("Foraging-8x8-2p-3f-v3", ["module:Id", "lbforaging:", "rware:", "mpe2:", "matrix:"]),
        ("no_such_module_xyz:Foo-v0", ["no module named 'no_such_module_xyz'", "lbforaging, rware, mpe2"]),
        ("lbforaging:Foraging-8x8-2p-3f-v9", ["Foraging-8x8-2p-3f-v3", "ids exist"]),
        ("rware:rware-tiny-2ag-v1", ["rware-tiny-2ag-v2"]),
        ("pettingzoo.sisl:pursuit_v4", ["pursuit_v5", "available"]),
        ("mpe2:simple_sprad_v3", ["simple_spread_v3", "simple_speaker_listener_v4"]),
        ("gymnasium:CartPole-v1", ["single-agent", "Tuple"]),
        ("rware:rware-tiny-1ag-v2", ["1 agent", ">= 2 agents"]),
        ("mpe2:simple_v3", ["1 agent", ">= 2 agents"]),
        ("matrix:prisoners", ["climbing", "penalty", "two_step"]),
        ("pettingzoo.mpe:simple_spread_v3", ["pip install mpe2"]),
    ],
)
def test_errors_are_envErrors_that_say_what_to_do(env_id, words):
    with pytest.raises(EnvError) as error:
        make_env(env_id)
    for word in words:
        assert word in str(error.value)
    assert isinstance(error.value, ValueError) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "env_id, closest",
    [
        ("lbforagin:Foraging-8x8-2p-3f-v3", "did you mean lbforaging?"),
        ("rwar:rware-tiny-2ag-v2", "did you mean rware?"),
        ("mpe:simple_spread_v3", "did you mean mpe2?"),
        ("pettingzo.sisl:pursuit_v5", "did you mean pettingzoo?"),
        ("pettingzoo.sisll:pursuit_v5", "did you mean pettingzoo.sisl?"),
    ],
)
def test_a_mistyped_env_module_names_the_closest_known_one_and_no_package_to_install(env_id, closest):
    """`pip install <what was typed>` would install whatever package owns a misspelt name."""
    with pytest.raises(EnvError) as error:
        make_env(env_id)
    assert closest in str(error.value) and "pip install" not in str(error.value), error.value


@pytest.mark.parametrize("module, hint", [("rware", "pip install rware"), ("lbforaging", "pip install lbforaging")])
def test_a_known_env_module_that_is_not_installed_says_how_to_install_it(module, hint, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # its import now fails as if it were not installed
    with pytest.raises(EnvError, match=f"module '{module}' is not installed; {hint}$"):
        make_env(f"{module}:Some-v0")


def test_continuous_actions_are_rejected(fake_pettingzoo):
    with pytest.raises(EnvError, match="continuous actions are not supported"):
        make_env("fakezoo:continuous_v0")


@pytest.mark.skipif(importlib.util.find_spec("pymunk") is not None, reason="pymunk is installed here")
def test_missing_env_dependency_says_what_to_install():
    with pytest.raises(EnvError, match=r'pymunk.*pip install "pettingzoo\[butterfly\]"'):
        make_env("pettingzoo.butterfly:pistonball_v6")


@pytest.mark.parametrize(
    "env_id", [LBF, "rware:rware-tiny-2ag-v2", "mpe2:simple_spread_v3", "pettingzoo.sisl:pursuit_v5"]
)
def test_a_snapshot_mid_episode_continues_that_very_episode(env_id):
    """What a checkpoint relies on: the envs pickled mid-episode (mpe2's and sisl's EzPickle envs by their
    attributes, not by their constructor arguments) step on exactly as the originals do, from the packed
    snapshot a checkpoint stores and from the plain pickle that older checkpoints hold."""
    from common.checkpoint import packed_snapshot, snapshot, unpack_snapshot

    vec = VecMultiAgentEnv(env_id, 2, seed=3, agent_id_feature=True, last_action_feature=True)
    obs, _, avail = vec.reset()
    rng = np.random.default_rng(0)
    for _ in range(7):
        obs, _, avail, *_ = vec.step(random_actions(rng, avail))
    plain, packed = snapshot(vec, env_id), packed_snapshot(vec, env_id)
    assert len(packed) < len(plain)
    copies = [unpack_snapshot(packed), unpack_snapshot(plain)]
    for _ in range(40):  # past an episode end where the episode limit is short
        actions = random_actions(rng, avail)
        original = vec.step(actions)
        for copy in copies:
            for a, b in zip(original[:6], copy.step(actions)[:6]):
                np.testing.assert_array_equal(a, b)
        avail = original[2]
    for env in [vec, *copies]:
        env.close()


def test_a_snapshot_that_names_the_old_module_of_VecMultiAgentEnv_still_loads_and_continues(monkeypatch):
    """Checkpoints written while VecMultiAgentEnv lived in common/envs.py name it `common.envs.VecMultiAgentEnv`;
    unpack_snapshot maps that name to common/vec_env.py's class, and the episode goes on."""
    import common.envs
    from common.checkpoint import packed_snapshot, unpack_snapshot

    vec = VecMultiAgentEnv(LBF, 2, seed=3, last_action_feature=True)
    obs, _, avail = vec.reset()
    rng = np.random.default_rng(0)
    for _ in range(7):
        obs, _, avail, *_ = vec.step(random_actions(rng, avail))
    with monkeypatch.context() as old_layout:  # pickled as the code before the move pickled it
        old_layout.setattr(VecMultiAgentEnv, "__module__", "common.envs")
        old_layout.setattr(common.envs, "VecMultiAgentEnv", VecMultiAgentEnv, raising=False)
        packed = packed_snapshot(vec, LBF)
    pickled = zlib.decompress(packed)
    assert b"common.envs" in pickled and b"common.vec_env" not in pickled
    with pytest.raises(AttributeError, match="VecMultiAgentEnv"):
        pickle.loads(pickled)  # the old name alone no longer resolves
    restored = unpack_snapshot(packed)
    assert type(restored) is VecMultiAgentEnv
    for _ in range(60):  # past an episode end (LBF's limit is 50 steps)
        actions = random_actions(rng, avail)
        original = vec.step(actions)
        for a, b in zip(original[:6], restored.step(actions)[:6]):
            np.testing.assert_array_equal(a, b)
        avail = original[2]
    vec.close()
    restored.close()


def test_the_modules_of_common_import_each_other_without_a_cycle():
    """Every `common.*` import in common/, at the top of a module or inside a function, points one way: the env
    layer reads top down (vec_env -> workers, smax -> envs -> gfootball -> cli), and no module waits on one that
    waits on it."""
    import ast
    from pathlib import Path

    common_dir = Path(__file__).resolve().parent.parent / "common"
    imports = {}
    for path in common_dir.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("common."):
                names.add(node.module.split(".")[1])
            elif isinstance(node, ast.ImportFrom) and node.module == "common":
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("common."))
        imports[path.stem] = names - {path.stem}
    assert {"envs", "workers"} <= imports["vec_env"] and "smax" in imports["vec_env"]
    assert imports["envs"] & {"vec_env", "workers", "smax"} == set()

    def reaches(start, target, seen=()):
        return any(n == target or (n not in seen and reaches(n, target, (*seen, n))) for n in imports.get(start, ()))

    cycles = [name for name in imports if reaches(name, name)]
    assert not cycles, {name: sorted(imports[name]) for name in cycles}
