"""Checks shared by the env-layer tests: every vectorised env (VecMultiAgentEnv, SMAXVecEnv)
must behave alike."""

import numpy as np


def random_actions(rng, avail):
    """One random available action per agent (works for (N, A) and (E, N, A) masks)."""
    return (rng.random(avail.shape) * avail).argmax(-1)


def check_agent_id_and_last_action_features(vec, steps: int) -> None:
    """Agent ids are fixed one-hots; the last-action one-hot is the action just taken (also in
    final_obs) and zero at an episode's first step. Needs at least one episode end in `steps`."""
    d, n, a = vec.env_obs_dim, vec.n_agents, vec.n_actions
    obs, _, avail = vec.reset()
    assert not obs[:, :, d + n :].any()  # no last action at the first step
    rng = np.random.default_rng(0)
    saw_reset = False
    for _ in range(steps):
        actions = random_actions(rng, avail)
        obs, _, avail, _, terminated, truncated, info = vec.step(actions)
        done = terminated | truncated
        np.testing.assert_array_equal(obs[:, :, d : d + n], np.broadcast_to(np.eye(n), (vec.num_envs, n, n)))
        np.testing.assert_array_equal(info["final_obs"][:, :, d + n :], np.eye(a)[actions])
        np.testing.assert_array_equal(obs[~done][:, :, d + n :], np.eye(a)[actions[~done]])
        assert not obs[done][:, :, d + n :].any()  # a new episode starts with zeros
        np.testing.assert_array_equal(info["final_obs"][~done], obs[~done])
        saw_reset |= done.any()
    assert saw_reset
