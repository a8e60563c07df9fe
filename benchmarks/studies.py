"""What benchmarks/learning.py runs: budgets per (script, env), the ablation's arms, the studies, rough speeds, and
a study's jobs (Job, expand).

To add a study, add a Study to STUDIES: its env ids, scripts and seeds (each script runs with and without advice),
or an ablation's arms, or a plan (its items in the order to run them). A finished job is recognised by its name and
its signature (Job.signature: the script's flags), so changing a committed study's budget or flags reruns its jobs.
"""

import json
import re
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Budget:
    total_timesteps: int
    eval_interval: int
    eval_episodes: int
    flags: tuple[str, ...] = ()  # extra flags of the script (not given to the peer)


# ---- Budgets per (script, env family) ------------------------------------------------------------
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
    **{(script, "lbforaging"): Q_LEARNING for script in ("cadp_qmix", "cadp_vdn", "cadp_qplex")},
    ("cadp_mappo", "lbforaging"): PPO_LBF,
    **{(script, "rware"): RWARE_Q_LEARNING for script in ("cadp_qmix", "cadp_vdn", "cadp_qplex")},
    ("cadp_mappo", "rware"): RWARE_PPO,
    **{(script, "mpe2"): Q_LEARNING for script in ("cadp_qmix", "cadp_vdn", "cadp_qplex")},
    ("cadp_mappo", "mpe2"): PPO,
    **{(script, "matrix"): SMOKE for script in ("cadp_qmix", "cadp_vdn", "cadp_qplex")},
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
ABLATION_BUDGETS: dict[tuple[str, str], Budget] = {
    ("cadp_qmix", "lbforaging"): Budget(total_timesteps=100_000, eval_interval=5_000, eval_episodes=32),
    ("cadp_qmix", "smax"): Budget(total_timesteps=60_000, eval_interval=5_000, eval_episodes=32),
    ("cadp_mappo", "lbforaging"): Budget(total_timesteps=500_000, eval_interval=10_000, eval_episodes=32),
    ("cadp_mappo", "smax"): Budget(total_timesteps=300_000, eval_interval=10_000, eval_episodes=32),
}
ABLATION_LBF = "lbforaging:Foraging-2s-10x10-3p-3f-v3"
ABLATION_SMAX = "smax:2s3z"

