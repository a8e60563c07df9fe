"""Run naming, TensorBoard writer, console progress, the confidence heatmap and the eval-only
table: the plumbing every script shares.

Nothing here trains anything; it only records what the scripts measure.
"""

import itertools
import os
import re
import time
from collections import deque

import numpy as np
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from common.cli import fail


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


def import_wandb():
    """wandb, for --track: imported only then, so it stays optional; missing, one `error:` line and exit 2."""
    try:
        import wandb
    except ImportError:
        fail("--track needs wandb, which is not installed: pip install wandb (or drop --track)")
    return wandb


def make_writer(
    run_dir: str,
    args: object,
    track: bool = False,
    wandb_project_name: str = "cadp",
    wandb_entity: str | None = None,
    purge_step: int | None = None,
) -> SummaryWriter:
    """A SummaryWriter in `run_dir` with the hyperparameters logged once as a markdown table.

    With `track`, wandb mirrors the TensorBoard logs; it is imported only then, so it stays optional.
    A resumed run passes `purge_step` (its checkpoint's step + 1): TensorBoard then drops the events
    that the interrupted run wrote from that step on, and the table is not written twice.
    """
    run_name = os.path.basename(os.path.normpath(run_dir))
    hyperparameters = vars(args)
    if track:
        import_wandb().init(
            project=wandb_project_name,
            entity=wandb_entity,
            sync_tensorboard=True,
            config=hyperparameters,
            name=run_name,
            save_code=True,
        )
    writer = SummaryWriter(run_dir, purge_step=purge_step)
    if purge_step is not None:
        return writer
    table_rows = "\n".join(f"|{key}|{value}|" for key, value in hyperparameters.items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table_rows}")
    return writer


class Progress:
    """A console progress bar over environment steps showing SPS and the mean recent team return.

    tqdm adds elapsed time and ETA. The bar redraws at most once a second, so it costs nothing
    measurable in the training loop.
    """

    def __init__(self, total_timesteps: int, description: str, recent_episodes: int = 20, initial: int = 0):
        self.bar = tqdm(
            total=total_timesteps,
            desc=description,
            unit="step",
            unit_scale=True,
            mininterval=1.0,
            dynamic_ncols=True,
            initial=initial,
        )
        self.recent_returns: deque[float] = deque(maxlen=recent_episodes)
        self.start_time = time.time()
        self.first_step = self.last_step = initial  # a resumed run counts its speed from where it resumed

    def record_episode(self, episodic_return: float) -> None:
        self.recent_returns.append(episodic_return)

    def update(self, global_step: int, **extra: float) -> None:
        self.bar.update(global_step - self.last_step)
        self.last_step = global_step
        if self.bar.n == 0 or time.time() - self.bar.last_print_t < self.bar.mininterval:
            return
        postfix = {"SPS": int((global_step - self.first_step) / max(time.time() - self.start_time, 1e-9))}
        if self.recent_returns:
            postfix["return"] = f"{sum(self.recent_returns) / len(self.recent_returns):.3f}"
        postfix.update({key: f"{value:.3f}" for key, value in extra.items()})
        self.bar.set_postfix(postfix, refresh=False)

    def write(self, message: str) -> None:
        """Print a line above the bar without breaking it."""
        self.bar.write(message)

    def close(self) -> None:
        self.bar.close()


def log_confidence_matrix(writer: SummaryWriter, run_dir: str, confidence, global_step: int) -> str:
    """Heatmaps of the mean confidence matrix c (heads, agents i, agents j): their mean over heads, then
    each head. Saved as `run_dir/confidence/step_{global_step}.png` and logged as the TensorBoard
    image `eval/confidence_matrix`. Returns the PNG's path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported here: only runs with advice plot
    from matplotlib.figure import Figure

    confidence = confidence.detach().cpu().numpy()
    panels = [("mean over heads", confidence.mean(0))] + [(f"head {h}", c) for h, c in enumerate(confidence)]
    n_agents = confidence.shape[-1]
    size = 1.2 + 0.45 * n_agents
    figure = Figure(figsize=(size * len(panels) + 1.0, size + 0.6), dpi=100, layout="constrained")
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, matrix) in zip(axes, panels):
        image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("advisor j", fontsize=8)
        ax.set_xticks(range(n_agents))
        ax.set_yticks(range(n_agents))
        ax.tick_params(labelsize=7)
        if n_agents <= 8:  # the values themselves, while they still fit in the cells
            for i, j in itertools.product(range(n_agents), repeat=2):
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if matrix[i, j] > 0.6 else "white",
                )
    axes[0].set_ylabel("agent i", fontsize=8)
    figure.colorbar(image, ax=list(axes), shrink=0.8)
    figure.suptitle(f"confidence c_ij (CADP(C), eval episodes) at step {global_step}", fontsize=9)
    path = os.path.join(run_dir, "confidence", f"step_{global_step}.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    canvas.draw()
    figure.savefig(path)
    writer.add_image(
        "eval/confidence_matrix", np.asarray(canvas.buffer_rgba())[..., :3], global_step, dataformats="HWC"
    )
    return path


def print_eval_table(results: dict, checkpoint: dict, episodes: int, how: str = "greedy") -> None:
    """The eval-only report: mean return (and win rate) of each model, one row each.
    results: {"centralized" or "decentralized": (mean_return, win_rate or None)}."""
    has_win = any(win is not None for _, win in results.values())
    print(
        f"{checkpoint['path']}: {checkpoint['env']['env_id']}, step {checkpoint['global_step']}, "
        f"{episodes} {how} episodes per model"
    )
    print(f"{'model':<10}{'mean return':>14}" + (f"{'win rate':>10}" if has_win else ""))
    for mode, (mean_return, win) in results.items():
        name = "CADP(C)" if mode == "centralized" else "CADP(D)"
        print(f"{name:<10}{mean_return:>14.3f}" + (f"{win:>10.3f}" if has_win else ""))
