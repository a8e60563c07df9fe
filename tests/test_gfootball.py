"""Google Research Football (the optional extra, `bash install_grf.sh`; CI installs it): the adapter's arrays,
its episode ends and win flag, the CADP release's settings, seeding and exact pickling, the worker processes,
and a short training run of every script on the release's 3-vs-1 scenario."""

import pickle

import numpy as np
import pytest
from conftest import SCRIPTS, TINY, final_returns, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common import gfootball
from common.cli import EnvError
from common.envs import make_env
from common.vec_env import VecMultiAgentEnv, make_vec_env

needs_grf = pytest.mark.skipif(gfootball._MISSING is not None, reason="the GRF extra is not installed (install_grf.sh)")
THREE_VS_ONE = "gfootball:academy_3_vs_1_with_keeper"


def test_missing_extra_is_one_line(monkeypatch):
    monkeypatch.setattr(gfootball, "_MISSING", "gfootball")
    with pytest.raises(EnvError, match=r"gfootball:academy_3_vs_1_with_keeper needs .*install_grf\.sh"):
        make_env(THREE_VS_ONE)


@needs_grf
def test_unknown_scenario_and_reward():
    with pytest.raises(EnvError, match="did you mean academy_3_vs_1_with_keeper"):
        make_env("gfootball:academy_3_vs_1")
    with pytest.raises(EnvError, match="reward must be one of"):
        make_env(THREE_VS_ONE, reward="goals")


@needs_grf
@pytest.mark.parametrize(
    "scenario, agents, limit, reward, half_court",
    [
        ("academy_3_vs_1_with_keeper", 3, 150, "release", True),  # the CADP release's settings
        ("academy_counterattack_easy", 4, 150, "release", True),
        ("academy_empty_goal_close", 2, 400, "scoring", False),  # 1 outfield player: the keeper plays too
    ],
)
def test_arrays_and_defaults(scenario, agents, limit, reward, half_court):
    env = make_env(f"gfootball:{scenario}", seed=0)
    assert (env.n_agents, env.episode_limit, env.reward_kind, env.half_court_end) == (agents, limit, reward, half_court)
    obs, state, avail = env.reset()
    assert obs.shape == (agents, 115) and obs.dtype == np.float32
    assert state.shape == (agents * 115,) and np.array_equal(state, obs.reshape(-1))
    assert avail.shape == (agents, 19) and avail.all()
    # simple115v2 ends with the controlled player's one-hot (11) and the game mode (7): one player each
    active = obs[:, 97:108]
    assert np.array_equal(active.sum(axis=1), np.ones(agents)) and len({int(a.argmax()) for a in active}) == agents
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    env.close()


@needs_grf
def test_goal_is_a_win_with_the_release_reward():
    env = make_env("gfootball:academy_empty_goal_close", reward="release")
    env.reset(seed=0)
    for t in range(30):  # run at the empty goal, then shoot
        *_, reward, terminated, truncated, info = env.step([5, 5] if t < 3 else [12, 12])
        if terminated or truncated:
            break
    assert (reward, terminated, truncated, info["win"]) == (100.0, True, False, True)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step([0, 0])


@needs_grf
def test_episode_ends():
    # the release's half-court rule: running back into our half ends the attack, a loss (-1), not a time limit
    env = make_env(THREE_VS_ONE)
    env.reset(seed=0)
    for _ in range(150):
        *_, reward, terminated, truncated, info = env.step([1, 1, 1])  # all run left
        if terminated or truncated:
            break
    raw = env.env.unwrapped.observation()[0]
    assert (terminated, truncated, reward, info["win"]) == (True, False, -1.0, False)
    assert raw["ball"][0] < 0 or (raw["left_team"][-3:, 0] < 0).any()
    assert raw["steps_left"] > 0
    # the step limit is a truncation
    env = make_env(THREE_VS_ONE, time_limit=5, half_court_end=False)
    env.reset(seed=0)
    ends = [env.step([0, 0, 0])[4:6] for _ in range(5)]
    assert ends == [(False, False)] * 4 + [(False, True)]
    # GRF's own ends (possession lost, ball out of play) are terminations; rewards -1 at an end, 0 before
    env = make_env(THREE_VS_ONE, half_court_end=False)
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    rewards = []
    while True:
        *_, reward, terminated, truncated, _ = env.step(rng.integers(0, 19, 3))
        rewards.append(reward)
        if terminated or truncated:
            break
    assert terminated and not truncated and rewards == [0.0] * (len(rewards) - 1) + [-1.0]