# The paper's SMAC experiment on SMAX (`--study smax`), with the release's schedules: epsilon over 50k
# steps on 5m_vs_6m and 500k on 3s5z_vs_3s6z; pruning from 700k of 1.05M and 3M of 4M steps for QMIX and
# VDN; MAPPO as the release's 5m_vs_6m script (10M steps, pruning from 6M, clip 0.05, 10 epochs on rollouts of
# 8 envs x 400 steps in one minibatch). Checkpoints every SMAX_CHECKPOINT_INTERVAL steps, so that an interrupted
# run continues where it stopped.
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
# CADP-QMIX run is ~15 h; 6 such runs would be ~65 h of a 2-core machine), so 500k, with the release's schedules
# scaled to it: epsilon over 1/8 of the run (500k of 4M) and pruning from 3/4. `--total-timesteps 4000000` with
# `--only 3s5z` is the paper's length, the epsilon then still over 62.5k steps.
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
# CADP-MAPPO as the release runs it (`--study smax_mappo`): constant learning rate, the recurrent critic on the
# agent-specific state, greedy evaluation, clip 0.05, 10 epochs on rollouts of 8 envs x 400 steps in one minibatch,
# pruning over the last 40%, 5M steps (the release: 10M). Pinned in the flags, so the jobs stay the release's if a
# default changes. The map follows a 1-seed MAPPO pilot (`--only __mappo__1`): 5m_vs_6m if MAPPO wins >= 10% by 5M.
SMAX_PPO_RELEASE = Budget(
    total_timesteps=5_000_000,
    eval_interval=50_000,
    eval_episodes=32,
    flags=(
        *("--prune-start-fraction", "0.6", "--clip-coef", "0.05", "--update-epochs", "10"),
        *("--num-envs", "8", "--num-steps", "400", "--num-minibatches", "1"),
        *("--no-anneal-lr", "--critic", "recurrent", "--agent-specific-state", "--eval-greedy"),
    ),
)
# The release's conditions on 5m_vs_6m (`--study smac_scale`): SMAC's reward scale (a battle's largest return 20, x10
# SMAX's; the release's alphas and grad-norm clip were set at it) and, for QMIX, the release's mixer; the release's
# schedules as in `smax` (epsilon over 50k steps, breakpoint at 700k of 1.05M). Its SMAX-scale counterpart cells are
# the `smax` study's 5m_vs_6m QMIX runs (seeds 1-5); benchmarks/smac_scale.py reports the 2x2 design from both.
# SMAC's world state is normalised to [0, 1] too (normalize_state): the release's default-initialised mixer reads it,
# and on SMAX's raw state (positions in map units, cooldowns in steps) it starts at |Q_tot| ~ 50 instead of ~ 0.4
SMAC_SCALE = ("--env-kwargs", '{"normalize_state": true, "reward_scale_rate": 20}')
SMAC_SCALE_BUDGETS: dict[tuple[str, str], Budget] = {
    ("cadp_qmix", SMAX_5M): replace(SMAX_Q_5M, flags=(*SMAX_Q_5M.flags, *SMAC_SCALE, "--mixer", "release")),
    ("cadp_vdn", SMAX_5M): replace(SMAX_Q_5M, flags=(*SMAX_Q_5M.flags, *SMAC_SCALE)),
}
# Google Research Football (`--study grf`, needs install_grf.sh): the release's 3-vs-1 scenario with its settings
# (common/gfootball.py) and its 50k-step epsilon schedule, at the budget that fits beside other work on 2 cores
# (the authors' runs are 5M steps long); 16 eval episodes per model, as each is a GRF engine of ~55 MiB
GRF_3V1 = "gfootball:academy_3_vs_1_with_keeper"
GRF_Q = Budget(total_timesteps=100_000, eval_interval=10_000, eval_episodes=16, flags=("--exploration-steps", "50000"))


# ---- The ablation's arms ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    """One arm of an ablation: labelled `{base}_{suffix}` without advice (qmix_rnn), else `cadp_{base}_{suffix}`."""

    suffix: str
    advice: bool
    flags: tuple[str, ...]  # the script's, after the budget's; `--no-advice` comes from `advice`

    def label(self, script: str) -> str:
        return f"{script if self.advice else script.removeprefix('cadp_')}_{self.suffix}"


POST_GRU, GRU_INPUT = ("--advice-placement", "post-gru"), ("--advice-placement", "gru-input")
# the scripts' default breakpoint, explicit in every job: plot.py reads each run's breakpoint off its flags
TWO_THIRDS = ("--prune-start-fraction", "0.67")
ABLATION_ARMS = (
    Arm("rnn", False, (*POST_GRU, *TWO_THIRDS)),  # the base algorithm's: pymarl's RNN agent, MAPPO's actor
    Arm("gru", False, (*GRU_INPUT, *TWO_THIRDS)),  # the previous network: a GRU on the raw observation
    Arm("post_gru", True, (*POST_GRU, *TWO_THIRDS)),
    Arm("gru_input", True, (*GRU_INPUT, *TWO_THIRDS)),
    Arm("post_gru_eq3", True, (*POST_GRU, "--prune-loss-scale", "eq3", *TWO_THIRDS)),
    Arm("post_gru_noprune", True, (*POST_GRU, "--prune-start-fraction", "1")),
)


# ---- The studies ----------------------------------------------------------------------------------
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


