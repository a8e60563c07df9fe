"""Tests of common/smax.py (SMAX maps behind VecMultiAgentEnv's interface): sizes, masks, wins,
auto-reset, features, seeding, pickling, error messages, and both script families on smax:3m.
Skipped without the optional extra (requirements-smax.txt), except the missing-package error."""

import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import final_returns, run_script
from env_checks import check_agent_id_and_last_action_features, random_actions
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import common
from common.cli import EnvError
from common.envs import make_env
from common.vec_env import make_vec_env

needs_smax = pytest.mark.skipif(
    importlib.util.find_spec("jaxmarl") is None,
    reason="SMAX extra not installed: pip install --no-deps -r requirements-smax.txt",
)
UNIT_FEATURES = 10  # per unit in SMAX's world state: health, x, y, cooldown, 6 unit-type bits
MOVES, STOP = 4, 4  # actions 0-3 move, 4 stops, 5 + k attacks enemy k
MARINE_RANGE = 5.0


def smax(env_id="smax:3m", num_envs=4, seed=0, features=True, **env_kwargs):
    pytest.importorskip("jaxmarl")
    return make_vec_env(
        env_id, num_envs, seed, agent_id_feature=features, last_action_feature=features, env_kwargs=env_kwargs or None
    )


def units(vec, state):
    """(E, units, UNIT_FEATURES) from world states (E, S): allies first, then enemies."""
    n_units = vec.state_dim // (UNIT_FEATURES + 2)
    return state[:, : n_units * UNIT_FEATURES].reshape(len(state), n_units, UNIT_FEATURES)


def focus_fire(vec, state, avail):
    """Every ally shoots the weakest enemy in its range, else moves east (towards them)."""
    enemy_health = units(vec, state)[:, vec.n_agents :, 0]  # (E, enemies)
    in_range = avail[:, :, STOP + 1 :]  # (E, N, enemies)
    target = np.where(in_range, -enemy_health[:, None, :], -np.inf).argmax(-1)
    east = 1
    return np.where(in_range.any(-1), STOP + 1 + target, np.where(avail[:, :, east], east, STOP))


# ---- the interface ----------------------------------------------------------------------------
@needs_smax
@pytest.mark.parametrize(
    "env_id, n_agents, n_actions, obs_dim, state_dim",
    [
        ("smax:3m", 3, 8, 75, 72),
        ("smax:5m_vs_6m", 5, 11, 140, 132),
        ("smax:3s5z_vs_3s6z", 8, 14, 218, 204),
    ],
)
def test_sizes_and_attributes(env_id, n_agents, n_actions, obs_dim, state_dim):
    vec = smax(env_id, num_envs=2)
    assert (
        vec.num_envs,
        vec.n_agents,
        vec.n_actions,
        vec.env_obs_dim,
        vec.state_dim,
        vec.episode_limit,
        vec.has_win,
    ) == (2, n_agents, n_actions, obs_dim, state_dim, 100, True)
    assert vec.obs_layout == [
        ("env_observation", obs_dim),
        ("agent_id_onehot", n_agents),
        ("last_action_onehot", n_actions),
    ]
    assert vec.obs_dim == obs_dim + n_agents + n_actions
    plain = smax(env_id, num_envs=2, features=False)
    assert plain.obs_dim == obs_dim and plain.obs_layout == [("env_observation", obs_dim)]


@needs_smax
def test_every_map_of_jaxmarl_is_an_id():
    from common.smax import smax_maps

    maps = smax_maps()
    assert {"3m", "2s3z", "5m_vs_6m", "3s5z_vs_3s6z"} <= set(maps)
    for name in maps:
        assert smax(f"smax:{name}", num_envs=1).n_agents >= 2


