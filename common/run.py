"""The long-run protocol of one training run, owned by one object, `Run`: flags and seeds, the run
directory, TensorBoard and its hyperparameter table, the progress bar, periodic and signal-triggered
checkpoints, the divergence check, exact resume and the saved model.

A script touches it at the points marked `# ---- plumbing` ; between them is the algorithm. What a
checkpoint holds is named at the call that saves it: the networks (and optimizer) by their names, the
loop's counters and its live state (envs, episodes in progress, last observations, hidden states) by
theirs, so a resumed run gets each back under the name it was saved with, never by position.
"""

import copy
import dataclasses
import json
import os
import random
import sys
import time
import warnings

import numpy as np
import torch
import tyro

from common.buffers import ReplayError
from common.checkpoint import (
    Checkpointer,
    env_spec,
    load_checkpoint,
    packed_snapshot,
    periodic_checkpoints,
    restore,
    rng_state,
    save_atomic,
    set_rng_state,
    unpack_snapshot,
)
from common.cli import EnvError, check_flags, fail
from common.logger import Progress, import_wandb, log_confidence_matrix, make_run_name, make_writer, print_eval_table
from common.memory import check_memory, env_nbytes
from common.vec_env import make_vec_env
from common.video import log_video, write_mp4


@dataclasses.dataclass
class RunArgs:
    """The flags every script has that are not its algorithm's (CleanRL's names where CleanRL has one): seeds,
    device, logging, checkpoints, resume, evaluation of a saved run. Each script's Args adds its algorithm's."""

    exp_name: str = "cadp"
    """the name of this experiment (each script's own by default)"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """use deterministic torch algorithms"""
    cuda: bool = False
    """run the networks on CUDA when available (small nets: the CPU is usually faster)"""
    torch_threads: int = 1
    """CPU threads for torch: these small networks run fastest on one, and runs sharing cores don't stall"""
    track: bool = False
    """mirror the logs to Weights and Biases (needs `pip install wandb`)"""
    wandb_project_name: str = "cadp"
    """the wandb project name"""
    wandb_entity: str | None = None
    """the wandb entity (team)"""
    save_model: bool = False
    """save the weights and export the decentralized actor to `runs/{run_name}/`"""
    checkpoint_interval: int = 25_000
    """environment steps between checkpoints in `runs/{run_name}/checkpoints/` (0 = none)"""
    keep_checkpoints: int = 3
    """how many of the latest periodic checkpoints to keep"""
    resume: str | None = None
    """continue the run of this checkpoint file or run directory (its newest) in its own directory; flags given
    override the run's own, as far as they leave its trajectory as it was (docs/runs.md: Resume)"""
    branch: bool = False
    """with --resume: continue into a new run directory that records its parent run and step, leaving that run as
    it is; for a checkpoint that is not the run's newest, or other --seed, env or algorithm flags"""
    eval_only: str | None = None
    """only evaluate CADP(C) and CADP(D) of this checkpoint, saved model or run directory (its newest); print a table"""
    capture_video: bool = False
    """record each evaluation's first episode of CADP(D) (and CADP(C)) to `runs/{run_name}/videos/` and TensorBoard"""
    env_kwargs: str | None = None
    """keyword arguments for the env's constructor, a JSON object, e.g. '{"reward_scale_rate": 20}' (SMAX: SMAC's
    reward scale) or '{"sight": 2}' (LBF); a bad keyword's error lists the family's"""


# The flags a --resume may change and still continue the run in its own directory: where and how the run computes,
# what it saves and logs, and its budget; none of them changes the steps already taken. Every other flag, one added
# later included, changes the run's trajectory and needs --branch (docs/runs.md: Resume says why each is here).
RESUME_MAY_CHANGE = frozenset(
    {
        *("resume", "eval_only", "branch"),  # the command's own
        "total_timesteps",  # a finished run trains on, or a run ends sooner
        *("checkpoint_interval", "keep_checkpoints", "checkpoint_buffer_max_mb"),  # what is saved, not trained
        *("cuda", "torch_threads", "torch_deterministic"),  # the machine
        *("track", "wandb_project_name", "wandb_entity", "capture_video", "save_model", "exp_name"),  # outputs
    }
)
# flags that no resume can change, not even a branch: the checkpoint's live state and buffers have their sizes
RESUME_FIXED = ("num_envs", "buffer_size", "num_steps")
# the flags that make other envs: a branch that changes one (or --seed) plays new episodes in envs built from its
# own flags, not in the saved ones
ENV_FLAGS = frozenset({"env_id", "env_kwargs"})


