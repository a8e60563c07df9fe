"""The episode replay buffer of cadp_qmix.py and cadp_vdn.py: episodes in progress, stored episodes, sizes."""

import numpy as np
import torch

from common.buffers import EpisodeBuffer
from common.envs import make_vec_env


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
