"""The long-run protocol of one training run, owned by one object, `Run`: flags and seeds, the run
directory, TensorBoard and its hyperparameter table, the progress bar, periodic and signal-triggered
checkpoints, the divergence check, exact resume and the saved model.

A script touches it at the points marked `# ---- plumbing` ; between them is the algorithm. What a
checkpoint holds is named at the call that saves it: the networks (and optimizer) by their names, the
loop's counters and its live state (envs, episodes in progress, last observations, hidden states) by
theirs, so a resumed run gets each back under the name it was saved with, never by position.
"""

import dataclasses
import json
import os
import pickle
import random
import sys
import time

import numpy as np
import torch
import tyro

from common.checkpoint import (
    Checkpointer,
    env_spec,
    load_checkpoint,
    restore,
    rng_state,
    save_atomic,
    set_rng_state,
    snapshot,
)
from common.cli import fail
from common.logger import Progress, make_run_name, make_writer, print_eval_table


def parse_args(args_class, script: str):
    """(args, checkpoint or None): tyro.cli(args_class); with --resume or --eval-only, that checkpoint is
    loaded and its run's flags become the defaults, so that flags given on this command line override them."""
    if sys.argv[-1] == "--eval-only" or any(
        a == "--eval-only" and b.startswith("--") for a, b in zip(sys.argv, sys.argv[1:])
    ):
        fail("--eval-only needs a PATH: a checkpoint, a saved model or a run directory (--eval-only runs/<run_name>)")
    args = tyro.cli(args_class)
    if not (args.resume or args.eval_only):
        return args, None
    checkpoint = load_checkpoint(args.resume or args.eval_only, script, models=not args.resume)
    known = {field.name for field in dataclasses.fields(args_class)}  # an older version's own flags are dropped
    saved = args_class(**{name: value for name, value in checkpoint["args"].items() if name in known})
    return tyro.cli(args_class, default=saved), checkpoint