def parse_args(args_class, script: str):
    """(args, checkpoint or None): tyro.cli(args_class); with --resume or --eval-only, that checkpoint is
    loaded and its run's flags become the defaults, so that flags given on this command line override them. A flag
    added since the checkpoint was written takes the value that run had without it, where the script's Args name
    one in `former_defaults` (a ClassVar), else its default."""
    if sys.argv[-1] == "--eval-only" or any(
        a == "--eval-only" and b.startswith("--") for a, b in zip(sys.argv, sys.argv[1:])
    ):
        fail("--eval-only needs a PATH: a checkpoint, a saved model or a run directory (--eval-only runs/<run_name>)")
    args = tyro.cli(args_class)
    if not (args.resume or args.eval_only):
        return args, None
    checkpoint = load_checkpoint(args.resume or args.eval_only, script, models=not args.resume)
    # an older version's own flags are dropped, and so are the saved command's own (a resumed run's --resume);
    # a flag newer than the checkpoint takes the value that reproduces the older run (former_defaults)
    known = {field.name for field in dataclasses.fields(args_class)} - {"resume", "eval_only", "branch"}
    saved = {name: value for name, value in checkpoint["args"].items() if name in known}
    saved = args_class(**{**getattr(args_class, "former_defaults", {}), **saved})
    return tyro.cli(args_class, default=saved), checkpoint


def parse_env_kwargs(text: str | None) -> dict:
    """--env-kwargs as a dict; bad JSON or a value that is not an object stops with one line."""
    if not text:
        return {}
    example = """e.g. --env-kwargs '{"reward_scale_rate": 20}'"""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"--env-kwargs is not valid JSON ({error.msg} at character {error.pos}): {text}; {example}")
    if not isinstance(value, dict):
        fail(f"--env-kwargs must be a JSON object of keyword arguments, got {text}; {example}")
    return value


