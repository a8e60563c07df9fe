"""Learning studies: CADP against its advice-off baseline and an EPyMARL-family peer, over seeds.

A study is a grid of jobs: env ids x scripts x seeds x {advice, no advice}, plus runs of the peer
implementation (pymarlzooplus, through benchmarks/peer.py). An ablation study (`ablation`) has arms
instead of {advice, no advice}: a label and the script's flags each (ABLATION_ARMS). Each job trains
as a subprocess in its own directory, benchmarks/runs/{study}/{job}/ (one torch thread, output in
log.txt; no checkpoints, except in a study with a checkpoint_interval, such as `smax`, whose
interrupted jobs continue from their newest checkpoint when the study runs again, on this clone or,
through `--export-checkpoints` and a copy of its folder, on another). After each job,
the TensorBoard scalars of every finished job go into one CSV, benchmarks/results/learning_{study}.csv.gz,
listed with their signatures in a manifest beside it, learning_{study}.jobs.json, and
benchmarks/plot.py redraws the curves and the table. A
job is finished when its job directory or the manifest says so, with its current signature: a
study that was stopped resumes where it stopped, here or in another clone that has the results.

    python benchmarks/learning.py --study lbf --dry-run        # the jobs and a rough duration
    python benchmarks/learning.py --study lbf                  # os.cpu_count() jobs at a time
    python benchmarks/learning.py --study lbf --only Foraging-2s --seeds 1 2 --workers 2
    python benchmarks/learning.py --study ablation --only cadp_qmix_post_gru   # one arm (and its _eq3, _noprune)
    python benchmarks/learning.py --study rware --ray          # as tasks of a local Ray
    python benchmarks/learning.py --study rware --ray-address HOST:6379   # on a Ray cluster

Ray is optional: `pip install -r requirements-bench.txt`. On a cluster, the repository is shipped
to the workers (Ray's working_dir; their Python needs requirements.txt), each task trains in a
temporary directory and returns its scalars and log, which this driver writes: no shared
filesystem is needed.
"""

import argparse
import contextlib
import csv
import datetime
import gzip
import heapq
import importlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.plot import open_csv  # noqa: E402 -- after the path; plot imports matplotlib only when drawing


@dataclass(frozen=True)
class Budget:
    total_timesteps: int
    eval_interval: int
    eval_episodes: int
    flags: tuple[str, ...] = ()  # extra flags of the script (not given to the peer)


# ---- The study table: budgets per (script, env family), then the studies --------------------
# Peers train with the budget of their CADP counterpart (PEER_COUNTERPART): peer qmix as cadp_qmix, ...
Q_LEARNING = Budget(total_timesteps=100_000, eval_interval=10_000, eval_episodes=32)
# MAPPO on LBF: 200k steps, as far as the peer's MAPPO (~355 env steps/s here) can follow on 2 cores
PPO_LBF = Budget(total_timesteps=200_000, eval_interval=10_000, eval_episodes=32)
PPO = Budget(total_timesteps=300_000, eval_interval=10_000, eval_episodes=32)
# RWARE: 500-step episodes; the default 5000-episode replay would take ~3 GB per run, and 32 eval
# episodes every 10k steps would play more steps than training does
RWARE_Q_LEARNING = Budget(
    total_timesteps=100_000, eval_interval=25_000, eval_episodes=8, flags=("--buffer-size", "1000")
)
RWARE_PPO = Budget(total_timesteps=100_000, eval_interval=25_000, eval_episodes=8)
SMOKE = Budget(total_timesteps=200, eval_interval=100, eval_episodes=2, flags=("--num-envs", "2"))
BUDGETS: dict[tuple[str, str], Budget] = {
    ("cadp_qmix", "lbforaging"): Q_LEARNING,
    ("cadp_vdn", "lbforaging"): Q_LEARNING,
    ("cadp_qplex", "lbforaging"): Q_LEARNING,
    ("cadp_mappo", "lbforaging"): PPO_LBF,
    ("cadp_qmix", "rware"): RWARE_Q_LEARNING,
    ("cadp_vdn", "rware"): RWARE_Q_LEARNING,
    ("cadp_qplex", "rware"): RWARE_Q_LEARNING,
    ("cadp_mappo", "rware"): RWARE_PPO,
    ("cadp_qmix", "mpe2"): Q_LEARNING,
    ("cadp_vdn", "mpe2"): Q_LEARNING,
    ("cadp_qplex", "mpe2"): Q_LEARNING,
    ("cadp_mappo", "mpe2"): PPO,
    ("cadp_qmix", "matrix"): SMOKE,
    ("cadp_vdn", "matrix"): SMOKE,
    ("cadp_qplex", "matrix"): SMOKE,
    ("cadp_mappo", "matrix"): replace(SMOKE, flags=SMOKE.flags + ("--num-steps", "10")),
}
SCRIPTS = ("cadp_qmix", "cadp_vdn", "cadp_mappo")  # the lbf, rware and mpe studies' (cadp_qplex has its own)
PEER_COUNTERPART = {"qmix": "cadp_qmix", "vdn": "cadp_vdn", "mappo": "cadp_mappo"}

# The ablation's budgets, from single-seed pilots of the advice-off QMIX (pymarl's RNN agent): on the LBF
# task it rose to ~0.42 by 70k steps and held there to 180k (training return alike, so not a greedy
# deadlock); on 2s3z it won 3-34% of its eval battles from 30k to 90k (return ~1.0 of 2, random play
# 0.36). Both clearly above random, not saturated. MAPPO's, from pilots of its advice-off actor: on
# the LBF task 0.44-0.58 from 75k to 400k steps, still rising; on 2s3z a return of 0.70 at 100k and
# 1.0 at 300k, with its first wins (6-19%) from 200k.
ABLATION_QMIX_LBF = Budget(total_timesteps=100_000, eval_interval=5_000, eval_episodes=32)
ABLATION_QMIX_SMAX = Budget(total_timesteps=60_000, eval_interval=5_000, eval_episodes=32)
ABLATION_MAPPO_LBF = Budget(total_timesteps=500_000, eval_interval=10_000, eval_episodes=32)
ABLATION_MAPPO_SMAX = Budget(total_timesteps=300_000, eval_interval=10_000, eval_episodes=32)
ABLATION_BUDGETS: dict[tuple[str, str], Budget] = {
    ("cadp_qmix", "lbforaging"): ABLATION_QMIX_LBF,
    ("cadp_qmix", "smax"): ABLATION_QMIX_SMAX,
    ("cadp_mappo", "lbforaging"): ABLATION_MAPPO_LBF,
    ("cadp_mappo", "smax"): ABLATION_MAPPO_SMAX,
}
ABLATION_LBF = "lbforaging:Foraging-2s-10x10-3p-3f-v3"
ABLATION_SMAX = "smax:2s3z"
# the scripts' default, explicit in every job: plot.py reads each run's breakpoint off its flags
ABLATION_PRUNE_START = "0.67"