LBF_TASKS = ("lbforaging:Foraging-8x8-2p-3f-v3", "lbforaging:Foraging-2s-8x8-2p-3f-v3")
STUDIES: dict[str, Study] = {
    "lbf": Study(env_ids=LBF_TASKS, peers=("qmix", "mappo")),
    # cadp_qplex.py on the lbf study's two tasks, with the same budgets (its own study: the lbf one is committed)
    "qplex": Study(env_ids=LBF_TASKS, scripts=("cadp_qplex",)),
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
    # the paper's items in order (5m_vs_6m QMIX, VDN, 3s5z_vs_3s6z QMIX, MAPPO), 3 seeds each, then QMIX's seeds 4
    # and 5 on 5m_vs_6m
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
    "smax_mappo": Study(
        env_ids=(SMAX_5M,),
        budgets={("cadp_mappo", SMAX_5M): SMAX_PPO_RELEASE},
        checkpoint_interval=SMAX_CHECKPOINT_INTERVAL,
        plan=((SMAX_5M, "cadp_mappo", (1, 2, 3)),),
    ),
    "smac_scale": Study(
        env_ids=(SMAX_5M,),
        budgets=SMAC_SCALE_BUDGETS,
        checkpoint_interval=SMAX_CHECKPOINT_INTERVAL,
        plan=((SMAX_5M, "cadp_qmix", (1, 2, 3, 4, 5)), (SMAX_5M, "cadp_vdn", (1, 2, 3))),
    ),
    "grf": Study(env_ids=(GRF_3V1,), scripts=("cadp_qmix",), seeds=(1,), budgets={("cadp_qmix", "gfootball"): GRF_Q}),
    "ablation-smoke": Study(  # for tests
        env_ids=("matrix:two_step",),
        scripts=("cadp_qmix", "cadp_mappo"),
        seeds=(1,),
        arms=tuple(arm for arm in ABLATION_ARMS if arm.suffix in ("rnn", "post_gru")),
    ),
}

# ---- Rough speeds: only to run the longest jobs first and for the dry run's estimate -------------------
# env steps per second of one run, two runs sharing 2 cores, on LBF 8x8 (docs/results.md: Speed); a peer as its
# algorithm, an ablation arm as its script
ROUGH_SPS = {"cadp_qmix": 800, "cadp_vdn": 800, "cadp_qplex": 700, "cadp_mappo": 3_100}
ROUGH_SPS |= {"qmix": 1_300, "vdn": 1_300, "qplex": 1_100, "mappo": 4_800}
# how many times slower than that an env family or env id runs: SMAX 5m_vs_6m (CADP-QMIX ~300 steps/s, QMIX ~600,
# since the updates run on real steps only), 3s5z_vs_3s6z's 8 agents (75 and 150, measured before that), GRF 3-vs-1
# (CADP-QMIX ~60)
SLOWER = {"smax": 2.5, SMAX_3S5Z: 10, "gfootball": 15}


# ---- A study's jobs: their names, flags and signatures (what the results on disk are recognised by) ------
PEER = "peer"  # the script of a peer job
# flags (with a value) that say how a run's checkpoints are stored, not what it computes: left out of the
# signature, so that a study can change them without redoing the runs it has
STORAGE_FLAGS = ("--checkpoint-buffer-max-mb",)