class Run:
    """One training run's plumbing. `Run(Args, validate)` parses the flags (with `--resume PATH`: that
    run's own flags, overridden by those given; with `--eval-only PATH`: that checkpoint's or model's), checks
    them, seeds Python, NumPy and torch, and picks the device."""

    def __init__(self, args_class, validate):
        # the script's name, for checkpoints: a run resumes and evaluates only with the script that wrote it
        self.script = script = os.path.basename(sys.modules[args_class.__module__].__file__).removesuffix(".py")
        self.args, self.checkpoint = parse_args(args_class, script)
        check_flags(self.args, positive="keep_checkpoints torch_threads", non_negative="checkpoint_interval")
        validate(self.args)
        args = self.args
        self.env_kwargs = parse_env_kwargs(args.env_kwargs)
        # one spelling per env, so that a resume compares envs, not JSON strings
        args.env_kwargs = json.dumps(self.env_kwargs, sort_keys=True) if self.env_kwargs else None
        self.resumed, self.branch = args.resume is not None, args.branch
        if self.branch and not self.resumed:
            fail("--branch continues a run into a new run directory: it needs --resume PATH")
        if self.resumed and self.checkpoint.get("kind") == "model":
            fail(
                f"{self.checkpoint['path']} is a saved model (weights only, from --save-model): it cannot be "
                "resumed; --resume a periodic checkpoint (checkpoints/step_*.cadp_model), or --eval-only this one"
            )
        self.changed = self._check_resume(args_class) if self.resumed else {}
        # a branch's checkpoints name the run and step it branched from, and a resume of them carries that on
        self.parent = self.checkpoint.get("parent") if self.resumed else None
        if self.branch:
            self.parent = {
                "run_dir": self.checkpoint["run_dir"],
                "checkpoint": os.path.relpath(self.checkpoint["path"]),
                "global_step": self.checkpoint["global_step"],
                "changed": {name: list(values) for name, values in self.changed.items()},
            }
        if args.track:
            import_wandb()  # missing: one line, before anything is written
        self._check_writable()
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        torch.backends.cudnn.deterministic = args.torch_deterministic
        torch.set_num_threads(args.torch_threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
        self.writer = self.progress = self._checkpointer = None
        self.update_seconds, self.timed_updates = 0.0, 0  # the updates' share of the time (benchmarks/speed.py)

    def _check_resume(self, args_class) -> dict:
        """The flags this resume changes, {name: (the run's value, this command's)}. A resume in the run's own
        directory must leave its past as it was: refused, saying how to branch, if the checkpoint is not the run's
        newest or a flag outside RESUME_MAY_CHANGE changed (with --branch: allowed). RESUME_FIXED flags never change."""
        saved, args = self.checkpoint, self.args
        # a flag the run's version did not have had its default's effect, or the one former_defaults names
        defaults = {**vars(args_class()), **getattr(args_class, "former_defaults", {})}
        changed = {}
        for name, value in vars(args).items():
            before = saved["args"].get(name, defaults[name])
            if name not in RESUME_MAY_CHANGE and before != value:
                changed[name] = (before, value)
        if fixed := [name for name in RESUME_FIXED if name in changed]:
            flags = ", ".join(f"--{name.replace('_', '-')} {changed[name][0]}" for name in fixed)
            fail(f"{saved['path']}: a resume keeps {flags}: the checkpoint's envs and buffers have these sizes")
        if self.branch:
            return changed
        newest = max([step for step, _ in periodic_checkpoints(saved["run_dir"])], default=saved["global_step"])
        problems = []
        if saved["global_step"] < newest:
            problems.append(
                f"{saved['path']} is at step {saved['global_step']}, but the run went on to a checkpoint at step "
                f"{newest}: resuming it here would replace the run's later checkpoints and TensorBoard events"
            )
        if changed:
            flags = ", ".join(
                f"--{name.replace('_', '-')} {value} (the run's: {before})" for name, (before, value) in changed.items()
            )
            problems.append(f"{flags} would change the trajectory of the run in {saved['run_dir']}")
        if problems:
            fail(
                "; ".join(problems) + "; add --branch to continue into a new run directory that records this run "
                "as its parent and leaves it as it is (docs/runs.md: Resume)"
            )
        return changed

    def _check_writable(self) -> None:
        """Before anything is built or written: the directories this command will write to can be written."""
        args, checkpoint = self.args, self.checkpoint
        if args.eval_only:
            paths = [os.path.join(checkpoint["run_dir"], "videos")] if args.capture_video else []
            how = "drop --capture-video, or make it writable"
        elif self.resumed and not self.branch:
            run_dir = checkpoint["run_dir"]
            paths = [run_dir, *(os.path.join(run_dir, name) for name in ("checkpoints", "videos", "confidence"))]
            how = "make it writable, or add --branch to continue into a new run directory under runs/"
        else:
            paths, how = ["runs"], "run from a directory where runs/ can be written, or make it writable"
        for path in paths:
            if problem := unwritable(path):
                fail(f"cannot write to {path} ({problem}); {how}")

    # ---- before training ----
    def make_envs(self, needs, flags: str):
        """(envs, eval_envs) of --env-id, with the observation features --obs-agent-id and --obs-last-action ask
        for: --num-envs training envs seeded from --seed, and --eval-episodes eval envs for each of CADP(C) and
        CADP(D), seeded alike so that both models start the same episodes (with --capture-video, the first of each
        is drawn: CADP(C)'s only when advice is on, as it is CADP(D) otherwise). Refused up front,
        naming `flags`, when needs(envs) (the training data: {what: bytes}) and the envs cannot fit in memory;
        an env that cannot be built (or drawn) stops the run with its one-line error."""
        args = self.args
        env_kwargs = dict(agent_id_feature=args.obs_agent_id, last_action_feature=args.obs_last_action)

        def size_check(vec_env, one_env):
            env_bytes = env_nbytes(one_env) * (args.num_envs + 2 * args.eval_episodes)
            check_memory({**needs(vec_env), "envs": env_bytes}, flags)

        try:
            env_kwargs["env_kwargs"] = self.env_kwargs
            envs = make_vec_env(args.env_id, args.num_envs, args.seed, **env_kwargs, size_check=size_check)
            # without advice CADP(C) is CADP(D): one video of it is enough
            record = {
                "centralized": args.capture_video and getattr(args, "advice", True),
                "decentralized": args.capture_video,
            }
            eval_envs = {
                mode: make_vec_env(
                    args.env_id, args.eval_episodes, args.seed + 100_000, **env_kwargs, capture_video=capture
                )
                for mode, capture in record.items()
            }
        except EnvError as error:
            fail(str(error))
        return envs, eval_envs

    def restore(self, envs, networks: dict) -> None:
        """Resuming or evaluating: load each network (and optimizer) from the checkpoint entry of its name,
        after checking that the checkpoint is for these envs. A saved model holds networks only; evaluation
        loads those it has."""
        if self.checkpoint is None:
            return
        if self.args.eval_only:
            networks = {name: module for name, module in networks.items() if name in self.checkpoint}
        restore(self.checkpoint, envs, same_env_id=not self.branch, **networks)

    def report_eval_only(self, results: dict, eval_envs: dict, how: str = "greedy") -> None:
        """--eval-only: print the table of both models' results (evaluate()'s return and win rate) and exit; with
        --capture-video, the recorded episodes go beside the checkpoint (videos/eval_only_{step}_{mode}.mp4)."""
        results = {mode: evaluation[:2] for mode, evaluation in results.items()}
        print_eval_table(results, self.checkpoint, self.args.eval_episodes, how)
        run_dir = self.checkpoint["run_dir"]
        for mode, envs in eval_envs.items():
            if envs.capture_video:
                path = f"{run_dir}/videos/eval_only_{self.checkpoint['global_step']}_{mode}.mp4"
                print(
                    f"video of CADP({mode[0].upper()})'s first episode: {write_mp4(path, envs.frames, envs.render_fps)}"
                )
        raise SystemExit(0)

    def whole_rollouts(self, rollout_steps: int) -> int:
        """How many rollouts of `rollout_steps` env steps train: --total-timesteps is a minimum, rounded up to whole
        rollouts. Where that trains more steps, one line says so, and args.total_timesteps becomes that number (the
        progress bar, the pruning breakpoint and the checkpoints' args count it)."""
        given = self.args.total_timesteps
        rollouts = -(-given // rollout_steps)
        if rollouts * rollout_steps != given:
            self.args.total_timesteps = rollouts * rollout_steps
            print(
                f"note: --total-timesteps {given} rounded up to whole rollouts of {rollout_steps} steps "
                f"(--num-envs x --num-steps): {rollouts} rollouts, {rollouts * rollout_steps} steps",
                flush=True,
            )
        return rollouts

    def resume(self, counters: dict, live: dict, complete=None, replay=None) -> tuple[dict, dict | None]:
        """(counters, live state) to start the loop from: as given for a new run; a resumed run's from its
        checkpoint, by name (the given envs are closed: the checkpoint's replace them), with the RNGs restored.
        The live state is None, and new episodes start in the given envs, when the checkpoint could not pickle its
        envs, and on a branch to another env or --seed (which also keeps the RNGs that seed gave).
        complete(counters) says whether the saved run had finished (default: its step reached the budget).
        replay: (EpisodeBuffer, ActionLog) to restore from the checkpoint; a buffer the checkpoint left out is
        rebuilt by stepping the given envs, still fresh from their first reset, through the logged actions (a
        branch's other env: its own episodes for those actions; an action it refuses stops the run, one line)."""
        if not self.resumed:
            return counters, live
        saved = self.checkpoint
        complete = complete or (lambda saved_counters: saved_counters["global_step"] >= self.args.total_timesteps)
        if complete(saved["counters"]):
            fail(
                f"{saved['path']} is at step {saved['global_step']}: the run is complete; "
                "a larger --total-timesteps trains on"
            )
        other_env = self.branch and not ENV_FLAGS.isdisjoint(self.changed)
        new_seed = self.branch and "seed" in self.changed
        restored = None  # unpacked before the replay below, which can take minutes, so that a failure comes first
        if saved["envs"] is not None and not other_env and not new_seed:
            try:
                restored = unpack_snapshot(saved["envs"])
            except (ImportError, AttributeError) as error:  # a class the version or env suite that wrote it had
                fail(
                    f"{saved['path']}: its envs were saved mid-episode by a version of these scripts or of the env "
                    f"suite that this one differs from ({type(error).__name__}: {error}); resume with that version, "
                    "or branch with another seed (--branch --seed N), which starts new episodes instead"
                )
        if replay is not None:
            buffer, action_log = replay
            action_log.load_state_dict(saved.get("actions"))
            start = live["obs"], live["state"], live["avail"]
            if new_seed:  # the run took its actions in the episodes of its own seed
                start = live["envs"].reset(seed=saved["args"]["seed"])
            try:  # through this command's envs: a branch's other env gives other episodes for the same actions
                buffer.load_state_dict(saved["buffer"], (live["envs"], start, action_log), check_digest=not other_env)
            except ReplayError as error:
                fail(
                    f"{saved['path']}: its replay buffer is rebuilt by replaying the actions the run took, and this "
                    f"command's envs refuse them ({error}); branch with an env in which those actions stay "
                    "available, or from a checkpoint that holds its buffer"
                )
        if restored is not None:
            for value in live.values():  # the envs built before the resume, which the restored ones replace
                for item in value.values() if isinstance(value, dict) else (value,):
                    if callable(getattr(item, "close", None)):
                        item.close()
        elif replay is not None:  # the replayed episodes in progress end here, with the envs that played them
            buffer.current["length"][:] = 0
        if not new_seed:
            set_rng_state(saved["rng"])
        return {name: saved["counters"][name] for name in counters}, restored

    def start(self, global_step: int):
        """Open the run directory (a resumed run's own; a branch's new one, with its parent in branch.json), its
        TensorBoard writer (returned), the progress bar and the checkpointer; from here on SIGINT/SIGTERM write a
        checkpoint and stop."""
        args = self.args
        in_place = self.resumed and not self.branch
        if in_place:
            self.run_dir = self.checkpoint["run_dir"]
        else:
            self.run_dir = f"runs/{make_run_name(args.env_id, args.exp_name, args.seed)}"
        if self.branch:
            with open(os.path.join(self.run_dir, "branch.json"), "w") as f:
                json.dump({"parent": self.parent}, f, indent=2)
            print(f"branched from {self.parent['checkpoint']} (step {global_step}) into {self.run_dir}", flush=True)
        self.writer = make_writer(
            self.run_dir,
            args,
            args.track,
            args.wandb_project_name,
            args.wandb_entity,
            purge_step=global_step + 1 if in_place else None,
        )
        self.progress = Progress(args.total_timesteps, f"{args.exp_name} {args.env_id}", initial=global_step)
        self._checkpointer = Checkpointer(
            self.run_dir,
            args.checkpoint_interval,
            args.keep_checkpoints,
            self.writer,
            self.progress,
            resumed_step=global_step if self.resumed else None,
        )
        self.start_time, self.start_step = time.time(), global_step
        return self.writer

    # ---- in the loop ----
    def sps(self, global_step: int) -> int:
        return int((global_step - self.start_step) / max(time.time() - self.start_time, 1e-9))

    def log_episodes(self, info: dict, done: np.ndarray, global_step: int) -> None:
        """charts/episodic_return, charts/episodic_length (and charts/win_rate) of each episode ended at this step."""
        for env_index in np.flatnonzero(done):
            episodic_return = float(info["episode_return"][env_index])
            self.progress.record_episode(episodic_return)
            self.writer.add_scalar("charts/episodic_return", episodic_return, global_step)
            self.writer.add_scalar("charts/episodic_length", info["episode_length"][env_index], global_step)
            if "win" in info:
                self.writer.add_scalar("charts/win_rate", float(info["win"][env_index]), global_step)

    def time_updates(self, seconds: float, updates: int) -> None:
        """Count `seconds` spent on `updates` gradient updates, for charts/update_time_ms."""
        self.update_seconds, self.timed_updates = self.update_seconds + seconds, self.timed_updates + updates

    def log_speed(self, global_step: int) -> None:
        """charts/SPS (environment steps per second since the start or the resume) and charts/update_time_ms."""
        self.writer.add_scalar("charts/SPS", self.sps(global_step), global_step)
        if self.timed_updates:
            self.writer.add_scalar(
                "charts/update_time_ms", 1000 * self.update_seconds / self.timed_updates, global_step
            )

    def log_attention(self, log_confidence, prune_loss, prune_coef: float, global_step: int) -> None:
        """CADP's attention over an update's real steps, log_confidence (..., heads, agents, agents):
        charts/self_attention_weight (the mean c_ii, which pruning drives to 1), charts/attention_entropy (how flat
        the rows c_i. are, as a share of log(agents): 1 = the same weight on every agent, 0 = all on one; pruning
        drives it to 0), losses/prune_loss and charts/prune_coef (alpha)."""
        self_weight = log_confidence.diagonal(dim1=-2, dim2=-1).exp().mean()
        row_entropy = -(log_confidence.exp() * log_confidence).sum(-1).mean() / np.log(max(log_confidence.shape[-1], 2))
        self.writer.add_scalar("charts/self_attention_weight", self_weight.item(), global_step)
        self.writer.add_scalar("charts/attention_entropy", row_entropy.item(), global_step)
        self.writer.add_scalar("losses/prune_loss", prune_loss.item(), global_step)
        self.writer.add_scalar("charts/prune_coef", prune_coef, global_step)

    def log_eval(self, global_step: int, results: dict, eval_envs: dict) -> None:
        """evaluate()'s results per model ("centralized", "decentralized"): eval/{mode}_episodic_return (and
        _win_rate), the confidence heatmap of CADP(C) (whom each agent listens to), and a line above the bar;
        with --capture-video, the first episode each model played to videos/{step}_{mode}.mp4 in the run
        directory and to TensorBoard's image panel as an animated GIF (eval/{mode}_video)."""
        for mode, envs in eval_envs.items():
            if envs.capture_video:
                write_mp4(f"{self.run_dir}/videos/{global_step}_{mode}.mp4", envs.frames, envs.render_fps)
                log_video(self.writer, f"eval/{mode}_video", envs.frames, envs.render_fps, global_step)
                envs.frames = []  # not kept in memory nor in checkpoints
        for mode, (mean_return, win_rate, confidence) in results.items():
            self.writer.add_scalar(f"eval/{mode}_episodic_return", mean_return, global_step)
            if win_rate is not None:
                self.writer.add_scalar(f"eval/{mode}_win_rate", win_rate, global_step)
            if confidence is not None:
                log_confidence_matrix(self.writer, self.run_dir, confidence, global_step)
        centralized, decentralized = results["centralized"][0], results["decentralized"][0]
        self.progress.write(f"step {global_step}: eval return CADP(C) {centralized:.3f}, CADP(D) {decentralized:.3f}")

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

    def _header(self, kind: str, global_step: int, envs) -> dict:
        """What a checkpoint and a saved model both start with: what wrote them, for which envs, at which step."""
        env, args = env_spec(envs), vars(self.args)
        header = {"kind": kind, "script": self.script, "env": env, "args": args, "global_step": global_step}
        return header if self.parent is None else {**header, "parent": self.parent}

    def _state(self, global_step, networks, counters, live, extra) -> dict:
        return {
            **self._header("checkpoint", global_step, live["envs"]),
            "counters": {**counters, "global_step": global_step},
            "rng": rng_state(),
            **{name: module.state_dict() for name, module in networks.items()},
            **extra,
            "envs": packed_snapshot(live, self.args.env_id),
        }

    # ---- after training ----
    def save_model(self, global_step: int, envs, networks: dict, agent, outputs: str) -> None:
        """--save-model: the networks' weights with the args and env sizes, loadable with
        `torch.load(path, weights_only=True)` and by `--eval-only path`, and the agent's CADP(D) exported
        for deployment (export_actor); prints both paths."""
        path = f"{self.run_dir}/{self.args.exp_name}.cadp_model"
        header = self._header("model", global_step, envs)
        save_atomic({**header, **{name: module.state_dict() for name, module in networks.items()}}, path)
        actor_path = export_actor(agent, envs, self.args.hidden_dim, self.run_dir, outputs)
        print(f"model saved to {path}; decentralized actor exported to {actor_path}")

    def report_final(self, global_step: int, results: dict) -> None:
        """Close the progress bar and print the last evaluation of both models."""
        self.progress.close()
        centralized, decentralized = results["centralized"][0], results["decentralized"][0]
        print(
            f"final eval after {global_step} steps ({time.time() - self.start_time:.0f} s): "
            f"CADP(C) return {centralized:.3f}, CADP(D) return {decentralized:.3f}"
        )

    def close(self, *envs) -> None:
        """Close the envs (a dict's values too), the progress bar and the writer."""
        for item in envs:
            for vec in item.values() if isinstance(item, dict) else (item,):
                vec.close()
        if self.progress is not None:
            self.progress.close()
        if self.writer is not None:
            self.writer.close()


def unwritable(path: str) -> str | None:
    """Why the directory `path` (made when missing, with its parents) cannot be written to, or None."""
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing) or "."
    if not os.path.isdir(existing):
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return "it is read-only" if existing == path else f"{existing} is read-only"
    return None


@torch.no_grad()
def play_eval_episodes(envs, act, hidden: torch.Tensor):
    """One episode in each eval env, reseeded first, so that every evaluation, model (C or D) and run of a seed
    plays the same episodes. act(obs, avail, hidden) -> actions (envs, agents), new hidden, log-confidence
    (envs, 1, heads, agents, agents) or None. Returns the mean return, the win rate (None without wins) and the
    mean confidence matrix c (heads, agents, agents) over the envs' steps (None without a log-confidence)."""
    obs, _, avail = envs.reset(seed=envs.seed)
    finished = np.zeros(envs.num_envs, bool)
    returns, wins = np.zeros(envs.num_envs), np.zeros(envs.num_envs)
    confidence, steps = 0.0, 0
    while not finished.all():
        actions, hidden, log_confidence = act(obs, avail, hidden)
        if log_confidence is not None:  # CADP Eq. 1's c, over the envs still in their episode
            playing = torch.as_tensor(~finished, device=log_confidence.device)
            confidence = confidence + log_confidence[playing, 0].exp().sum(dim=0)
            steps += int((~finished).sum())
        obs, _, avail, _, terminated, truncated, info = envs.step(actions.cpu().numpy())
        just_finished = (terminated | truncated) & ~finished
        returns[just_finished] = info["episode_return"][just_finished]
        if envs.has_win:
            wins[just_finished] = info["win"][just_finished]
        finished |= just_finished
    return returns.mean(), (wins.mean() if envs.has_win else None), (confidence / steps if steps else None)


class DecentralizedActor(torch.nn.Module):
    """CADP(D) for deployment: one step of ONE agent of a script's CADPAgent with z_i = v_i, so that each agent
    runs alone on its own device (the agents share these weights; an agent's id is part of its observation, as
    decentralized_actor.json's layout says). The copy holds no query or key weights: after pruning, an
    agent's action depends on its own observation alone."""

    def __init__(self, agent: torch.nn.Module):
        super().__init__()
        self.agent = copy.deepcopy(agent).cpu().eval()
        if self.agent.advice is not None:
            del self.agent.advice.query, self.agent.advice.key  # CADP(D) never computes the confidence c_i

    def forward(self, obs: torch.Tensor, hidden: torch.Tensor, avail: torch.Tensor):
        """obs (batch, obs_dim), hidden (batch, hidden_dim), avail (batch, actions) bool -> Q-values or logits
        (batch, actions), -inf where unavailable, and the new hidden state (batch, hidden_dim)."""
        out, new_hidden, _ = self.agent(obs[:, None, None], hidden[:, None], decentralized=True)
        return out[:, 0, 0].masked_fill(~avail, -torch.inf), new_hidden[:, 0]


def export_actor(agent: torch.nn.Module, envs, hidden_dim: int, run_dir: str, outputs: str) -> str:
    """Export one step of one agent's CADP(D) (DecentralizedActor) with torch.export to
    `run_dir/decentralized_actor.pt2`, and what a deployment needs to drive it (sizes, observation layout,
    where the action mask comes from) to decentralized_actor.json. `outputs`: what the agent returns first
    ("q_values" or "logits")."""
    actor = DecentralizedActor(agent)
    example = (
        torch.zeros(2, envs.obs_dim),
        torch.zeros(2, hidden_dim),
        torch.ones(2, envs.n_actions, dtype=torch.bool),
    )
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():  # nn.GRU re-flattens its weights while traced: harmless, nothing is assigned
        warnings.filterwarnings("ignore", message=".*_flat_weights.*were assigned during export")
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