# The paper's SMAC experiment on SMAX (`--study smax`), with the release's schedules: epsilon over 50k
# steps on 5m_vs_6m and 500k on 3s5z_vs_3s6z; pruning from 700k of 1.05M and 3M of 4M steps for QMIX and
# VDN; MAPPO as the release's 5m_vs_6m script (10M steps, pruning from 6M, clip 0.05, 10 epochs on rollouts of
# 8 envs x 400 steps in one minibatch).
# Checkpoints every SMAX_CHECKPOINT_INTERVAL steps, so an interrupted run continues where it stopped.
SMAX_5M = "smax:5m_vs_6m"
SMAX_3S5Z = "smax:3s5z_vs_3s6z"
# QMIX/VDN replay buffers (1.8 GiB on 5m_vs_6m, 4.2 GiB on 3s5z_vs_3s6z) are over the scripts' 512 MiB for
# checkpoints: those hold the actions taken instead (~5 MiB), which a resume replays through the deterministic SMAX
# envs to rebuild the buffer, so that a run stopped and continued is the run it would have been uninterrupted, and
# small enough to carry to another machine (--export-checkpoints)
SMAX_Q_5M = Budget(
    total_timesteps=1_050_000,
    eval_interval=20_000,
    eval_episodes=32,
    flags=("--exploration-steps", "50000", "--prune-start-fraction", "0.6667"),
)
# 3s5z_vs_3s6z below the paper's 4M steps, set when a run had to end on the machine that started it (a 4M-step
# CADP-QMIX run is ~15 h; 6 such runs would be ~65 h of a 2-core machine), so 500k: CADP-QMIX ran at 82
# env steps/s past its start beside a QMIX run (179), and slower phases come (~2 h at 75), with the release's
# schedules scaled to it: epsilon over 1/8 of the run (500k of 4M) and pruning from 3/4. `--total-timesteps
# 4000000` with `--only 3s5z` is the paper's length, the epsilon then still over 62.5k steps.
SMAX_Q_3S5Z = Budget(
    total_timesteps=500_000,
    eval_interval=20_000,
    eval_episodes=32,
    flags=("--exploration-steps", "62500", "--prune-start-fraction", "0.75"),
)
# MAPPO below the release's 10M steps for the same reason (a 10M CADP-MAPPO run is ~6 h here): 3M, pruning from 0.6
SMAX_PPO_5M = Budget(
    total_timesteps=3_000_000,
    eval_interval=50_000,
    eval_episodes=32,
    flags=(
        *("--prune-start-fraction", "0.6", "--clip-coef", "0.05", "--update-epochs", "10"),
        *("--num-envs", "8", "--num-steps", "400", "--num-minibatches", "1"),
    ),
)
SMAX_BUDGETS: dict[tuple[str, str], Budget] = {
    ("cadp_qmix", SMAX_5M): SMAX_Q_5M,
    ("cadp_vdn", SMAX_5M): SMAX_Q_5M,
    ("cadp_qmix", SMAX_3S5Z): SMAX_Q_3S5Z,
    ("cadp_mappo", SMAX_5M): SMAX_PPO_5M,
}
SMAX_CHECKPOINT_INTERVAL = 50_000
# The release's conditions on 5m_vs_6m (`--study smac_scale`): SMAC's reward scale (a battle's largest return 20, x10
# SMAX's; the release's alphas and grad-norm clip were set at it) and, for QMIX, the release's mixer; the release's
# schedules as in `smax` (epsilon over 50k steps, breakpoint at 700k of 1.05M). Its SMAX-scale counterpart cells are
# the `smax` study's 5m_vs_6m QMIX runs (seeds 1-5); benchmarks/smac_scale.py reports the 2x2 design from both.
SMAC_SCALE = ("--env-kwargs", '{"reward_scale_rate": 20}')
SMAC_SCALE_BUDGETS: dict[tuple[str, str], Budget] = {
    ("cadp_qmix", SMAX_5M): replace(SMAX_Q_5M, flags=(*SMAX_Q_5M.flags, *SMAC_SCALE, "--mixer", "release")),
    ("cadp_vdn", SMAX_5M): replace(SMAX_Q_5M, flags=(*SMAX_Q_5M.flags, *SMAC_SCALE)),
}
# Google Research Football (`--study grf`, needs install_grf.sh): the release's 3-vs-1 scenario with its settings
# (common/gfootball.py) and its 50k-step epsilon schedule, at the budget that fits beside other work on 2 cores
# (the authors' runs are 5M steps long); 16 eval episodes per model, as each is a GRF engine of ~55 MiB
GRF_3V1 = "gfootball:academy_3_vs_1_with_keeper"
GRF_Q = Budget(total_timesteps=100_000, eval_interval=10_000, eval_episodes=16, flags=("--exploration-steps", "50000"))


@dataclass(frozen=True)
class Arm:
    """One arm of an ablation: labelled `{base}_{suffix}` without advice (qmix_rnn), else `cadp_{base}_{suffix}`."""

    suffix: str
    advice: bool
    flags: tuple[str, ...]  # the script's, after the budget's; `--no-advice` comes from `advice`

    def label(self, script: str) -> str:
        return f"{script if self.advice else script.removeprefix('cadp_')}_{self.suffix}"


ABLATION_ARMS = (
    Arm("rnn", False, ("--advice-placement", "post-gru")),  # the base algorithm's: pymarl's RNN agent, MAPPO's actor
    Arm("gru", False, ("--advice-placement", "gru-input")),  # the previous network: a GRU on the raw observation
    Arm("post_gru", True, ("--advice-placement", "post-gru")),
    Arm("gru_input", True, ("--advice-placement", "gru-input")),
    Arm("post_gru_eq3", True, ("--advice-placement", "post-gru", "--prune-loss-scale", "eq3")),
    Arm("post_gru_noprune", True, ("--advice-placement", "post-gru", "--prune-start-fraction", "1")),
)


@dataclass(frozen=True)
class Study:
    env_ids: tuple[str, ...]
    scripts: tuple[str, ...] = SCRIPTS  # each with and without advice, or in each of `arms`
    seeds: tuple[int, ...] = (1, 2, 3)
    peers: tuple[str, ...] = ()  # algos of benchmarks/peer.py: "qmix", "vdn", "mappo"
    arms: tuple[Arm, ...] = ()  # an ablation: these arms instead of {advice, no advice}, run in the table's order
    budgets: dict[tuple[str, str], Budget] | None = None  # instead of BUDGETS; keys (script, env id or family)
    # instead of the grid: (env id, script, seeds) in the order to run them, each seed with and without advice
    plan: tuple[tuple[str, str, tuple[int, ...]], ...] = ()
    checkpoint_interval: int = 0  # > 0: the jobs checkpoint, and a rerun continues an interrupted one


