"""The scripts' storage (as CleanRL's dqn.py imports its replay buffer): the episode replay buffer of
cadp_qmix.py and cadp_vdn.py (whole episodes, because the agents' GRUs train on sequences), and the rollout
storage of cadp_mappo.py with its cut into recurrent training sequences."""

import hashlib
import time

import numpy as np
import torch

from common.checkpoint import rng_state, set_rng_state


class ReplayError(ValueError):
    """Replaying the logged actions failed: the envs refused one of them (the message says where and why)."""


class EpisodeBuffer:
    """Replay of whole episodes, filled one env step at a time: add_step() writes every env's step into
    that env's episode in progress and stores the episodes that end. Step t of an episode holds o_t, s_t,
    avail_t, a_t, r_t; index `length` holds the observation after the last action, for bootstrapping at
    time limits."""

    def __init__(self, capacity: int, envs, num_envs: int):
        n, o, s, a, steps = envs.n_agents, envs.obs_dim, envs.state_dim, envs.n_actions, envs.episode_limit
        # name: (shape of one episode, dtype); obs, state and avail have one step more (after the last action)
        self.layout = {
            "obs": ((steps + 1, n, o), np.float32),
            "state": ((steps + 1, s), np.float32),
            "avail": ((steps + 1, n, a), bool),
            "actions": ((steps, n), np.int64),
            "reward": ((steps,), np.float32),
            "terminated": ((steps,), np.float32),
        }
        self.fields = tuple(self.layout)
        self.capacity, self.size, self.next_index = capacity, 0, 0
        for name, (shape, dtype) in self.layout.items():
            # padded steps count every action as available so that max/argmax over them stay finite
            setattr(self, name, (np.ones if name == "avail" else np.zeros)((capacity, *shape), dtype))
        self.length = np.zeros(capacity, np.int64)
        # the episodes in progress, one per env: their steps so far and how many there are
        self.current = {name: np.zeros((num_envs, *shape), dtype) for name, (shape, dtype) in self.layout.items()}
        self.current["length"] = np.zeros(num_envs, np.int64)

    @staticmethod
    def nbytes_per_episode(envs) -> int:
        """The memory one stored episode takes, from the env's sizes (for the up-front memory check)."""
        n, o, s, a, steps = envs.n_agents, envs.obs_dim, envs.state_dim, envs.n_actions, envs.episode_limit
        return (steps + 1) * (4 * n * o + 4 * s + n * a) + steps * (8 * n + 4 + 4) + 8

    def add_step(self, obs, state, avail, actions, reward, terminated, info, done) -> None:
        """One step of every env: obs (envs, agents, obs_dim), state (envs, state_dim), avail (envs, agents,
        actions) before `actions` (envs, agents); reward, terminated, done (envs,); `info` of envs.step(),
        whose final_obs, final_state and final_avail hold what followed the actions (the finished episode's
        last step where an env has just auto-reset). Ended episodes move into the replay."""
        rows, t = np.arange(len(done)), self.current["length"]
        episodes = self.current
        episodes["obs"][rows, t], episodes["state"][rows, t], episodes["avail"][rows, t] = obs, state, avail
        episodes["actions"][rows, t], episodes["reward"][rows, t] = actions, reward
        episodes["terminated"][rows, t] = terminated
        episodes["obs"][rows, t + 1], episodes["state"][rows, t + 1] = info["final_obs"], info["final_state"]
        episodes["avail"][rows, t + 1] = info["final_avail"]
        episodes["length"] += 1
        for env_index in np.flatnonzero(done):
            self._store(env_index)
            episodes["length"][env_index] = 0

    def _store(self, env_index: int) -> None:
        i, length = self.next_index, int(self.current["length"][env_index])
        for name in self.fields:
            target = getattr(self, name)
            steps = length + 1 if name in ("obs", "state", "avail") else length
            target[i, :steps] = self.current[name][env_index, :steps]
            target[i, steps:] = name == "avail"  # True for avail padding, 0 for the rest
        self.length[i] = length
        self.next_index = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, device: torch.device) -> dict:
        """batch_size stored episodes, trimmed to the longest: obs (batch, time + 1, agents, obs_dim), ...,
        and mask (batch, time), 1 on the episodes' real steps."""
        index = np.random.randint(0, self.size, size=batch_size)
        max_len = int(self.length[index].max())  # trim the padding no sampled episode uses
        batch = {}
        for name in self.fields:
            steps = max_len + 1 if name in ("obs", "state", "avail") else max_len
            batch[name] = torch.as_tensor(getattr(self, name)[index, :steps], device=device)
        batch["mask"] = (torch.arange(max_len) < torch.as_tensor(self.length[index])[:, None]).float().to(device)
        return batch

    def sample_steps(self, batch_size: int, device: torch.device) -> dict:
        """The episodes sample() would draw (the same draw of the RNG), as their real steps alone, with no padding:
        obs (steps, agents, obs_dim), state, avail: every episode's steps t = 0..length (the last one for
        bootstrapping), ordered by time, then episode, the longest episode first, which is PyTorch's packed-sequence
        order: batch_sizes (time + 1,), on the CPU, counts the episodes that reach step t. actions (transitions,
        agents), reward, terminated: the steps t < length, in the same order; now and next (transitions,) index
        each transition's step t and t + 1 among the steps."""
        index = np.random.randint(0, self.size, size=batch_size)
        index = index[np.argsort(-self.length[index], kind="stable")]  # the longest first
        lengths = self.length[index]
        time_grid, episode = np.indices((int(lengths.max()) + 1, batch_size))  # (time + 1, batch)
        real = time_grid <= lengths
        t, episode = time_grid[real], index[episode[real]]  # by time, then episode
        transition = t < self.length[episode]
        batch = {
            name: torch.as_tensor(getattr(self, name)[episode, t], device=device) for name in ("obs", "state", "avail")
        }
        for name in ("actions", "reward", "terminated"):
            batch[name] = torch.as_tensor(getattr(self, name)[episode[transition], t[transition]], device=device)
        batch["batch_sizes"] = torch.as_tensor(real.sum(axis=1))
        # step (t, episode) -> (t + 1, episode) keeps the order, so the transitions' next steps are those with t >= 1
        batch["now"] = torch.as_tensor(np.flatnonzero(transition), device=device)
        batch["next"] = torch.as_tensor(np.flatnonzero(t >= 1), device=device)
        return batch

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self.fields + ("length",))

    def digest(self) -> str:
        """A hash of everything stored and in progress: a rebuilt buffer is the saved one if the digests agree."""
        h = hashlib.blake2b(np.array([self.size, self.next_index], np.int64).tobytes(), digest_size=16)
        for name in self.fields + ("length",):
            h.update(np.ascontiguousarray(getattr(self, name)[: self.size]).data)
        for name in self.fields + ("length",):
            h.update(np.ascontiguousarray(self.current[name]).data)
        return h.hexdigest()

    def state_dict(self, max_bytes: float, action_log: "ActionLog | None" = None) -> dict | None:
        """The stored episodes, as tensors (torch.save writes them without a copy), while they take at most
        max_bytes; above, None. With an `action_log` that holds every action since the first reset (kept for a
        buffer that can outgrow max_bytes), only the buffer's digest: a resume rebuilds the episodes by replaying
        the actions (load_state_dict), so the checkpoint stays small all along.
        The episodes in progress belong to the envs' live state (`current`), saved with them."""
        if action_log is not None and action_log.complete:
            return {"replay": True, "size": self.size, "next_index": self.next_index, "digest": self.digest()}
        if self.nbytes * self.size > max_bytes * self.capacity:
            return None
        return {
            "size": self.size,
            "next_index": self.next_index,
            **{name: torch.from_numpy(getattr(self, name)[: self.size]) for name in self.fields + ("length",)},
        }

    def load_state_dict(self, state: dict | None, replay_from: tuple | None = None, check_digest: bool = True) -> None:
        """Restore a state_dict. One that holds only a digest is rebuilt by replay(*replay_from): (envs just
        reset, what their reset returned, the ActionLog of the checkpoint), checked against that digest unless the
        envs are meant to differ from those that took the actions (check_digest False)."""
        if state is None:
            return print("note: the checkpoint holds no replay buffer (above --checkpoint-buffer-max-mb); it refills")
        if state.get("replay"):
            if replay_from is None:
                raise ValueError("this buffer state holds no episodes: pass replay_from to rebuild them")
            envs, start, action_log = replay_from
            return self.replay(envs, start, action_log, expected=state if check_digest else None)
        self.size, self.next_index = state["size"], state["next_index"]
        for name in self.fields + ("length",):
            getattr(self, name)[: self.size] = state[name].numpy()

    def replay(self, envs, start: tuple, action_log: "ActionLog", expected: dict | None = None) -> None:
        """Step `envs` (just reset; `start` = the (obs, state, avail) that reset returned) through every logged
        action, storing the episodes as the training loop did. Deterministic envs (SMAX, LBF, the matrix games,
        ...) give the same episodes again: checked against the `expected` state_dict's digest. ReplayError if the
        envs refuse an action (other envs than those that took them: an action no longer available)."""
        actions = action_log.actions  # (steps, envs, agents)
        print(f"rebuilding the replay buffer: replaying {len(actions)} steps of {envs.num_envs} envs", flush=True)
        began, saved_rng = time.time(), rng_state()  # envs that draw from the global RNGs must not shift them
        obs, state, avail = start
        for step, step_actions in enumerate(actions):
            step_actions = step_actions.astype(np.int64)
            try:
                next_obs, next_state, next_avail, reward, terminated, truncated, info = envs.step(step_actions)
            except ValueError as error:
                set_rng_state(saved_rng)
                raise ReplayError(f"at step {step + 1} of {len(actions)}: {error}") from None
            self.add_step(obs, state, avail, step_actions, reward, terminated, info, terminated | truncated)
            obs, state, avail = next_obs, next_state, next_avail
        set_rng_state(saved_rng)
        if expected is None:
            return print(f"rebuilt {self.size} episodes in {time.time() - began:.0f} s", flush=True)
        same = (self.size, self.next_index, self.digest()) == (
            expected["size"],
            expected["next_index"],
            expected["digest"],
        )
        print(
            f"rebuilt {self.size} episodes in {time.time() - began:.0f} s: "
            + (
                "the same as when the checkpoint was written"
                if same
                else "warning: NOT the episodes of the checkpoint (the envs are not deterministic given their seed "
                "and actions); training goes on with them, so it no longer repeats the uninterrupted run"
            ),
            flush=True,
        )


