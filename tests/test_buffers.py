"""The episode replay buffer of cadp_qmix.py and cadp_vdn.py: episodes in progress, stored episodes, sizes."""

import importlib.util

import numpy as np
import pytest
import torch

from common.buffers import ActionLog, EpisodeBuffer
from common.vec_env import make_vec_env


def test_add_step_stores_each_episode_when_it_ends_with_the_step_after_its_last_action():
    envs = make_vec_env("matrix:two_step", 3, seed=1)
    rb = EpisodeBuffer(capacity=4, envs=envs, num_envs=3)
    assert rb.nbytes == 4 * EpisodeBuffer.nbytes_per_episode(envs)
    obs, state, avail = envs.reset()
    stored_lengths = []
    for step in range(4):
        actions = np.full((3, 2), step % 2)
        next_obs, next_state, next_avail, reward, terminated, truncated, info = envs.step(actions)
        done = terminated | truncated
        rb.add_step(obs, state, avail, actions, reward, terminated, info, done)
        if done.any():
            stored_lengths.append(rb.size)
            index = rb.size - 1
            e = int(np.flatnonzero(done)[0])
            assert rb.length[index] == 2  # two-step game: every episode lasts 2 steps
            np.testing.assert_array_equal(rb.obs[index, 2], info["final_obs"][e])  # the step after the last action
            assert rb.terminated[index, 1] == 1.0 and rb.reward[index].sum() == np.float32(info["episode_return"][e])
        obs, state, avail = next_obs, next_state, next_avail
    assert rb.size == 4 and rb.next_index == 2  # six episodes ended into a capacity of four
    assert rb.current["length"].tolist() == [0, 0, 0]
    batch = rb.sample(5, torch.device("cpu"))
    assert batch["obs"].shape == (5, 3, 2, envs.obs_dim) and batch["mask"].shape == (5, 2)


def fill(envs, rb, log, steps: int, seed: int = 0):
    """`steps` steps of random available actions, stored in `rb` and logged in `log` as the training loop does."""
    rng = np.random.default_rng(seed)
    obs, state, avail = envs.reset()
    for _ in range(steps):
        actions = np.array([[rng.choice(np.flatnonzero(agent)) for agent in env] for env in avail])
        next_obs, next_state, next_avail, reward, terminated, truncated, info = envs.step(actions)
        log.append(actions)
        rb.add_step(obs, state, avail, actions, reward, terminated, info, terminated | truncated)
        obs, state, avail = next_obs, next_state, next_avail


def rebuilt(env_id: str, num_envs: int, steps: int, capacity: int, corrupt: bool = False, capsys=None):
    """A buffer filled by random play, and its replay from the action log in fresh envs of the same seed."""
    envs = make_vec_env(env_id, num_envs, seed=3)
    rb, log = EpisodeBuffer(capacity, envs, num_envs), ActionLog(envs)
    fill(envs, rb, log, steps)
    saved = rb.state_dict(max_bytes=0, action_log=log)
    assert saved.keys() == {"replay", "size", "next_index", "digest"}  # no episodes in the checkpoint
    restored_log = ActionLog(envs)
    restored_log.load_state_dict(log.state_dict())
    if corrupt:  # one action of a stored episode different from the one taken: a replay that is not the run
        restored_log.actions[-2, 0, 0] = (restored_log.actions[-2, 0, 0] + 1) % envs.n_actions
    fresh = make_vec_env(env_id, num_envs, seed=3)
    again = EpisodeBuffer(capacity, fresh, num_envs)
    again.load_state_dict(saved, replay_from=(fresh, fresh.reset(), restored_log))
    return rb, again


def test_a_buffer_left_out_of_a_checkpoint_is_rebuilt_exactly_by_replaying_the_logged_actions(capsys):
    rb, again = rebuilt("lbforaging:Foraging-8x8-2p-3f-v3", num_envs=3, steps=400, capacity=16)
    assert rb.size == again.size == 16 and rb.next_index == again.next_index  # the ring wrapped: later episodes won
    for name in rb.fields + ("length",):
        np.testing.assert_array_equal(getattr(again, name), getattr(rb, name))
        np.testing.assert_array_equal(again.current[name], rb.current[name])
    assert "the same as when the checkpoint was written" in capsys.readouterr().out


def test_a_replay_that_diverges_from_the_run_warns(capsys):
    rb, again = rebuilt("matrix:two_step", num_envs=2, steps=20, capacity=8, corrupt=True)
    assert again.digest() != rb.digest()
    assert "warning: NOT the episodes of the checkpoint" in capsys.readouterr().out


@pytest.mark.skipif(importlib.util.find_spec("jaxmarl") is None, reason="SMAX extra not installed")
def test_smax_episodes_replay_bit_for_bit(capsys):
    """The study's long SMAX runs rely on it: jitted JAX envs of the same seed, given the same actions."""
    rb, again = rebuilt("smax:3m", num_envs=4, steps=150, capacity=64)
    assert rb.size > 4 and again.digest() == rb.digest()
    assert "the same as when the checkpoint was written" in capsys.readouterr().out


def test_the_action_log_grows_past_its_first_allocation_and_round_trips():
    envs = make_vec_env("matrix:two_step", 2, seed=0)
    log = ActionLog(envs)
    taken = np.random.default_rng(0).integers(0, envs.n_actions, size=(3000, 2, envs.n_agents))
    for actions in taken:
        log.append(actions)
    restored = ActionLog(envs, enabled=False)
    restored.load_state_dict(log.state_dict())
    np.testing.assert_array_equal(restored.actions, taken)
    restored.append(taken[0])
    assert restored.steps == 3001 and restored.complete
    # not kept (a buffer that always fits its checkpoints), or a checkpoint without a log: nothing to replay
    off = ActionLog(envs, enabled=False)
    off.append(taken[0])
    assert off.state_dict() is None and not off.complete
    rb = EpisodeBuffer(4, envs, 2)
    fill(envs, rb, off, 6)
    assert rb.state_dict(max_bytes=0, action_log=off) is None