STUDIES: dict[str, Study] = {
    "lbf": Study(
        env_ids=("lbforaging:Foraging-8x8-2p-3f-v3", "lbforaging:Foraging-2s-8x8-2p-3f-v3"), peers=("qmix", "mappo")
    ),
    # cadp_qplex.py on the lbf study's two tasks, with the same budgets (its own study: the lbf one is committed)
    "qplex": Study(
        env_ids=("lbforaging:Foraging-8x8-2p-3f-v3", "lbforaging:Foraging-2s-8x8-2p-3f-v3"), scripts=("cadp_qplex",)
    ),
    "rware": Study(env_ids=("rware:rware-tiny-2ag-v2",)),
    "mpe": Study(env_ids=("mpe2:simple_spread_v3",)),
    "smoke": Study(env_ids=("matrix:two_step",), seeds=(1,)),  # seconds per job: for tests
    "ablation": Study(
        env_ids=(ABLATION_LBF, ABLATION_SMAX),
        scripts=("cadp_qmix", "cadp_mappo"),
        seeds=(1, 2, 3, 4, 5),
        arms=ABLATION_ARMS,
        budgets=ABLATION_BUDGETS,
    ),
    # the paper's items in order (issue order: 5m_vs_6m QMIX, VDN, 3s5z_vs_3s6z QMIX, MAPPO), 3 seeds
    # each, then QMIX's seeds 4 and 5 on 5m_vs_6m
    "smax": Study(
        env_ids=(SMAX_5M, SMAX_3S5Z),
        budgets=SMAX_BUDGETS,
        checkpoint_interval=SMAX_CHECKPOINT_INTERVAL,
        plan=(
            (SMAX_5M, "cadp_qmix", (1, 2, 3)),
            (SMAX_5M, "cadp_vdn", (1, 2, 3)),
            (SMAX_3S5Z, "cadp_qmix", (1, 2, 3)),
            (SMAX_5M, "cadp_mappo", (1, 2, 3)),
            (SMAX_5M, "cadp_qmix", (4, 5)),
        ),
    ),
    # QMIX and CADP-QMIX at SMAC's reward scale with the release's mixer, 5 paired seeds, then VDN's pair on 3 seeds
    "smac_scale": Study(
        env_ids=(SMAX_5M,),
        budgets=SMAC_SCALE_BUDGETS,
        checkpoint_interval=SMAX_CHECKPOINT_INTERVAL,
        plan=((SMAX_5M, "cadp_qmix", (1, 2, 3, 4, 5)), (SMAX_5M, "cadp_vdn", (1, 2, 3))),
    ),
    "grf": Study(env_ids=(GRF_3V1,), scripts=("cadp_qmix",), seeds=(1,), budgets={("cadp_qmix", "gfootball"): GRF_Q}),
    "ablation-smoke": Study(
        env_ids=("matrix:two_step",),
        scripts=("cadp_qmix", "cadp_mappo"),
        seeds=(1,),
        arms=tuple(arm for arm in ABLATION_ARMS if arm.suffix in ("rnn", "post_gru")),
    ),  # for tests
}

# Rough env steps per second of one run while two share 2 cores, measured on LBF 8x8 (docs/results.md: Speed);
# only for ordering the jobs (longest first) and the dry run's estimate. Peers: assumed as the plain ones.
ROUGH_SPS = {
    "cadp_qmix": 800,
    "cadp_vdn": 800,
    "cadp_qplex": 700,
    "qplex": 1_100,
    "cadp_mappo": 3_100,
    "qmix": 1_300,
    "vdn": 1_300,
    "mappo": 4_800,
    "peer_qmix": 1_300,
    "peer_vdn": 1_300,
    "peer_mappo": 4_800,
}
# SMAX 5m_vs_6m, 2 runs on 2 cores: seed 1's whole 1.05M-step runs averaged CADP-QMIX 158 env steps/s, QMIX 319
# (by phase 70-195 and 190-430: SPS falls while episodes are short, as updates come per episode); a little under
# those, as --time-limit starts a job only if this estimate ends in time. MAPPO with the release's rollouts and 10
# epochs, 48k steps beside two runs: CADP 322, plain 436 env steps/s, scaled by 3/2.
ROUGH_SPS_SMAX = {"cadp_qmix": 140, "cadp_vdn": 140, "qmix": 280, "vdn": 280, "cadp_mappo": 480, "mappo": 650}
# maps slower than the family's figure: 3s5z_vs_3s6z's 8 agents (15k steps beside two runs: CADP-QMIX 62, QMIX 127)
ROUGH_SPS_MAPS = {"smax:3s5z_vs_3s6z": {"cadp_qmix": 75, "cadp_vdn": 75, "qmix": 150, "vdn": 150}}
# GRF 3-vs-1 (benchmarks/results/gfootball_throughput.csv: cadp_qmix.py 130 steps/s alone on 2 cores, 62 beside 2 runs)
ROUGH_SPS_GRF = {"cadp_qmix": 60, "qmix": 70}
# besides every eval/ tag; self_attention_weight and prune_coef are logged by advice runs (pruning), win_rate on
# envs with wins. The losses are the ones that show a run diverging or collapsing late (Q-values drifting from
# their targets, a value loss blowing up, the policy's entropy gone), so that committed results can tell why a run
# that had learned lost it: Q-learning's, then PPO's; a run keeps those its script logs.
KEPT_TAGS = (
    "charts/episodic_return",
    "charts/SPS",
    "charts/self_attention_weight",
    "charts/prune_coef",
    "charts/win_rate",
    "losses/td_loss",
    "losses/prune_loss",
    "losses/q_values",
    "losses/target_q_values",
    "losses/grad_norm",
    "losses/value_loss",
    "losses/entropy",
    "losses/approx_kl",
)
TRAINING_POINTS = 200  # KEPT_TAGS: the mean over at most this many step bins per run, to keep the CSV small
# a run logs every few seconds (checkpoint writes and evaluations: under a minute); a longer silence is a run
# that was stopped and resumed or paused (SIGSTOP), and is left out of its wall times
STOPPED_GAP_S = 300.0
CSV_COLUMNS = ["study", "env_id", "algo", "script", "advice", "seed", "tag", "step", "wall_time_s", "value"]
PEER = "peer"


# flags (with a value) that say how a run's checkpoints are stored, not what it computes: left out of the
# signature, so that a study can change them without redoing the runs it has
STORAGE_FLAGS = ("--checkpoint-buffer-max-mb",)


