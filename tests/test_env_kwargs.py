"""--env-kwargs: a JSON object of keyword arguments for the env's constructor, in every script and env family;
SMAX's `reward_scale_rate` (SMAC's reward scale); a run records them, a resume refuses to change them."""

import json

import numpy as np
import pytest
import torch
from conftest import LBF_ID, TINY, run_script
from env_checks import random_actions

from common.cli import EnvError
from common.envs import check_env_kwargs
from common.vec_env import make_vec_env


@pytest.mark.parametrize(
    "env_id, kwargs, words",
    [
        (LBF_ID, {"sigth": 2}, ["no keyword 'sigth'", "did you mean 'sight'", "field_size", "max_episode_steps"]),
        (LBF_ID, {"sight": "far"}, ['sight="far"', "should be an integer", "its default is 8"]),
        (LBF_ID, {"force_coop": 1}, ["force_coop=1", "should be true or false"]),
        ("rware:rware-tiny-2ag-v2", {"max_steps": 1.5}, ["should be an integer", "max_inactivity_steps"]),
        ("mpe2:simple_spread_v3", {"n": 4}, ["no keyword 'n'", "N, benchmark_data", "max_cycles"]),
        ("matrix:climbing", {"payoff": 1}, ["no keyword 'payoff'", "matrix games takes: none"]),
    ],
)
def test_a_bad_keyword_or_type_is_one_error_listing_the_familys_keywords(env_id, kwargs, words):
    with pytest.raises(EnvError) as error:
        check_env_kwargs(env_id, kwargs)
    message = str(error.value)
    assert "\n" not in message and message.startswith("--env-kwargs: ")
    for word in words:
        assert word in message


def test_gymnasium_and_pettingzoo_kwargs_reach_the_constructor():
    lbf = make_vec_env(LBF_ID, 1, seed=0, env_kwargs={"sight": 1, "max_episode_steps": 7})
    assert lbf.envs[0].env.unwrapped.sight == 1 and lbf.episode_limit == 7
    spread = make_vec_env("mpe2:simple_spread_v3", 1, seed=0, env_kwargs={"N": 4})
    assert spread.n_agents == 4


def test_smax_reward_scale_rate_makes_the_largest_return_the_rate():
    pytest.importorskip("jaxmarl")
    with pytest.raises(EnvError, match="did you mean 'max_steps'.*reward_scale_rate"):  # SMAX's keywords and ours
        make_vec_env("smax:3m", 4, seed=3, env_kwargs={"max_step": 50})
    plain = make_vec_env("smax:3m", 4, seed=3)
    scaled = make_vec_env("smax:3m", 4, seed=3, env_kwargs={"reward_scale_rate": 20})
    rng = np.random.default_rng(0)
    (obs, _, avail), (scaled_obs, _, _) = plain.reset(), scaled.reset()
    returns, scaled_returns, rewarded = [], [], 0
    for _ in range(300):  # the same actions: the same battles, rewards x10 (SMAX's largest return is 2)
        actions = random_actions(rng, avail)
        obs, _, avail, reward, terminated, truncated, info = plain.step(actions)
        scaled_obs, _, _, scaled_reward, _, _, scaled_info = scaled.step(actions)
        np.testing.assert_array_equal(obs, scaled_obs)
        np.testing.assert_allclose(scaled_reward, 10 * reward, rtol=1e-5)
        rewarded += int((reward > 0).sum())
        done = terminated | truncated
        returns += list(info["episode_return"][done])
        scaled_returns += list(scaled_info["episode_return"][done])
    assert rewarded > 10 and len(returns) > 4
    np.testing.assert_allclose(scaled_returns, 10 * np.array(returns), rtol=1e-5)
    # SMAC's meaning: a won battle that took all the enemies' health returns exactly the rate
    assert max(scaled_returns) <= 20 + 1e-4