def gru_on_real_steps(gru: torch.nn.GRU, inputs: torch.Tensor, hidden: torch.Tensor, batch_sizes: torch.Tensor):
    """nn.GRU over sample_steps' real steps: step t runs the GRU's equations (and its weights) on the
    batch_sizes[t] episodes that reach it, the longest first, so no padded step is computed. Packed sequences
    would do the same, with a CPU backward measured 3x slower. inputs (steps, agents, features), hidden (episodes,
    agents, hidden) -> outputs (steps, agents, hidden) and the hidden state after each episode's last step."""
    w_ih, w_hh, b_ih, b_hh = gru.all_weights[0]
    hidden, outputs = hidden.flatten(0, 1), []  # (episodes * agents, hidden)
    for x in (
        torch.nn.functional.linear(inputs, w_ih, b_ih).flatten(0, 1).split((batch_sizes * inputs.shape[1]).tolist())
    ):
        hidden = hidden[: len(x)]
        (x_r, x_z, x_n), (h_r, h_z, h_n) = x.chunk(3, -1), torch.nn.functional.linear(hidden, w_hh, b_hh).chunk(3, -1)
        reset, update = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        new = torch.tanh(x_n + reset * h_n)
        hidden = new + update * (hidden - new)  # (1 - z) n + z h
        outputs.append(hidden)
    return torch.cat(outputs).view(*inputs.shape[:2], -1), hidden