@dataclass(frozen=True)
class Job:
    study: str
    env_id: str
    script: str  # cadp_qmix, cadp_vdn, cadp_mappo, or "peer"
    algo: str  # the label in the results: cadp_qmix, qmix (no advice), peer_qmix, ...
    advice: bool
    seed: int
    budget: Budget
    arm_flags: tuple[str, ...] = ()  # an ablation arm's flags, after the budget's
    checkpoint_interval: int = 0  # > 0: periodic checkpoints, from which a rerun continues an interrupted job

    @property
    def name(self) -> str:
        return job_name(self.env_id, self.algo, self.seed)

    def flags(self) -> list[str]:
        """The script's command-line flags."""
        b = self.budget
        return [
            "--env-id",
            self.env_id,
            "--seed",
            str(self.seed),
            "--total-timesteps",
            str(b.total_timesteps),
            "--eval-interval",
            str(b.eval_interval),
            "--eval-episodes",
            str(b.eval_episodes),
            "--torch-threads",
            "1",
            "--checkpoint-interval",
            str(self.checkpoint_interval),
            *([] if self.advice else ["--no-advice"]),
            *b.flags,
            *self.arm_flags,
        ]

    def signature(self) -> str:
        """What the run was asked to do; a finished job is skipped only while this stays the same."""
        if self.script == PEER:
            b = self.budget
            return json.dumps(
                [
                    "peer.run_learning",
                    self.algo.removeprefix("peer_"),
                    self.env_id,
                    self.seed,
                    b.total_timesteps,
                    b.eval_interval,
                    b.eval_episodes,
                ]
            )
        flags = self.flags()
        for flag in STORAGE_FLAGS:
            if flag in flags:
                del flags[flags.index(flag) : flags.index(flag) + 2]
        return json.dumps([f"{self.script}.py", *flags])

    def rough_seconds(self) -> float:
        family_speeds = {"smax": ROUGH_SPS_SMAX, "gfootball": ROUGH_SPS_GRF}.get(env_family(self.env_id), {})
        speeds = {**ROUGH_SPS, **family_speeds, **ROUGH_SPS_MAPS.get(self.env_id, {})}
        return self.budget.total_timesteps / speeds.get(self.algo, speeds.get(self.script, 1_000))


def job_name(env_id: str, algo: str, seed) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', env_id)}__{algo}__{seed}"


def env_family(env_id: str) -> str:
    return env_id.partition(":")[0]


def budget_of(study: Study, script: str, env_id: str) -> Budget:
    budgets = study.budgets or BUDGETS
    return budgets.get((script, env_id)) or budgets[script, env_family(env_id)]


def expand_plan(study_name: str, study: Study, seeds=None) -> list[Job]:
    """A planned study's jobs, in its order: each item's seeds (or `seeds`), advice on then off."""
    jobs = []
    for env_id, script, plan_seeds in study.plan:
        for seed in seeds or plan_seeds:
            for advice in (True, False):
                jobs.append(
                    Job(
                        study_name,
                        env_id,
                        script,
                        script if advice else script.removeprefix("cadp_"),
                        advice,
                        seed,
                        budget_of(study, script, env_id),
                    )
                )
    return list(dict.fromkeys(jobs))  # --seeds: an item's seeds once


def expand_arms(study_name: str, study: Study, seeds) -> list[Job]:
    """An ablation's jobs: script by script (a stopped study has the first script's arms), seed by seed
    within a script (a stopped study has every arm on as many seeds), each env id, each arm."""
    jobs = []
    for script in study.scripts:
        for seed in seeds:
            for env_id in study.env_ids:
                for arm in study.arms:
                    flags = (
                        arm.flags
                        if "--prune-start-fraction" in arm.flags
                        else (*arm.flags, "--prune-start-fraction", ABLATION_PRUNE_START)
                    )
                    jobs.append(
                        Job(
                            study_name,
                            env_id,
                            script,
                            arm.label(script),
                            arm.advice,
                            seed,
                            budget_of(study, script, env_id),
                            flags,
                        )
                    )
    return jobs


def expand(study_name: str, seeds=None, total_timesteps=None, only=None) -> list[Job]:
    """The jobs of a study, optionally with other seeds, another budget, and only names containing `only`."""
    study = STUDIES[study_name]
    if study.arms:
        jobs = expand_arms(study_name, study, seeds or study.seeds)
    elif study.plan:
        jobs = expand_plan(study_name, study, seeds)
    else:
        jobs = []
        for env_id in study.env_ids:
            for seed in seeds or study.seeds:
                for script in study.scripts:
                    budget = budget_of(study, script, env_id)
                    for advice in (True, False):
                        algo = script if advice else script.removeprefix("cadp_")
                        jobs.append(Job(study_name, env_id, script, algo, advice, seed, budget))
                for peer_algo in study.peers:
                    budget = replace(BUDGETS[PEER_COUNTERPART[peer_algo], env_family(env_id)], flags=())
                    jobs.append(Job(study_name, env_id, PEER, f"peer_{peer_algo}", False, seed, budget))
    if study.checkpoint_interval:  # every kind of study; the peer's runs have no checkpoints
        jobs = [
            job if job.script == PEER else replace(job, checkpoint_interval=study.checkpoint_interval) for job in jobs
        ]
    if total_timesteps:
        jobs = [replace(job, budget=replace(job.budget, total_timesteps=total_timesteps)) for job in jobs]
    return [job for job in jobs if only is None or only in job.name]


# ---- Running one job: in a pool process or a Ray task -------------------------------------------
def read_scalars(run_dir: Path) -> list[tuple[str, int, float, float]]:
    """(tag, step, seconds of running since the run's first event, value) of the eval/ tags and KEPT_TAGS; the
    KEPT_TAGS thinned to at most TRAINING_POINTS step bins (mean value, last step and time of each bin).
    Running time leaves out every silence of STOPPED_GAP_S or more: the time a run was stopped before it
    resumed (with the steps it redid from its checkpoint, whose first events TensorBoard purges) or paused."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    tags = [tag for tag in accumulator.Tags()["scalars"] if tag.startswith("eval/") or tag in KEPT_TAGS]
    events = {tag: sorted(accumulator.Scalars(tag), key=lambda e: (e.step, e.wall_time)) for tag in tags}
    # the first event is normally the file's own header; a writer that sets its scalars' wall times
    # itself may place them earlier, so the origin is whichever comes first
    times = np.unique(
        [accumulator.FirstEventTimestamp()] + [e.wall_time for tag_events in events.values() for e in tag_events]
    )
    origin, gaps = times[0], np.diff(times)
    stopped = np.concatenate([[0.0], np.cumsum(np.where(gaps >= STOPPED_GAP_S, gaps, 0.0))])  # at each time

    def running(wall_time: float) -> float:
        return float(wall_time - origin - stopped[np.searchsorted(times, wall_time)])

    rows = []
    for tag, tag_events in events.items():
        points = [(e.step, running(e.wall_time), e.value) for e in tag_events]
        if tag in KEPT_TAGS and len(points) > TRAINING_POINTS:
            first, last = points[0][0], points[-1][0]
            bins: dict[int, list] = {}
            for point in points:
                bins.setdefault((point[0] - first) * TRAINING_POINTS // (last - first + 1), []).append(point)
            points = [(group[-1][0], group[-1][1], sum(p[2] for p in group) / len(group)) for group in bins.values()]
        rows += [(tag, step, wall, value) for step, wall, value in points]
    return rows


def resumable_run(job: Job, job_dir: Path) -> str | None:
    """The run directory (relative to job_dir) of an interrupted run of this job that left a periodic
    checkpoint, when the job checkpoints and the directory was started with the job's current signature."""
    try:
        if job.checkpoint_interval <= 0 or (job_dir / "signature").read_text() != job.signature():
            return None
    except OSError:
        return None
    runs = sorted(path for path in (job_dir / "runs").glob("*") if path.is_dir())
    if len(runs) == 1 and any((runs[0] / "checkpoints").glob("*.cadp_model")):
        return str(runs[0].relative_to(job_dir))
    return None