@needs_smax
def test_step_types_and_shapes():
    vec = smax()
    e, n, a = vec.num_envs, vec.n_agents, vec.n_actions
    obs, state, avail = vec.reset()
    assert obs.shape == (e, n, vec.obs_dim) and obs.dtype == np.float32 and obs.flags.writeable
    assert state.shape == (e, vec.state_dim) and state.dtype == np.float32
    assert avail.shape == (e, n, a) and avail.dtype == bool
    obs, state, avail, reward, terminated, truncated, info = vec.step(random_actions(np.random.default_rng(0), avail))
    assert reward.shape == (e,) and reward.dtype == np.float32
    assert terminated.dtype == bool and truncated.dtype == bool and info["win"].dtype == bool
    assert info["episode_return"].dtype == np.float32 and info["episode_length"].dtype == np.int64
    assert info["final_obs"].shape == obs.shape and info["final_state"].shape == state.shape
    assert info["final_avail"].shape == avail.shape


@needs_smax
def test_masks_follow_the_units_alive_and_in_range():
    vec = smax()
    _, state, avail = vec.reset()
    rng = np.random.default_rng(1)
    saw_attack = saw_dead = False
    for _ in range(60):
        _, state, avail, _, _, _, info = vec.step(random_actions(rng, avail))
        # active: the allies alive at the returned step (all of them where a new episode began)
        np.testing.assert_array_equal(info["active"], units(vec, state)[:, : vec.n_agents, 0] > 0)
        final_units, final_avail = units(vec, info["final_state"]), info["final_avail"]
        ally_alive = final_units[:, : vec.n_agents, 0] > 0  # (E, N)
        enemy_alive = final_units[:, vec.n_agents :, 0] > 0
        distance = np.linalg.norm(
            final_units[:, : vec.n_agents, None, 1:3] - final_units[:, None, vec.n_agents :, 1:3], axis=-1
        )
        assert final_avail[:, :, STOP].all()  # stop: always, also for the dead
        np.testing.assert_array_equal(final_avail[:, :, :MOVES], np.repeat(ally_alive[:, :, None], MOVES, -1))
        np.testing.assert_array_equal(
            final_avail[:, :, STOP + 1 :], ally_alive[:, :, None] & enemy_alive[:, None, :] & (distance < MARINE_RANGE)
        )
        saw_attack |= final_avail[:, :, STOP + 1 :].any()
        saw_dead |= (~ally_alive).any()
    assert saw_attack and saw_dead
    with pytest.raises(ValueError, match="unavailable"):  # SMAX would quietly turn it into "stop"
        vec.step(np.where(avail[:, :, STOP + 1], 0, STOP + 1))
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.zeros(vec.n_agents, int))


@needs_smax
def test_focus_fire_wins_and_the_win_flag_matches_the_final_state():
    vec = smax()
    _, state, avail = vec.reset()
    episodes = []  # (win, return, summed rewards)
    summed = np.zeros(vec.num_envs)
    for _ in range(vec.episode_limit):
        _, state, avail, reward, terminated, truncated, info = vec.step(focus_fire(vec, state, avail))
        summed += reward
        final_units = units(vec, info["final_state"])
        allies_dead = (final_units[:, : vec.n_agents, 0] == 0).all(-1)
        enemies_dead = (final_units[:, vec.n_agents :, 0] == 0).all(-1)
        np.testing.assert_array_equal(info["win"], enemies_dead & ~allies_dead)
        np.testing.assert_array_equal(terminated, allies_dead | enemies_dead)
        assert not truncated.any()  # these battles end long before the step limit
        for e in np.flatnonzero(terminated):
            episodes.append((bool(info["win"][e]), info["episode_return"][e], summed[e]))
            assert reward[e] >= 1.0 if info["win"][e] else reward[e] < 1.0  # the won-battle bonus
            summed[e] = 0.0
        if len(episodes) >= 8:
            break
    wins = [win for win, _, _ in episodes]
    assert len(episodes) >= 8 and any(wins), episodes  # deterministic: seed 0 wins most of these
    for win, episode_return, rewards in episodes:
        assert episode_return == pytest.approx(rewards, abs=1e-5)
        assert (episode_return > 1.0) == win  # damage (< 1 in all) plus the bonus