@pytest.mark.parametrize(
    "flag, words",
    [
        ("{max_episode_steps: 5}", ["is not valid JSON", "e.g. --env-kwargs"]),
        ("[5]", ["must be a JSON object"]),
        ('{"max_episode_step": 5}', ["no keyword 'max_episode_step'", "did you mean 'max_episode_steps'"]),
        ('{"max_episode_steps": "5"}', ["should be an integer"]),
    ],
)
def test_bad_env_kwargs_stop_the_script_in_one_line_writing_nothing(tmp_path, flag, words):
    result = run_script("cadp_qmix", tmp_path, "--env-kwargs", flag)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: --env-kwargs") and result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("script", ["cadp_vdn", "cadp_qplex", "cadp_mappo"])
def test_every_script_takes_env_kwargs(tmp_path, script):
    result = run_script(script, tmp_path, "--env-kwargs", '{"sigth": 1}')
    assert result.returncode == 2 and "did you mean 'sight'" in result.stderr and not list(tmp_path.iterdir())


def test_a_run_records_its_env_kwargs_and_a_resume_refuses_to_change_them(tmp_path):
    kwargs = '{"max_episode_steps": 9}'
    flags = [*TINY["cadp_qmix"], "--total-timesteps", "160", "--eval-interval", "80", "--eval-episodes", "2"]
    flags += ["--num-envs", "2", "--checkpoint-interval", "80", "--hidden-dim", "8", "--mixer", "release"]
    result = run_script("cadp_qmix", tmp_path, *flags, "--env-kwargs", kwargs, "--save-model")
    assert result.returncode == 0, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    model = torch.load(next(run_dir.glob("*.cadp_model")), weights_only=True)
    checkpoint = torch.load(run_dir / "checkpoints" / "step_80.cadp_model", weights_only=False)
    for saved in (model, checkpoint):
        assert json.loads(saved["args"]["env_kwargs"]) == {"max_episode_steps": 9}
        assert saved["args"]["mixer"] == "release"
    step_80 = str(run_dir / "checkpoints" / "step_80.cadp_model")
    refused = run_script("cadp_qmix", tmp_path, "--resume", step_80, "--env-kwargs", '{"max_episode_steps": 8}')
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1
    assert "--env-kwargs" in refused.stderr and "--branch" in refused.stderr
    # the same kwargs spelled differently are the same env; --eval-only builds the run's env from the model
    evaluated = run_script("cadp_qmix", tmp_path, "--eval-only", str(run_dir), "--eval-episodes", "2")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]


def test_smax_normalize_state_brings_the_world_state_into_0_1_and_changes_nothing_else():
    pytest.importorskip("jaxmarl")
    plain = make_vec_env("smax:5m_vs_6m", 4, seed=3)
    normalized = make_vec_env("smax:5m_vs_6m", 4, seed=3, env_kwargs={"normalize_state": True})
    (_, _, avail), _ = plain.reset(), normalized.reset()
    rng, largest, smallest = np.random.default_rng(0), 0.0, 0.0
    for _ in range(200):  # the same actions: the same battles, observations, masks and rewards
        actions = random_actions(rng, avail)
        obs, state, avail, reward, *_ = plain.step(actions)
        normalized_obs, normalized_state, normalized_avail, normalized_reward, *_ = normalized.step(actions)
        np.testing.assert_array_equal(obs, normalized_obs)
        np.testing.assert_array_equal(reward, normalized_reward)
        units, normalized_units = state[:, :110].reshape(4, 11, 10), normalized_state[:, :110].reshape(4, 11, 10)
        np.testing.assert_allclose(normalized_units[..., 1:3], units[..., 1:3] / 32, atol=1e-6)  # positions / map
        np.testing.assert_array_equal(normalized_units[..., 0], units[..., 0])  # health, already a fraction
        largest, smallest = max(largest, normalized_state.max()), min(smallest, normalized_state.min())
    assert state.max() > 10 and smallest == 0.0 and largest <= 1.0  # SMAX's own reaches the map's size