def rough_seconds_left(job: Job, job_dir: Path, results_dir: Path | None = None) -> float:
    """A job's rough duration, less the share of its budget that its newest checkpoint already did (its own, or
    one carried in results_dir from another clone, whichever got further)."""
    run = resumable_run(job, job_dir)
    newest = newest_checkpoint(job_dir, run) if run is not None else None
    done = max(newest[0] if newest else 0, carried_step(results_dir, job) if results_dir else 0)
    return job.rough_seconds() * max(0.0, 1.0 - done / job.budget.total_timesteps)


def newest_checkpoint(job_dir: Path, run: str) -> tuple[int, Path] | None:
    """(step, path) of the newest periodic checkpoint of the run directory `run` of job_dir."""
    from common.checkpoint import periodic_checkpoints  # torch, imported only where checkpoints are looked at

    found = periodic_checkpoints(str(job_dir / run))
    return (found[-1][0], Path(found[-1][1])) if found else None


# ---- Carrying an unfinished job to another clone: its newest checkpoint and its scalars so far -------
CARRY_MAX_BYTES = 64 << 20  # a checkpoint that holds its replay buffer (GiBs) is not carried
EARLIER = "earlier_scalars.csv"  # in a job directory: the rows of the run up to where it was carried from


def carry_dir(results_dir: Path, job: Job) -> Path:
    return results_dir / "checkpoints" / job.study / job.name


def read_carried(results_dir: Path, job: Job) -> dict | None:
    """What export_checkpoints wrote for this job ({"signature", "run", "step"}), or None if nothing was carried."""
    try:
        return json.loads((carry_dir(results_dir, job) / "carried").read_text())
    except (OSError, ValueError):
        return None


def carried_step(results_dir: Path, job: Job) -> int:
    """The step of the checkpoint carried for this job, 0 if none is, or it is for other flags."""
    carried = read_carried(results_dir, job)
    return int(carried["step"]) if carried and carried.get("signature") == job.signature() else 0


def read_rows(path: Path) -> list[tuple[str, int, float, float]]:
    with open(path, newline="") as f:
        return [(tag, int(step), float(wall), float(value)) for tag, step, wall, value in list(csv.reader(f))[1:]]


def write_rows(path: Path, rows) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["tag", "step", "wall_time_s", "value"])
    writer.writerows((tag, step, f"{wall:.3f}", f"{value:.7g}") for tag, step, wall, value in rows)
    write_atomic(path, text.getvalue())


def with_earlier(job_dir: Path, rows: list, up_to: int | None = None) -> list:
    """A run's rows (read_scalars) after the rows it was carried with (EARLIER, up to its checkpoint's step), its
    running times counted on from theirs; `up_to`: only the rows up to that step (what a checkpoint covers)."""
    carried = job_dir / EARLIER
    if carried.exists():
        earlier, step = read_rows(carried), json.loads((job_dir / "carried").read_text())["step"]
        offset = max((wall for _, _, wall, _ in earlier), default=0.0)
        rows = earlier + [(tag, s, wall + offset, value) for tag, s, wall, value in rows if s > step]
    return [row for row in rows if up_to is None or row[1] <= up_to]


def export_checkpoints(jobs: list[Job], job_dirs: dict[Job, Path], results_dir: Path) -> list[str]:
    """--export-checkpoints: for each job with an interrupted or running run, its newest checkpoint and its rows up
    to it, into carry_dir (to copy, so that another clone continues the job: import_carried). Returns what it did,
    line by line."""
    lines = []
    for job in jobs:
        run = resumable_run(job, job_dirs[job])
        newest = newest_checkpoint(job_dirs[job], run) if run else None
        if newest is None:
            continue
        step, checkpoint = newest
        if checkpoint.stat().st_size > CARRY_MAX_BYTES:
            lines.append(
                f"{job.name}: not carried: its checkpoint at step {step} holds the replay buffer "
                f"({checkpoint.stat().st_size / 2**30:.1f} GiB; it was started with a larger "
                "--checkpoint-buffer-max-mb), so it continues only where it is"
            )
            continue
        target = carry_dir(results_dir, job)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shutil.copyfile(checkpoint, target / checkpoint.name)
        write_rows(target / "scalars.csv", with_earlier(job_dirs[job], read_scalars(job_dirs[job] / run), up_to=step))
        (target / "carried").write_text(json.dumps({"signature": job.signature(), "run": Path(run).name, "step": step}))
        lines.append(f"{job.name}: step {step} ({checkpoint.stat().st_size / 2**20:.1f} MiB) -> {target}")
    return lines


def pack_carried(results_dir: Path, job: Job) -> dict | None:
    """The run export_checkpoints carried for this job, as data: {"carried" (read_carried), "checkpoint" (bytes),
    "scalars" (text), "source"}; None if nothing was carried, or it is for other flags (said so). As data, it
    reaches a Ray cluster's task too, whose working_dir leaves the git-ignored checkpoints out."""
    source, carried = carry_dir(results_dir, job), read_carried(results_dir, job)
    if carried is None:
        return None
    if carried.get("signature") != job.signature():
        print(f"note: {source} is for another version of {job.name} (its flags changed): not continued from")
        return None
    return {
        "carried": carried,
        "checkpoint": (source / f"step_{carried['step']}.cadp_model").read_bytes(),
        "scalars": (source / "scalars.csv").read_text(),
        "source": str(source),
    }