@needs_smax
def test_random_play_rarely_wins():
    vec = smax()
    _, _, avail = vec.reset()
    rng = np.random.default_rng(0)
    wins = episodes = 0
    for _ in range(200):
        _, _, avail, _, terminated, truncated, info = vec.step(random_actions(rng, avail))
        wins, episodes = wins + info["win"].sum(), episodes + (terminated | truncated).sum()
    assert episodes >= 20 and wins <= episodes // 10


@needs_smax
def test_step_limit_is_truncation_and_auto_reset_reports_the_last_step():
    vec = smax(max_steps=3)
    assert vec.episode_limit == 3
    _, first_state, _ = vec.reset()
    stop = np.full((vec.num_envs, vec.n_agents), STOP)
    d, n = vec.env_obs_dim, vec.n_agents
    for t in range(1, 7):  # two episodes: SMAX alone would end them after 4 steps
        obs, state, avail, reward, terminated, truncated, info = vec.step(stop)
        assert not terminated.any() and truncated.all() == (t % 3 == 0) and truncated.any() == (t % 3 == 0)
        if t % 3 == 0:
            np.testing.assert_array_equal(info["episode_length"], 3)
            np.testing.assert_array_equal(info["episode_return"], 0.0)  # nobody in range yet
            # the returned arrays start new episodes; info keeps the last step of the old ones
            assert not np.array_equal(info["final_state"], state)
            assert (units(vec, state)[:, :, 0] == 1).all()  # every unit back at full health
            assert not np.array_equal(state, first_state)  # new starting positions: the RNG went on
            np.testing.assert_array_equal(info["final_obs"][:, :, d + n :], np.eye(vec.n_actions)[stop])
            assert not obs[:, :, d + n :].any()
        else:
            np.testing.assert_array_equal(info["episode_length"], 0)


@needs_smax
def test_agent_id_and_last_action_features_as_VecMultiAgentEnv_builds_them():
    check_agent_id_and_last_action_features(smax(), steps=80)


@needs_smax
def test_env_i_is_seeded_with_seed_plus_i_and_steps_on_its_own():
    a, b, again = smax(seed=0), smax(seed=1), smax(seed=0)
    obs_a, _, avail_a = a.reset()
    obs_b, _, avail_b = b.reset()
    np.testing.assert_array_equal(obs_a, again.reset()[0])
    np.testing.assert_array_equal(obs_a[1], obs_b[0])  # env 1 of seed 0 is env 0 of seed 1
    assert not np.array_equal(obs_a[0], obs_a[1])
    rng = np.random.default_rng(0)
    for _ in range(30):  # the same actions in those two envs: the same trajectories
        actions_a = random_actions(rng, avail_a)
        actions_b = random_actions(rng, avail_b)
        actions_b[0] = actions_a[1]
        obs_a, state_a, avail_a, reward_a, *_ = a.step(actions_a)
        obs_b, state_b, avail_b, reward_b, *_ = b.step(actions_b)
        np.testing.assert_array_equal(obs_a[1], obs_b[0])
        np.testing.assert_array_equal(state_a[1], state_b[0])
        assert reward_a[1] == reward_b[0]
    assert not np.array_equal(obs_a[0], a.reset()[0][0])  # a later reset continues the RNG


@needs_smax
def test_pickled_env_continues_exactly():
    vec = smax()
    _, _, avail = vec.reset()
    rng = np.random.default_rng(0)
    for _ in range(5):
        avail = vec.step(random_actions(rng, avail))[2]
    copy = pickle.loads(pickle.dumps(vec))
    for _ in range(20):
        actions = random_actions(rng, avail)
        out, out_copy = vec.step(actions), copy.step(actions)
        for x, y in zip(out[:6], out_copy[:6]):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(out[6]["episode_return"], out_copy[6]["episode_return"])
        avail = out[2]


# ---- errors ----------------------------------------------------------------------------------
@needs_smax
@pytest.mark.parametrize(
    "env_id, words",
    [
        ("smax:corridor", ["no map 'corridor'", "5m_vs_6m", "3s5z_vs_3s6z", "available"]),
        ("smax:5m_vs_7m", ["did you mean 5m_vs_6m?"]),
    ],
)
def test_unknown_map_lists_the_maps(env_id, words):
    with pytest.raises(EnvError) as error:
        smax(env_id)
    for word in words:
        assert word in str(error.value)
    assert "\n" not in str(error.value)