@dataclass(frozen=True)
class Job:
    study: str
    env_id: str
    script: str  # cadp_qmix, cadp_vdn, cadp_qplex, cadp_mappo, or "peer"
    algo: str  # the label in the results: cadp_qmix, qmix (no advice), peer_qmix, qmix_rnn (an arm), ...
    advice: bool
    seed: int
    budget: Budget
    arm_flags: tuple[str, ...] = ()  # an ablation arm's flags, after the budget's
    checkpoint_interval: int = 0  # > 0: periodic checkpoints, from which a rerun continues an interrupted job

    @property
    def name(self) -> str:
        return job_name(self.env_id, self.algo, self.seed)

    def flags(self) -> list[str]:
        """The script's command-line flags (their order is part of the signature)."""
        b = self.budget
        return [
            *("--env-id", self.env_id, "--seed", str(self.seed), "--total-timesteps", str(b.total_timesteps)),
            *("--eval-interval", str(b.eval_interval), "--eval-episodes", str(b.eval_episodes)),
            *("--torch-threads", "1", "--checkpoint-interval", str(self.checkpoint_interval)),
            *([] if self.advice else ["--no-advice"]),
            *b.flags,
            *self.arm_flags,
        ]

    def signature(self) -> str:
        """What the run was asked to do; a finished job is skipped only while this stays the same."""
        b = self.budget
        if self.script == PEER:
            what = ["peer.run_learning", self.algo.removeprefix("peer_"), self.env_id, self.seed]
            return json.dumps([*what, b.total_timesteps, b.eval_interval, b.eval_episodes])
        flags = self.flags()
        for flag in STORAGE_FLAGS:
            if flag in flags:
                del flags[flags.index(flag) : flags.index(flag) + 2]
        return json.dumps([f"{self.script}.py", *flags])

    def rough_seconds(self) -> float:
        speed = ROUGH_SPS.get(self.algo.removeprefix("peer_"), ROUGH_SPS.get(self.script, 1_000))
        return self.budget.total_timesteps * SLOWER.get(self.env_id, SLOWER.get(env_family(self.env_id), 1)) / speed


def job_name(env_id: str, algo: str, seed) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', env_id)}__{algo}__{seed}"


def env_family(env_id: str) -> str:
    return env_id.partition(":")[0]


def budget_of(study: Study, script: str, env_id: str) -> Budget:
    budgets = study.budgets or BUDGETS
    return budgets.get((script, env_id)) or budgets[script, env_family(env_id)]


def expand(study_name: str, seeds=None, total_timesteps=None, only=None) -> list[Job]:
    """The jobs of a study, optionally with other seeds, another budget, and only names containing `only`."""
    study = STUDIES[study_name]

    def pair(env_id: str, script: str, seed: int) -> list[Job]:  # with advice, then without
        budget = budget_of(study, script, env_id)
        return [
            Job(study_name, env_id, script, script if advice else script.removeprefix("cadp_"), advice, seed, budget)
            for advice in (True, False)
        ]

    jobs = []
    if study.arms:  # script by script, then seed by seed: a stopped ablation has every arm on as many seeds
        for script in study.scripts:
            for seed in seeds or study.seeds:
                for env_id in study.env_ids:
                    budget = budget_of(study, script, env_id)
                    for arm in study.arms:
                        jobs.append(
                            Job(study_name, env_id, script, arm.label(script), arm.advice, seed, budget, arm.flags)
                        )
    elif study.plan:  # in the plan's order, each item's seeds (or `seeds`, once per item)
        for env_id, script, plan_seeds in study.plan:
            for seed in seeds or plan_seeds:
                jobs += pair(env_id, script, seed)
        jobs = list(dict.fromkeys(jobs))
    else:
        for env_id in study.env_ids:
            for seed in seeds or study.seeds:
                for script in study.scripts:
                    jobs += pair(env_id, script, seed)
                for peer_algo in study.peers:
                    budget = replace(BUDGETS[PEER_COUNTERPART[peer_algo], env_family(env_id)], flags=())
                    jobs.append(Job(study_name, env_id, PEER, f"peer_{peer_algo}", False, seed, budget))
    if study.checkpoint_interval:  # the peer's runs have no checkpoints
        jobs = [
            job if job.script == PEER else replace(job, checkpoint_interval=study.checkpoint_interval) for job in jobs
        ]
    if total_timesteps:
        jobs = [replace(job, budget=replace(job.budget, total_timesteps=total_timesteps)) for job in jobs]
    return [job for job in jobs if only is None or only in job.name]