class ActionLog:
    """Every action given to the training envs since their first reset, so that a checkpoint can leave a replay
    buffer over --checkpoint-buffer-max-mb out and stay exact: a resumed run replays the actions through fresh envs
    of the same seed (EpisodeBuffer.replay). One byte per agent and env step (5 MiB for 1M steps of 5 agents);
    kept only when `enabled` (the buffer can outgrow the checkpoints' limit). `complete`: the log goes back to
    the first reset; not after a resume from a checkpoint without one, or whose envs were reseeded."""

    def __init__(self, envs, enabled: bool = True):
        if envs.n_actions > 256:
            raise ValueError(f"an ActionLog stores actions as bytes: {envs.n_actions} actions do not fit")
        self.enabled = enabled
        self._array = np.zeros((1024 if enabled else 0, envs.num_envs, envs.n_agents), np.uint8)
        self.steps, self.complete = 0, enabled

    @property
    def actions(self) -> np.ndarray:
        return self._array[: self.steps]  # (steps, envs, agents)

    def append(self, actions: np.ndarray) -> None:
        """One env step's actions, (envs, agents)."""
        if not self.enabled:
            return
        if self.steps == len(self._array):  # doubling: appends stay O(1) on average
            self._array = np.concatenate([self._array, np.zeros_like(self._array)])
        self._array[self.steps] = actions
        self.steps += 1

    def state_dict(self) -> dict | None:
        return {"actions": torch.from_numpy(self.actions), "complete": self.complete} if self.enabled else None

    def load_state_dict(self, state: dict | None) -> None:
        if state is None:  # not kept, or a checkpoint of before action logs: what came before it cannot be replayed
            self.steps, self.complete = 0, False
            return
        actions = state["actions"].numpy()
        self._array = np.zeros((max(1024, 2 * len(actions)), *actions.shape[1:]), np.uint8)
        self._array[: len(actions)] = actions
        self.steps, self.complete, self.enabled = len(actions), state["complete"], True


