"""Run naming, TensorBoard writer and console progress: the plumbing every script shares.

Nothing here knows about CADP; it only records what the scripts measure.
"""

import itertools
import os
import re
import time
from collections import deque

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm


def make_run_name(env_id: str, exp_name: str, seed: int) -> str:
    """`{env_id}__{exp_name}__{seed}__{unix_time}`, with characters that are unsafe in paths replaced.

    Creates `runs/{run_name}` at once; two runs started in the same second get `-2`, `-3`, ...
    rather than writing into one directory.
    """
    safe_env_id = re.sub(r"[^A-Za-z0-9_.-]+", "-", env_id)
    base = f"{safe_env_id}__{exp_name}__{seed}__{int(time.time())}"
    os.makedirs("runs", exist_ok=True)
    for attempt in itertools.count(1):
        run_name = base if attempt == 1 else f"{base}-{attempt}"
        try:
            os.mkdir(os.path.join("runs", run_name))
            return run_name
        except FileExistsError:
            continue


def make_writer(run_name: str, args: object, track: bool = False, wandb_project_name: str = "cadp",
                wandb_entity: str | None = None) -> SummaryWriter:
    """A SummaryWriter under `runs/{run_name}` with the hyperparameters logged once as a markdown table.

    With `track`, wandb mirrors the TensorBoard logs; it is imported only then, so it stays optional.
    """
    hyperparameters = vars(args)
    if track:
        try:
            import wandb
        except ImportError:
            raise SystemExit("error: --track needs wandb: pip install wandb") from None
        wandb.init(project=wandb_project_name, entity=wandb_entity, sync_tensorboard=True,
                   config=hyperparameters, name=run_name, save_code=True)
    writer = SummaryWriter(f"runs/{run_name}")
    table_rows = "\n".join(f"|{key}|{value}|" for key, value in hyperparameters.items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table_rows}")
    return writer


class Progress:
    """A console progress bar over environment steps showing SPS and the mean recent team return.

    tqdm adds elapsed time and ETA. The bar redraws at most once a second, so it costs nothing
    measurable in the training loop.
    """

    def __init__(self, total_timesteps: int, description: str, recent_episodes: int = 20):
        self.bar = tqdm(total=total_timesteps, desc=description, unit="step", unit_scale=True,
                        mininterval=1.0, dynamic_ncols=True)
        self.recent_returns: deque[float] = deque(maxlen=recent_episodes)
        self.start_time = time.time()
        self.last_step = 0

    def record_episode(self, episodic_return: float) -> None:
        self.recent_returns.append(episodic_return)

    def update(self, global_step: int, **extra: float) -> None:
        self.bar.update(global_step - self.last_step)
        self.last_step = global_step
        if self.bar.n == 0 or time.time() - self.bar.last_print_t < self.bar.mininterval:
            return
        postfix = {"SPS": int(global_step / max(time.time() - self.start_time, 1e-9))}
        if self.recent_returns:
            postfix["return"] = f"{sum(self.recent_returns) / len(self.recent_returns):.3f}"
        postfix.update({key: f"{value:.3f}" for key, value in extra.items()})
        self.bar.set_postfix(postfix, refresh=False)

    def write(self, message: str) -> None:
        """Print a line above the bar without breaking it."""
        self.bar.write(message)

    def close(self) -> None:
        self.bar.close()