def test_single_env_make_env_points_to_make_vec_env():
    with pytest.raises(EnvError, match="make_vec_env"):
        make_env("smax:3m")  # not "pip install smax", an unrelated package


@pytest.mark.parametrize("missing", ["jax", "jaxmarl"])
def test_missing_extra_is_one_line_saying_what_to_install(monkeypatch, missing):
    named = missing if importlib.util.find_spec("jax") else "jax"  # without the extra, jax is missed first
    for name in [name for name in sys.modules if name.startswith(missing + ".")] + [missing]:
        monkeypatch.setitem(sys.modules, name, None)  # None: `import name` fails, cached or not
    # make_vec_env imports common.smax anew; setting it first makes the undo restore what was there
    monkeypatch.setitem(sys.modules, "common.smax", None)
    monkeypatch.delitem(sys.modules, "common.smax")
    monkeypatch.setattr(common, "smax", None, raising=False)
    monkeypatch.delattr(common, "smax")
    with pytest.raises(EnvError) as error:
        make_vec_env("smax:3m", 2, 0)
    message = str(error.value)
    assert f"'{named}' is not installed" in message and "pip install --no-deps -r requirements-smax.txt" in message
    assert "\n" not in message


# ---- the scripts, unchanged, on smax:3m --------------------------------------------------------
WIN_TAGS = {"charts/win_rate", "eval/centralized_win_rate", "eval/decentralized_win_rate"}
SMAX_TINY = {
    "cadp_qmix": [
        "--total-timesteps",
        "600",
        "--num-envs",
        "2",
        "--eval-episodes",
        "2",
        "--eval-interval",
        "300",
        "--batch-size",
        "2",
        "--buffer-size",
        "16",
        "--hidden-dim",
        "16",
    ],
    "cadp_mappo": [
        "--total-timesteps",
        "640",
        "--num-envs",
        "4",
        "--num-steps",
        "20",
        "--eval-episodes",
        "2",
        "--eval-interval",
        "320",
        "--hidden-dim",
        "16",
    ],
}
SMAX_TINY["cadp_qplex"] = SMAX_TINY["cadp_qmix"]


@needs_smax
@pytest.mark.parametrize("script", list(SMAX_TINY))
def test_script_trains_on_smax_and_logs_win_rates(script, tmp_path: Path):
    result = run_script(script, tmp_path, "--env-id", "smax:3m", *SMAX_TINY[script])
    final_returns(result)
    (run_dir,) = (tmp_path / "runs").iterdir()
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    missing = WIN_TAGS - set(accumulator.Tags()["scalars"])
    assert not missing, f"tags not written: {missing}"
    for mode in ("centralized", "decentralized"):
        rates = [event.value for event in accumulator.Scalars(f"eval/{mode}_win_rate")]
        assert len(rates) >= 2 and all(0.0 <= rate <= 1.0 for rate in rates)


@needs_smax
def test_corridor_armies_6z_vs_24zg():
    """SMAC corridor's armies on open ground: 6 zealots (ours) against 24 zerglings."""
    vec = smax("smax:6z_vs_24zg", num_envs=2, features=False)
    assert (vec.n_agents, vec.n_actions) == (6, 5 + 24)
    _, state, avail = vec.reset()
    unit_types = state[:, -30:]  # world state ends with each unit's type id
    np.testing.assert_array_equal(unit_types, [[3] * 6 + [4] * 24] * 2)  # 3 zealot, 4 zergling
    rng, ended = np.random.default_rng(0), 0
    for _ in range(vec.episode_limit):
        _, _, avail, _, terminated, truncated, _ = vec.step(random_actions(rng, avail))
        ended += int((terminated | truncated).sum())
    assert ended >= 2  # every episode ends within the step limit
    assert "6z_vs_24zg" in common.smax.smax_maps()