def to_chunks(x: torch.Tensor, chunk_length: int) -> torch.Tensor:
    """(time, envs, ...) -> (time / chunk_length * envs, chunk_length, ...): one row per training sequence."""
    time_steps, num_envs, *rest = x.shape
    x = x.reshape(time_steps // chunk_length, chunk_length, num_envs, *rest).transpose(1, 2)
    return x.reshape(-1, chunk_length, *rest)


class RolloutBuffer:
    """The rollout storage of cadp_mappo.py (as CleanRL's ppo.py keeps its `obs`, `actions`, ... tensors): each
    field is (time, envs, ...) on the networks' device, and step t holds what the networks saw before action t
    and what followed it. chunks() cuts it into the recurrent training sequences."""

    def __init__(self, num_steps: int, envs, hidden_dim: int, device):
        n, float32, long = envs.n_agents, torch.float32, torch.long
        layout = {  # name: (shape after (time, envs), dtype)
            "obs": ((n, envs.obs_dim), float32),
            "state": ((envs.state_dim,), float32),
            "avail": ((n, envs.n_actions), torch.bool),
            "hidden": ((n, hidden_dim), float32),  # the actor's GRU state fed into step t
            "critic_hidden": ((n, hidden_dim), float32),  # the recurrent critic's
            "episode_starts": ((), torch.bool),  # True where step t is an episode's first
            "active": ((n,), float32),  # 1 where the agent is alive at step t (SMAX deaths)
            "actions": ((n,), long),
            "log_probs": ((n,), float32),
            "values": ((n,), float32),  # critic outputs, normalized units
            "final_values": ((n,), float32),  # V(final state) where an episode ended at step t, return units
            "rewards": ((), float32),
            "terminated": ((), torch.bool),
            "truncated": ((), torch.bool),
        }
        self.device = device
        for name, (shape, dtype) in layout.items():
            setattr(self, name, torch.zeros(num_steps, envs.num_envs, *shape, dtype=dtype, device=device))

    def add(self, step: int, **values) -> None:
        """Store each named value (a tensor or an array of the field's (envs, ...) shape) at `step`."""
        for name, value in values.items():
            getattr(self, name)[step] = torch.as_tensor(value, device=self.device)

    def chunks(self, chunk_length: int, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training sequences, (chunks, chunk_length, ...), of the fields an update reads and of `extra`
        ((time, envs, ...) tensors such as the advantages); "hidden" and "critic_hidden" are each sequence's initial
        GRU states."""
        names = ("obs", "state", "avail", "episode_starts", "active", "actions", "log_probs", "values")
        chunks = {name: to_chunks(tensor, chunk_length) for name, tensor in extra.items()}
        chunks.update({name: to_chunks(getattr(self, name), chunk_length) for name in names})
        for name in ("hidden", "critic_hidden"):
            chunks[name] = to_chunks(getattr(self, name), chunk_length)[:, 0]
        return chunks