def unpack_carried(job: Job, job_dir: Path, packed: dict) -> None:
    """A carried run (pack_carried) becomes an interrupted run in job_dir, its checkpoint and its rows so far,
    unless job_dir holds a run of its own that got as far."""
    carried = packed["carried"]
    run = resumable_run(job, job_dir)
    here = newest_checkpoint(job_dir, run) if run else None
    if here is not None and here[0] >= carried["step"]:
        return
    start_job_dir(job, job_dir)
    checkpoints = job_dir / "runs" / carried["run"] / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / f"step_{carried['step']}.cadp_model").write_bytes(packed["checkpoint"])
    (job_dir / EARLIER).write_text(packed["scalars"])
    (job_dir / "carried").write_text(json.dumps(carried))
    (job_dir / "log.txt").write_text(f"carried from another clone at step {carried['step']} ({packed['source']})\n")
    print(f"{job.name}: continues from step {carried['step']}, carried in {packed['source']}", flush=True)


def import_carried(jobs: list[Job], job_dirs: dict[Job, Path], results_dir: Path) -> None:
    """Each job carried from another clone (export_checkpoints) that has no run of its own here, or one that got
    less far, becomes an interrupted run here."""
    for job in jobs:
        if (packed := pack_carried(results_dir, job)) is not None:
            unpack_carried(job, job_dirs[job], packed)


def run_ended(job: Job, log_path: Path) -> bool:
    """Whether the job's log (appended to by each resume) has the script's final evaluation at its budget."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return False
    return any(int(steps) >= job.budget.total_timesteps for steps in re.findall(r"final eval after (\d+) steps", text))


def start_job_dir(job: Job, job_dir: Path) -> None:
    """An empty job directory that knows which job it is for (resumable_run checks it)."""
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    (job_dir / "signature").write_text(job.signature())


def _train_script(job: Job, job_dir: Path, log_path: Path, root: Path, resume_from: str | None) -> Path:
    if resume_from and run_ended(job, log_path):
        # the run ended, but its driver stopped before collecting it: collect it as it is (a resume
        # from its last checkpoint would be refused, the run being complete)
        with open(log_path, "a") as log:
            log.write("the run had ended before it was collected: collected without training\n")
        return job_dir / resume_from
    # resumed: the same flags, which override the checkpoint's own (equal) ones; the script's
    # --resume takes a run directory and continues from its newest checkpoint
    flags = [*job.flags(), *(["--resume", resume_from] if resume_from else [])]
    command = [sys.executable, str(root / f"{job.script}.py"), *flags]
    with open(log_path, "a" if resume_from else "w") as log:
        log.write(f"$ python {job.script}.py {' '.join(flags)}\n")
        log.flush()
        code = subprocess.run(command, check=False, cwd=job_dir, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"exit code {code}")
    if "final eval after" not in log_path.read_text(errors="replace").rpartition("$ python")[2]:
        raise RuntimeError("exit code 0 without the final evaluation (stopped by a signal?)")
    run_dirs = sorted(path for path in (job_dir / "runs").iterdir() if path.is_dir())
    if len(run_dirs) != 1:
        raise RuntimeError(f"expected one run directory in {job_dir / 'runs'}, found {len(run_dirs)}")
    return run_dirs[0]


def _train_peer(job: Job, job_dir: Path, log_path: Path) -> Path:
    peer = importlib.import_module("benchmarks.peer")
    run_dir, b = job_dir / "peer", job.budget
    with open(log_path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"peer.run_learning({job.signature()})", flush=True)
        try:
            peer.run_learning(
                algo=job.algo.removeprefix("peer_"),
                env_id=job.env_id,
                seed=job.seed,
                total_timesteps=b.total_timesteps,
                eval_interval=b.eval_interval,
                eval_episodes=b.eval_episodes,
                run_dir=str(run_dir),
            )
        finally:  # the peer's own output, for the report of a failure
            peer_log = run_dir / "peer.log"
            if peer_log.exists():
                print(f"--- the end of {peer_log.name} ---\n{log_tail(peer_log.read_text(errors='replace'), 40)}")
    if not (run_dir / "done").exists():
        raise RuntimeError(f"peer.run_learning returned without writing {run_dir / 'done'}")
    return run_dir


def run_job(job: Job, job_dir: str | None = None, root: str | None = None, carried: dict | None = None) -> dict:
    """Train one job in job_dir (emptied first, unless it holds an interrupted run of the job to
    resume: resumable_run; None: a temporary directory, removed after, where the run continues from
    `carried`, pack_carried's, if given) with the scripts of `root` (None: the current directory, as in
    a Ray task with a working_dir). Returns
    {"ok", "error", "rows" (read_scalars), "log" (its text), "seconds" (of this call)}; never raises."""
    root_path = Path(root or os.getcwd())
    if str(root_path) not in sys.path:
        sys.path.insert(0, str(root_path))
    scratch = None if job_dir else tempfile.mkdtemp(prefix="cadp-job-")
    path = Path(job_dir or Path(scratch) / job.name)
    if scratch and carried is not None:
        unpack_carried(job, path, carried)
    resume_from = resumable_run(job, path)
    if resume_from is None:
        start_job_dir(job, path)
    log_path, start = path / "log.txt", time.time()
    try:
        run_dir = (
            _train_peer(job, path, log_path)
            if job.script == PEER
            else _train_script(job, path, log_path, root_path, resume_from)
        )
        rows = read_scalars(run_dir) if job.script == PEER else with_earlier(path, read_scalars(run_dir))
        error = None
    except Exception as e:  # noqa: BLE001 -- any failure is reported by the driver, with the log's tail
        rows, error = [], f"{type(e).__name__}: {e}"
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"ok": error is None, "error": error, "rows": rows, "log": log, "seconds": time.time() - start}


def _failure(error: str) -> dict:
    return {"ok": False, "error": error, "rows": [], "log": "", "seconds": 0.0}


# ---- Executors: yield (job, result) as jobs finish ------------------------------------------------
def run_local(jobs: list[Job], job_dirs: dict[Job, Path], workers: int, deadline: float | None = None):
    """The jobs on `workers` processes, in their order. With a deadline (time.monotonic()), a job starts only
    when its rough duration left (rough_seconds_left) ends before it: the first such job in the order."""

    def next_job(queue: list[Job]) -> Job | None:
        left = math.inf if deadline is None else deadline - time.monotonic()
        fitting = next((job for job in queue if rough_seconds_left(job, job_dirs[job]) <= left), None)
        if fitting is not None:
            queue.remove(fitting)
        return fitting

    queue, running = list(jobs), {}
    if workers == 1:  # in this process, one after the other
        while (job := next_job(queue)) is not None:
            yield job, run_job(job, str(job_dirs[job]), str(ROOT))
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # a job is handed to the pool only when a worker is free: after Ctrl-C, no further job starts
        while True:
            while len(running) < workers and (job := next_job(queue)) is not None:
                running[pool.submit(run_job, job, str(job_dirs[job]), str(ROOT))] = job
            if not running:
                return
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                try:
                    result = future.result()
                except Exception as e:  # noqa: BLE001 -- e.g. a pool process that died
                    result = _failure(f"{type(e).__name__}: {e}")
                yield job, result


RAY_EXCLUDES = [
    ".git",
    ".venv",
    ".ci-venv",
    "runs",
    "benchmarks/runs",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
    "__pycache__",
]


def run_ray(jobs: list[Job], job_dirs: dict[Job, Path], workers: int, address: str | None, results_dir: Path):
    """Each job is a Ray task with num_cpus=1. Local (address None): a Ray of `workers` CPUs whose tasks
    write into the job directories. A cluster: the repository goes to the workers as working_dir and
    the tasks train in temporary directories, continuing from the run carried in results_dir if there
    is one (pack_carried, sent with the task), returning their scalars and logs."""
    try:
        import ray
    except ImportError:
        raise SystemExit("error: --ray and --ray-address need Ray: pip install -r requirements-bench.txt") from None
    import logging

    if address:
        ray.init(
            address=address,
            logging_level=logging.WARNING,
            runtime_env={"working_dir": str(ROOT), "excludes": RAY_EXCLUDES},
        )
    else:
        python_path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        # address="local": a new Ray of its own, even if one already runs on this machine
        ray.init(
            address="local",
            num_cpus=workers,
            include_dashboard=False,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": {"PYTHONPATH": python_path}},
        )
    task = ray.remote(num_cpus=1, max_retries=0)(run_job)
    try:
        pending = {
            task.remote(job, None, None, pack_carried(results_dir, job))
            if address
            else task.remote(job, str(job_dirs[job]), str(ROOT)): job
            for job in jobs
        }
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                yield job, ray.get(ready[0])
            except ray.exceptions.RayError as e:
                yield job, _failure(f"Ray task failed: {e}")
    finally:
        ray.shutdown()


# ---- The driver ----------------------------------------------------------------------------------
def write_atomic(path: Path, text: str) -> None:
    """Through a temporary file and os.replace: a study killed at any moment leaves the old file or the new one.
    A .gz path gets the text gzipped with no time stamp, so that the same rows give the same bytes (no git diff)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = text.encode()
    temporary.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    os.replace(temporary, path)