class Run:
    """One training run's plumbing. `Run(Args, SCRIPT, validate)` parses the flags (with `--resume PATH`: that
    run's own flags, overridden by those given; with `--eval-only PATH`: that checkpoint's or model's), checks
    them, seeds Python, NumPy and torch, and picks the device."""

    def __init__(self, args_class, script: str, validate):
        self.script = script
        self.args, self.checkpoint = parse_args(args_class, script)
        validate(self.args)
        self.resumed = self.args.resume is not None
        if self.resumed and self.checkpoint.get("kind") == "model":
            fail(
                f"{self.checkpoint['path']} is a saved model (weights only, from --save-model): it cannot be "
                "resumed; --resume a periodic checkpoint (checkpoints/step_*.cadp_model), or --eval-only this one"
            )
        args = self.args
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        torch.backends.cudnn.deterministic = args.torch_deterministic
        torch.set_num_threads(args.torch_threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
        self.writer = self.progress = self._checkpointer = None

    # ---- before training ----
    def restore(self, envs, networks: dict) -> None:
        """Resuming or evaluating: load each network (and optimizer) from the checkpoint entry of its name,
        after checking that the checkpoint is for these envs. A saved model holds networks only; evaluation
        loads those it has."""
        if self.checkpoint is None:
            return
        if self.args.eval_only:
            networks = {name: module for name, module in networks.items() if name in self.checkpoint}
        restore(self.checkpoint, envs, **networks)

    def report_eval_only(self, results: dict, how: str = "greedy") -> None:
        """--eval-only: print the table of both models' results (evaluate()'s return and win rate) and exit."""
        results = {mode: evaluation[:2] for mode, evaluation in results.items()}
        print_eval_table(results, self.checkpoint, self.args.eval_episodes, how)
        raise SystemExit(0)

    def resume(self, counters: dict, live: dict, complete=None) -> tuple[dict, dict | None]:
        """(counters, live state) to start the loop from: as given for a new run; a resumed run's from its
        checkpoint, by name (the given envs are closed: the checkpoint's replace them), with the RNGs restored.
        The live state is None when the checkpoint could not pickle its envs: new episodes then start.
        complete(counters) says whether the saved run had finished (default: its step reached the budget)."""
        if not self.resumed:
            return counters, live
        saved = self.checkpoint
        complete = complete or (lambda saved_counters: saved_counters["global_step"] >= self.args.total_timesteps)
        if complete(saved["counters"]):
            fail(
                f"{saved['path']} is at step {saved['global_step']}: the run is complete; "
                "a larger --total-timesteps trains on"
            )
        restored = None if saved["envs"] is None else pickle.loads(saved["envs"])
        if restored is not None:
            for value in live.values():  # the envs built before the resume, which the restored ones replace
                for item in value.values() if isinstance(value, dict) else (value,):
                    if callable(getattr(item, "close", None)):
                        item.close()
        set_rng_state(saved["rng"])
        return {name: saved["counters"][name] for name in counters}, restored

    def start(self, global_step: int, description: str) -> None:
        """Open the run directory (a resumed run's own), its TensorBoard writer, the progress bar and the
        checkpointer; from here on SIGINT/SIGTERM write a checkpoint and stop."""
        args = self.args
        self.run_dir = (
            self.checkpoint["run_dir"]
            if self.resumed
            else f"runs/{make_run_name(args.env_id, args.exp_name, args.seed)}"
        )
        self.writer = make_writer(
            self.run_dir,
            args,
            args.track,
            args.wandb_project_name,
            args.wandb_entity,
            purge_step=global_step + 1 if self.resumed else None,
        )
        self.progress = Progress(args.total_timesteps, description, initial=global_step)
        self._checkpointer = Checkpointer(
            self.run_dir,
            args.checkpoint_interval,
            args.keep_checkpoints,
            self.writer,
            self.progress,
            resumed_step=global_step if self.resumed else None,
        )
        self.start_time, self.start_step = time.time(), global_step

    # ---- in the loop ----
    def sps(self, global_step: int) -> int:
        return int((global_step - self.start_step) / max(time.time() - self.start_time, 1e-9))

    def check_finite(self, global_step: int, **terms) -> None:
        """Stop the run, naming the term and the step, if any loss term (or gradient norm) is NaN or inf."""
        self._checkpointer.check_finite(global_step, **terms)

    def checkpoint_due(self, global_step: int) -> bool:
        """Every --checkpoint-interval steps, and after SIGINT/SIGTERM."""
        return self._checkpointer.due(global_step)

    def save_checkpoint(self, global_step: int, networks: dict, counters: dict, live: dict, **extra) -> None:
        """Write everything needed to continue this run as if never stopped (then exit after a stop signal):
        the networks' state_dicts and the counters by name, the RNG states, `extra` entries as given (e.g. the
        replay buffer's state), and the live state pickled by name (None, with a warning once, if the envs
        cannot be pickled)."""
        self._checkpointer.save(self._state(global_step, networks, counters, live, extra), global_step)

    def _state(self, global_step, networks, counters, live, extra) -> dict:
        envs = live["envs"]
        return {
            "kind": "checkpoint",
            "script": self.script,
            "env": env_spec(envs),
            "args": vars(self.args),
            "global_step": global_step,
            "counters": {**counters, "global_step": global_step},
            "rng": rng_state(),
            **{name: module.state_dict() for name, module in networks.items()},
            **extra,
            "envs": snapshot(live, self.args.env_id),
        }

    # ---- after training ----
    def save_model(self, global_step: int, envs, networks: dict) -> str:
        """--save-model: the networks' weights with the args and env sizes, loadable with
        `torch.load(path, weights_only=True)` and by `--eval-only path`."""
        path = f"{self.run_dir}/{self.args.exp_name}.cadp_model"
        save_atomic(
            {
                "kind": "model",
                "script": self.script,
                "env": env_spec(envs),
                "args": vars(self.args),
                "global_step": global_step,
                **{name: module.state_dict() for name, module in networks.items()},
            },
            path,
        )
        return path

    def close(self, *envs) -> None:
        """Close the envs (a dict's values too), the progress bar and the writer."""
        for item in envs:
            for vec in item.values() if isinstance(item, dict) else (item,):
                vec.close()
        if self.progress is not None:
            self.progress.close()
        if self.writer is not None:
            self.writer.close()


def export_actor(actor: torch.nn.Module, envs, hidden_dim: int, run_dir: str, outputs: str) -> str:
    """Export one step of one agent's actor with torch.export to `run_dir/decentralized_actor.pt2`, and what
    a deployment needs to drive it (sizes, observation layout, where the action mask comes from) to
    decentralized_actor.json. `outputs`: what the actor returns first ("q_values" or "logits")."""
    actor = actor.cpu().eval()
    example = (
        torch.zeros(2, envs.obs_dim),
        torch.zeros(2, hidden_dim),
        torch.ones(2, envs.n_actions, dtype=torch.bool),
    )
    batch = torch.export.Dim("batch")
    program = torch.export.export(actor, example, dynamic_shapes=({0: batch}, {0: batch}, {0: batch}))
    path = os.path.join(run_dir, "decentralized_actor.pt2")
    torch.export.save(program, path)
    spec = {
        "env_id": envs.env_id,
        "n_agents": envs.n_agents,
        "obs_dim": envs.obs_dim,
        "n_actions": envs.n_actions,
        "hidden_dim": hidden_dim,
        "observation_layout": envs.obs_layout,
        "action_mask": envs.action_mask,
        "inputs": "one agent's obs (batch, obs_dim), hidden (batch, hidden_dim), avail (batch, n_actions) bool",
        "outputs": f"{outputs} (batch, n_actions), hidden (batch, hidden_dim)",
    }
    with open(os.path.join(run_dir, "decentralized_actor.json"), "w") as f:
        json.dump(spec, f, indent=2)
    return path