def _play(env, actions):
    out = []
    for a in actions:
        obs, state, avail, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            out.append(env.reset()[0])
    return out


def _same(a, b):
    flat = lambda xs: [x for item in xs for x in (item if isinstance(item, tuple) else (item,))]  # noqa: E731
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(flat(a), flat(b)))


@needs_grf
def test_seeded_episodes_repeat_and_a_pickled_env_continues_exactly():
    actions = np.random.default_rng(0).integers(0, 19, (120, 3))
    one, two = make_env(THREE_VS_ONE, seed=7), make_env(THREE_VS_ONE, seed=7)
    one.reset(), two.reset()
    assert _same(_play(one, actions), _play(two, actions))  # the engine's seed comes from the env's own RNG
    _play(one, actions[:17])  # mid-episode
    restored = pickle.loads(pickle.dumps(one))
    assert _same(_play(one, actions), _play(restored, actions))


@needs_grf
def test_worker_processes_step_like_one_process():
    actions = np.random.default_rng(1).integers(0, 19, (60, 3, 3))
    local = VecMultiAgentEnv(THREE_VS_ONE, 3, 5, agent_id_feature=True, env_workers=0)
    workers = make_vec_env(THREE_VS_ONE, 3, 5, agent_id_feature=True)  # gfootball: workers by default
    assert workers._workers is not None and sum(workers._workers.sizes) == 2
    results = []
    for vec in (local, workers):
        trace = [vec.reset()[0]]
        for a in actions[:40]:
            obs, _, _, reward, terminated, truncated, info = vec.step(a)
            trace += [obs, reward, terminated, truncated, info["episode_return"], info["win"]]
        results.append(trace)
    assert all(np.array_equal(x, y) for x, y in zip(*results))
    # a checkpoint of the vectorised env holds the workers' envs mid-episode
    restored = pickle.loads(pickle.dumps(workers))
    after = [[vec.step(a)[0] for a in actions[40:]] for vec in (workers, restored)]
    assert all(np.array_equal(x, y) for x, y in zip(*after))
    for vec in (local, workers, restored):
        vec.close()


@needs_grf
@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_train_on_3_vs_1(script, tmp_path):
    budget = "320" if script == "cadp_mappo" else "400"
    result = run_script(
        script,
        tmp_path,
        "--env-id",
        THREE_VS_ONE,
        "--total-timesteps",
        budget,
        "--num-envs",
        "4",
        "--eval-episodes",
        "2",
        "--eval-interval",
        "200",
        "--hidden-dim",
        "16",
        *TINY[script],
    )
    centralized, decentralized = final_returns(result)
    # the release's reward: +100 for a goal, -1 for any other end
    assert all(value == -1.0 or -1.0 < value <= 100.0 for value in (centralized, decentralized))
    (run_dir,) = (tmp_path / "runs").iterdir()
    tags = set(EventAccumulator(str(run_dir)).Reload().Tags()["scalars"])
    assert {"eval/centralized_win_rate", "eval/decentralized_win_rate", "charts/win_rate"} <= tags


@needs_grf
def test_capture_video_draws_env_0s_episode():
    vec = make_vec_env(THREE_VS_ONE, 2, 0, capture_video=True)
    vec.reset()
    steps, done = 0, False
    while not done:
        *_, terminated, truncated, _ = vec.step(np.zeros((2, 3), np.int64))
        steps, done = steps + 1, terminated[0] or truncated[0]
    assert len(vec.frames) == steps + 1 and vec.render_fps == 10
    assert not np.array_equal(vec.frames[0], vec.frames[-1])
    vec.close()