def done_marker(job: Job, job_dir: Path) -> dict | None:
    """The job directory's `done` marker, if it is there with the job's signature."""
    try:
        marker = json.loads((job_dir / "done").read_text())
        return marker if marker["signature"] == job.signature() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_manifest(path: Path) -> dict:
    """{job name: {"signature", "seconds" (its running time: record), "finished"}} of the jobs whose rows the
    study CSV holds."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def is_finished(job: Job, job_dir: Path, manifest: dict | None = None) -> bool:
    """Finished here (its done marker) or where the manifest was written, with the job's current signature."""
    return (
        done_marker(job, job_dir) is not None or (manifest or {}).get(job.name, {}).get("signature") == job.signature()
    )


def record(job: Job, job_dir: Path, result: dict, elsewhere: bool = False) -> None:
    """Write what a job returned: its log (when it ran `elsewhere`, in a directory of its own), and
    when it succeeded its scalars and the `done` marker, last."""
    if elsewhere or not (job_dir / "log.txt").exists():
        shutil.rmtree(job_dir, ignore_errors=True)
        job_dir.mkdir(parents=True)
        (job_dir / "log.txt").write_text(result["log"])
    if not result["ok"]:
        return
    write_rows(job_dir / "scalars.csv", result["rows"])
    finished = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    # the run's own length, stops and pauses left out (read_scalars); this call alone would miss what a
    # resumed run did before it was stopped
    seconds = max((wall for _, _, wall, _ in result["rows"]), default=result["seconds"])
    write_atomic(
        job_dir / "done",
        json.dumps({"signature": job.signature(), "seconds": round(seconds, 1), "finished": finished}),
    )


def collect(jobs: list[Job], job_dirs: dict[Job, Path], csv_path: Path, manifest_path: Path) -> int:
    """Rewrite the study CSV and its manifest with every finished job, and return the CSV's number of rows.
    A job's rows come from its job directory when it finished here, else from the CSV as it was, while the
    manifest lists the job with its current signature (it finished in another clone). Jobs of the manifest
    that are not among `jobs` (another --seeds) keep their rows as they are."""
    manifest, old_rows = read_manifest(manifest_path), defaultdict(list)
    legacy_path = csv_path.with_suffix("")  # learning_{study}.csv, as studies wrote it before gzip; replaced here
    source = csv_path if csv_path.exists() else legacy_path if legacy_path.exists() else None
    if source is not None:
        with open_csv(source) as f:
            for row in csv.DictReader(f):
                old_rows[job_name(row["env_id"], row["algo"], row["seed"])].append([row[c] for c in CSV_COLUMNS])
    entries, rows = {}, []
    for job in jobs:
        marker = done_marker(job, job_dirs[job])
        if marker is not None:
            finished = marker.get("finished") or datetime.datetime.fromtimestamp(  # markers of before the manifest
                (job_dirs[job] / "done").stat().st_mtime, datetime.timezone.utc
            ).isoformat(timespec="seconds")
            entries[job.name] = {"signature": job.signature(), "seconds": marker["seconds"], "finished": finished}
            with open(job_dirs[job] / "scalars.csv", newline="") as scalars:
                rows += [
                    [job.study, job.env_id, job.algo, job.script, str(job.advice).lower(), job.seed, *row]
                    for row in list(csv.reader(scalars))[1:]
                ]
        elif manifest.get(job.name, {}).get("signature") == job.signature() and old_rows[job.name]:
            entries[job.name] = manifest[job.name]
            rows += old_rows[job.name]
    names = {job.name for job in jobs}
    for name, entry in manifest.items():
        if name not in names and old_rows[name]:
            entries[name] = entry
            rows += old_rows[name]
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    write_atomic(csv_path, text.getvalue())  # the rows first, then the manifest that vouches for them
    write_atomic(manifest_path, json.dumps(entries, indent=1) + "\n")
    legacy_path.unlink(missing_ok=True)
    return len(rows)


def log_tail(text: str, lines: int = 15) -> str:
    """The last lines of a log, with progress-bar redraws (carriage returns) as separate lines."""
    kept = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return "\n".join("    " + line for line in kept[-lines:])


def makespan(seconds: list[float], workers: int) -> float:
    """Duration of running these jobs, longest first, on `workers` slots."""
    slots = [0.0] * max(1, min(workers, len(seconds)))
    for s in sorted(seconds, reverse=True):
        heapq.heappush(slots, heapq.heappop(slots) + s)
    return max(slots)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True, choices=list(STUDIES))
    parser.add_argument("--seeds", type=int, nargs="+", help="instead of the study's seeds")
    parser.add_argument("--total-timesteps", type=int, help="instead of every job's budget")
    parser.add_argument(
        "--only",
        metavar="SUBSTRING",
        help="run only the jobs whose name contains this (the CSV holds every finished job of the study)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="jobs at a time (default: CPU count)")
    parser.add_argument(
        "--time-limit",
        type=float,
        metavar="HOURS",
        help="start a job only if its rough duration (--dry-run's; less what its checkpoint did) ends within "
        "HOURS of now, e.g. a machine lent for a few hours whose disk goes with it; the rest wait for the next call",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the jobs and a rough duration, run nothing")
    parser.add_argument(
        "--export-checkpoints",
        action="store_true",
        help="run nothing: copy the newest checkpoint of each unfinished job, with its scalars so far, into "
        "RESULTS_DIR/checkpoints/{study}/ (not tracked by git: checkpoints stay out of the results), to copy; "
        "a clone that has them continues those jobs from there",
    )
    parser.add_argument(
        "--machine",
        help="the machine, as the report states it (default: this one's CPU count and --workers; give it when "
        "several drivers share the machine, each with --only and --workers 1)",
    )
    parser.add_argument("--ray", action="store_true", help="run the jobs as tasks of a local Ray")
    parser.add_argument("--ray-address", help="run the jobs as tasks of this Ray cluster")
    parser.add_argument(
        "--runs-dir", type=Path, default=ROOT / "benchmarks" / "runs", help="job directories go in RUNS_DIR/{study}/"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=ROOT / "benchmarks" / "results", help="the CSV, PNGs and table go here"
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.time_limit is not None and args.time_limit <= 0:
        parser.error("--time-limit must be > 0 hours")
    if args.time_limit is not None and (args.ray or args.ray_address):
        parser.error("--time-limit schedules the local process pool; with --ray/--ray-address, pick jobs with --only")

    all_jobs = expand(args.study, args.seeds, args.total_timesteps)
    jobs = [job for job in all_jobs if args.only is None or args.only in job.name]
    if not jobs:
        parser.error(f"no job of study {args.study!r} matches --only {args.only!r}")
    job_dirs = {job: args.runs_dir / args.study / job.name for job in all_jobs}
    if not (STUDIES[args.study].arms or STUDIES[args.study].plan):  # those keep their order: a stopped one is balanced
        jobs.sort(key=Job.rough_seconds, reverse=True)  # longest first
    csv_path = args.results_dir / f"learning_{args.study}.csv.gz"
    manifest_path = args.results_dir / f"learning_{args.study}.jobs.json"
    manifest = read_manifest(manifest_path)
    todo = [job for job in jobs if not is_finished(job, job_dirs[job], manifest)]
    if args.export_checkpoints:
        lines = export_checkpoints(todo, job_dirs, args.results_dir)
        print("\n".join(lines) if lines else "no unfinished job has a checkpoint to carry")
        return 0
    if not (args.ray_address or args.dry_run):  # a cluster's tasks get theirs with them (run_ray)
        import_carried(todo, job_dirs, args.results_dir)

    if args.dry_run:
        left = {job: rough_seconds_left(job, job_dirs[job], args.results_dir) for job in todo}  # carried counts too
        width = max(55, *(len(job.name) for job in jobs))
        for job in jobs:
            status = f"~{left[job] / 60:.0f} min" if job in left else "finished"
            what = (
                f"peer.run_learning {job.algo.removeprefix('peer_')}"
                if job.script == PEER
                else f"{job.script}.py {' '.join(job.flags())}"
            )
            print(f"{job.name:<{width}} {status:>9}  {what}")
        steps = sum(job.budget.total_timesteps for job in todo)
        print(
            f"{len(jobs)} jobs: {len(jobs) - len(todo)} finished, {len(todo)} to run, {steps:,} env steps; roughly "
            f"{makespan(list(left.values()), args.workers) / 3600:.1f} h on {args.workers} workers "
            "(from speeds measured with 2 runs per 2 cores: ROUGH_SPS in benchmarks/learning.py)"
        )
        return 0

    print(
        f"study {args.study}: {len(jobs)} jobs, {len(jobs) - len(todo)} already finished, "
        f"running {len(todo)} on {'Ray' if args.ray or args.ray_address else f'{args.workers} workers'}",
        flush=True,
    )
    if any(job.script == PEER for job in todo):
        importlib.import_module("benchmarks.peer")  # fail now, not after the other jobs
    machine = args.machine or (
        f"a Ray cluster ({args.ray_address}), one torch thread per run"
        if args.ray_address
        else f"{os.cpu_count()} CPU cores, {args.workers} runs at a time, one torch thread per run"
    )

    def update_results() -> tuple[int, list[Path]]:
        """The CSV and manifest with every finished job, then the report; a failing report only warns."""
        rows = collect(all_jobs, job_dirs, csv_path, manifest_path)
        if not rows:
            return rows, []
        try:
            from benchmarks import plot

            # planned: the study's own jobs and those of other --seeds, not only this call's
            planned = len({job.name for job in expand(args.study)} | {job.name for job in all_jobs})
            return rows, plot.make_report(csv_path, machine=machine, planned=planned)
        except Exception as e:  # noqa: BLE001 -- the results are safe in the CSV; benchmarks/plot.py redraws them
            print(
                f"warning: the report failed ({type(e).__name__}: {e}); the CSV is complete, "
                f"redraw with: python benchmarks/plot.py {csv_path}",
                file=sys.stderr,
            )
            return rows, []

    deadline = None if args.time_limit is None else time.monotonic() + args.time_limit * 3600
    executor = (
        run_ray(todo, job_dirs, args.workers, args.ray_address, args.results_dir)
        if args.ray or args.ray_address
        else run_local(todo, job_dirs, args.workers, deadline)
    )
    failed, results, started = [], None, set()
    for done_count, (job, result) in enumerate(executor, 1):
        started.add(job)
        record(job, job_dirs[job], result, elsewhere=bool(args.ray_address))
        status = f"ok in {result['seconds']:.0f} s" if result["ok"] else f"FAILED: {result['error']}"
        print(f"[{done_count}/{len(todo)}] {job.name}: {status}", flush=True)
        if result["ok"]:
            shutil.rmtree(carry_dir(args.results_dir, job), ignore_errors=True)  # its rows are in the CSV now
            results = update_results()  # after each job: a study stopped at any moment keeps what finished
        else:
            failed.append((job, result))

    rows, paths = results or update_results()
    print(f"{rows} rows written to {csv_path}")
    for path in paths:
        print(f"written {path}")
    for job, result in failed:
        print(
            f"\nFAILED {job.name} ({result['error']}); log {job_dirs[job] / 'log.txt'} ends:\n"
            f"{log_tail(result['log'])}",
            file=sys.stderr,
        )
    waiting = [job for job in todo if job not in started]
    if waiting:
        print(
            f"{len(waiting)} jobs not started, as they would not end within --time-limit {args.time_limit:g} h "
            f"(rerun to continue): {', '.join(job.name for job in waiting)}"
        )
    if failed:
        print(f"{len(failed)} of {len(todo)} jobs failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
