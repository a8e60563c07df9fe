"""Training speed of our three scripts, advice on and off, beside the EPyMARL-family peer.

Each row is one training run of a fixed number of env steps on one task, run in its own
process, with the peer's hyperparameters (EPyMARL defaults) so that both sides do the same
work per env step:

- QMIX/VDN: one gradient update on 32 episodes per episode collected, replay 5,000
  episodes, GRU 64, target update every 200 updates. Ours collects with 8 envs stepped
  together (one batched forward pass for all of them); the peer with one env.
- MAPPO: the peer's own rollout: 10 envs x one 50-step episode per update, 4 epochs over
  the whole batch (one minibatch). Ours runs the same via --num-envs/--num-steps/
  --update-epochs/--num-minibatches.

Start-up (imports, env creation) and test episodes are outside both sides' timing: ours
times its training loop (`charts/SPS`; evaluation is pushed beyond the run but for one
episode per model at step 0), the peer's driver times only its training runner and
learner. Each configuration runs single-threaded (`torch.set_num_threads(1)`, as the peer
sets it) and with torch's default threading. Besides env-steps/s: mean time of one update,
the time of a minimal forward+backward+Adam step of the same networks on a batch of the
same shape (in this process: the distance to that ceiling is what is left to optimise), and
peak resident memory of the run's process.

    python benchmarks/speed.py                 # ours only
    python benchmarks/speed.py --peers         # and pymarlzooplus (own venv, created on first use)

Prints a table and our/peer ratios; writes them to benchmarks/results/speed.csv and speed.md
(`--report-only` rewrites speed.md from the CSV without measuring).

    python benchmarks/speed.py --updates       # the QMIX/VDN/QPLEX update, padded (before) against real steps only

times one update of cadp_{qmix,vdn,qplex}.py (sampling, forward, backward, clip, Adam step) as it was, on the
batch padded to its longest episode (benchmarks/padded_update.py), and as it is, on the episodes' real steps
alone, alternately on the same batches, shaped like smax:5m_vs_6m's (needs the SMAX extra for the sizes) and
the default LBF task's, with episode lengths drawn from those measured on a real run of each
(benchmarks/results/padding_*.csv, by benchmarks/padding.py); writes speed_updates.csv and .md.
These machines are shared: compare the ratios of one invocation, not absolute figures
across invocations.
"""

import argparse
import copy
import csv
import dataclasses
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from padded_update import padded_losses, random_buffer  # noqa: E402

from common.cli import EnvError  # noqa: E402
from common.vec_env import make_vec_env  # noqa: E402

DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice on this machine, read before anything sets it
ALGOS = ("qmix", "vdn", "qplex", "mappo")
# the peer's (EPyMARL) hyperparameters, as our flags; everything not listed is already our default.
# Value decomposition: pymarl's replay, learning rate, agent width and target updates
EPYMARL_VALUE_DECOMPOSITION = [
    *("--batch-size", "32", "--buffer-size", "5000", "--learning-rate", "5e-4"),
    *("--hidden-dim", "64", "--target-network-frequency", "200"),
]
SAME_WORK_FLAGS = {
    **{algo: EPYMARL_VALUE_DECOMPOSITION for algo in ("qmix", "vdn", "qplex")},
    "mappo": [
        "--num-envs",
        "10",
        "--num-steps",
        "50",
        "--update-epochs",
        "4",
        "--num-minibatches",
        "1",
        "--hidden-dim",
        "64",
        "--learning-rate",
        "5e-4",
        # the peer's critic is a feed-forward MLP on the state; the script's default, the release's recurrent
        # critic on the agent-specific state, does more work per step
        "--critic",
        "feed-forward",
        "--no-agent-specific-state",
    ],
}
CSV_FIELDS = [
    "implementation",
    "algo",
    "advice",
    "threads",
    "env_id",
    "env_steps",
    "env_steps_per_s",
    "update_ms",
    "minimal_update_ms",
    "peak_rss_mib",
    "wall_s",
]


def last_scalar(run_dir: Path, tag: str) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        raise RuntimeError(f"{run_dir} logged no {tag}: the run was too short to update")
    return events.Scalars(tag)[-1].value


def run_ours(algo: str, advice: bool, env_id: str, env_steps: int, threads: int) -> dict:
    """One training run of cadp_{algo}.py in its own process: its SPS and update time, its peak RSS."""
    command = [
        sys.executable,
        str(ROOT / f"cadp_{algo}.py"),
        "--env-id",
        env_id,
        "--total-timesteps",
        str(env_steps),
        "--torch-threads",
        str(threads),
        "--eval-interval",
        str(100 * env_steps),
        "--eval-episodes",
        "1",
        "--checkpoint-interval",
        "0",
        "--advice" if advice else "--no-advice",
        *SAME_WORK_FLAGS[algo],
    ]
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{output[-2000:]}")
        run_dir = next((Path(scratch) / "runs").iterdir())
        sps = last_scalar(run_dir, "charts/SPS")
        update_ms = last_scalar(run_dir, "charts/update_time_ms")
    return {
        "env_steps": env_steps,
        "env_steps_per_s": sps,
        "update_ms": update_ms,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "wall_s": wall,
    }


def same_work_value(algo: str, flag: str) -> int:
    """The value SAME_WORK_FLAGS gives `flag`, so the minimal update has the runs' shapes."""
    flags = SAME_WORK_FLAGS[algo]
    return int(flags[flags.index(flag) + 1])


def load_script(algo: str):
    spec = importlib.util.spec_from_file_location(f"cadp_{algo}", ROOT / f"cadp_{algo}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def minimal_update_ms(algo: str, advice: bool, env_id: str, threads: int, repeats: int = 20) -> float:
    """The floor of one update: the same networks' forward, backward and Adam step on random
    tensors of the update's shape, with nothing else (no sampling, masking, logging, checks)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module = load_script(algo)
    args = module.Args(advice=advice, hidden_dim=same_work_value(algo, "--hidden-dim"))
    envs = make_vec_env(env_id, 1, 0, agent_id_feature=args.obs_agent_id, last_action_feature=args.obs_last_action)
    n_agents, obs_dim, state_dim, n_actions = envs.n_agents, envs.obs_dim, envs.state_dim, envs.n_actions
    steps = envs.episode_limit
    envs.close()
    agent = module.CADPAgent(obs_dim, n_actions, args)

    if algo == "mappo":
        num_envs, epochs = same_work_value(algo, "--num-envs"), same_work_value(algo, "--update-epochs")
        args = dataclasses.replace(args, critic="feed-forward", agent_specific_state=False)  # as SAME_WORK_FLAGS
        critic = module.Critic(state_dim, obs_dim, n_agents, args)
        optimizer = torch.optim.Adam(list(agent.parameters()) + list(critic.parameters()), lr=5e-4)
        chunks = num_envs * steps // args.chunk_length
        obs = torch.randn(chunks, args.chunk_length, n_agents, obs_dim)  # (chunks, chunk_length, agents, obs)
        state = torch.randn(chunks, args.chunk_length, state_dim)
        hidden = torch.zeros(chunks, n_agents, args.hidden_dim)
        starts = torch.zeros(chunks, args.chunk_length, dtype=torch.bool)

        def update():
            for _ in range(epochs):
                logits, _, log_confidence = agent(obs, hidden, episode_starts=starts)
                values, _ = critic(state, obs, hidden, episode_starts=starts)
                loss = logits.log_softmax(-1).mean() + values.pow(2).mean()
                if log_confidence is not None:
                    loss = loss - log_confidence.diagonal(dim1=-2, dim2=-1).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    else:
        if algo == "qplex":
            onehot = torch.nn.functional.one_hot(torch.randint(0, n_actions, (32, steps, n_agents)), n_actions).float()

            class QPLEXWithInputs(torch.nn.Module):  # the mixer's other inputs (V_i, joint action, obs) held fixed
                def __init__(self):
                    super().__init__()
                    self.mixer = module.QPLEXMixer(n_agents, state_dim, obs_dim, n_actions, args)

                def forward(self, agent_qs, s):
                    return self.mixer(agent_qs, agent_qs.detach() + 1.0, s, obs[:, 1:], onehot)[0]

            mixer, target_mixer = QPLEXWithInputs(), QPLEXWithInputs()
        else:
            mixer_class = module.QMixer if algo == "qmix" else module.VDNMixer
            mixer_args = (n_agents, state_dim, args.mixing_embed_dim, args.hypernet_embed_dim) if algo == "qmix" else ()
            mixer, target_mixer = mixer_class(*mixer_args), mixer_class(*mixer_args)
        target_agent = module.CADPAgent(obs_dim, n_actions, args)
        parameters = list(agent.parameters()) + list(mixer.parameters())
        optimizer = torch.optim.Adam(parameters, lr=5e-4)
        batch = 32
        obs = torch.randn(batch, steps + 1, n_agents, obs_dim)  # (batch, time + 1, agents, obs)
        state = torch.randn(batch, steps + 1, state_dim)
        actions = torch.randint(0, n_actions, (batch, steps, n_agents, 1))
        hidden = torch.zeros(batch, n_agents, args.hidden_dim)

        def update():
            q, _, log_confidence = agent(obs, hidden)
            chosen_q = q[:, :-1].gather(-1, actions).squeeze(-1)
            with torch.no_grad():
                next_actions = q[:, 1:].argmax(-1, keepdim=True)
                next_q = target_agent(obs, hidden)[0][:, 1:].gather(-1, next_actions).squeeze(-1)
                target = 0.99 * target_mixer(next_q, state[:, 1:])
            loss = (mixer(chosen_q, state[:, :-1]) - target).pow(2).mean()
            if log_confidence is not None:
                loss = loss - log_confidence.diagonal(dim1=-2, dim2=-1).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 10.0)
            optimizer.step()

    for _ in range(3):  # warm-up
        update()
    start = time.perf_counter()
    for _ in range(repeats):
        update()
    return 1000 * (time.perf_counter() - start) / repeats


# env id -> the episode lengths of a real run's replay buffer (benchmarks/padding.py --lengths-out)
UPDATE_SHAPES = {
    "smax:5m_vs_6m": ROOT / "benchmarks" / "results" / "padding_smax-5m_vs_6m.csv",
    "lbforaging:Foraging-8x8-2p-3f-v3": ROOT / "benchmarks" / "results" / "padding_lbf.csv",
}
UPDATE_FIELDS = ["algo", "advice", "threads", "env_id", "padded_share", "padded_ms", "real_steps_ms", "speedup"]


def measured_lengths(path: Path, episodes: int, rng: np.random.Generator) -> np.ndarray:
    """`episodes` lengths drawn from the histogram in `path` (step, length, episodes), pooled over its steps."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    values = np.array([int(row["length"]) for row in rows])
    counts = np.array([int(row["episodes"]) for row in rows], float)
    return rng.choice(values, size=episodes, p=counts / counts.sum())


def update_times(algo: str, advice: bool, env_id: str, threads: int, repeats: int = 20, episodes: int = 500) -> dict:
    """One update of cadp_{algo}.py before (padded) and after (real steps only), alternating on the same batches
    of random episodes whose lengths follow UPDATE_SHAPES[env_id]: mean ms of each, and the padded share."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module = load_script(algo)
    args = module.Args(advice=advice, batch_size=32, hidden_dim=same_work_value(algo, "--hidden-dim"))
    envs = make_vec_env(env_id, 1, 0, agent_id_feature=args.obs_agent_id, last_action_feature=args.obs_last_action)
    envs.close()
    buffer = random_buffer(envs, measured_lengths(UPDATE_SHAPES[env_id], episodes, np.random.default_rng(0)), seed=0)
    agent = module.CADPAgent(envs.obs_dim, envs.n_actions, args)
    if algo == "qmix":
        mixer = module.QMixer(envs.n_agents, envs.state_dim, args.mixing_embed_dim, args.hypernet_embed_dim, args.mixer)
    elif algo == "qplex":
        mixer = module.QPLEXMixer(envs.n_agents, envs.state_dim, envs.obs_dim, envs.n_actions, args)
    else:
        mixer = module.VDNMixer()
    networks = agent, mixer, module.CADPAgent(envs.obs_dim, envs.n_actions, args), copy.deepcopy(mixer)
    parameters = list(agent.parameters()) + list(mixer.parameters())
    optimizer = torch.optim.Adam(parameters, lr=5e-4)
    seconds, valid, padded = {False: 0.0, True: 0.0}, 0, 0
    for repeat in range(-3, repeats):  # 3 warm-up updates of each
        for real_steps_only in (False, True):
            np.random.seed(repeat + 3)  # both draw the same episodes
            start = time.perf_counter()
            if real_steps_only:
                loss = module.compute_losses(buffer.sample_steps(32, torch.device("cpu")), *networks, args, 0.5)[0]
            else:
                batch = buffer.sample(32, torch.device("cpu"))
                loss = padded_losses(module, batch, *networks, args, 0.5)[0]
                valid, padded = valid + int(batch["mask"].sum()), padded + batch["mask"].numel()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 10.0)
            optimizer.step()
            if repeat >= 0:
                seconds[real_steps_only] += time.perf_counter() - start
    padded_ms, real_steps_ms = (1000 * seconds[key] / repeats for key in (False, True))
    return {
        "padded_share": 1 - valid / padded,
        "padded_ms": padded_ms,
        "real_steps_ms": real_steps_ms,
        "speedup": padded_ms / real_steps_ms,
    }


def measure_updates(algos: list[str], thread_counts: list[int], repeats: int, out: Path) -> None:
    """update_times for every algo, advice on and off, thread count and env of UPDATE_SHAPES: a table, CSV and .md."""
    rows = []
    for env_id in UPDATE_SHAPES:
        for algo in [algo for algo in algos if algo != "mappo"]:
            for threads in thread_counts:
                for advice in (True, False):
                    print(
                        f"cadp_{algo}.py advice {'on' if advice else 'off'}, {threads} thread(s), {env_id}", flush=True
                    )
                    try:
                        times = update_times(algo, advice, env_id, threads, repeats)
                    except EnvError as error:  # SMAX without its extra: the other env still runs
                        print(f"skipped: {error}", flush=True)
                        continue
                    rows.append(
                        {
                            "algo": algo,
                            "advice": "on" if advice else "off",
                            "threads": threads,
                            "env_id": env_id,
                            **times,
                        }
                    )
    lines = [
        "# One update, padded (before) and on the real steps alone (after)",
        "",
        f"Written by `python benchmarks/speed.py --updates` on a machine with {os.cpu_count()} CPU cores: mean time "
        f"of one update of batch 32 (sampling, forward, backward, clip, Adam step) over {repeats} updates of each "
        "kind, alternating on the same batches, episode lengths drawn from those of a real run "
        "(benchmarks/results/padding_*.csv); padded share: the share of the padded batches' steps that are padding.",
        "",
        "| env | algo | advice | torch threads | padded share | padded ms | real steps ms | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| `{row['env_id']}` | {row['algo']} | {row['advice']} | {row['threads']} | {row['padded_share']:.0%} | "
            f"{row['padded_ms']:.1f} | {row['real_steps_ms']:.1f} | {row['speedup']:.2f}x |"
        )
    print("\n".join(lines[6:]))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=UPDATE_FIELDS)
        writer.writeheader()
        writer.writerows({name: round(v, 4) if isinstance(v, float) else v for name, v in row.items()} for row in rows)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {out} and {out.with_suffix('.md').name}")


def print_table(rows: list[dict]) -> None:
    print(
        f"\n{'implementation':<16} {'algo':<6} {'advice':<7} {'threads':>7} {'env steps/s':>12} {'update ms':>10} "
        f"{'minimal ms':>11} {'peak MiB':>9} {'wall s':>7}"
    )
    for row in rows:
        minimal = f"{row['minimal_update_ms']:.1f}" if row["minimal_update_ms"] != "" else "-"
        print(
            f"{row['implementation']:<16} {row['algo']:<6} {row['advice']:<7} {row['threads']:>7} "
            f"{row['env_steps_per_s']:>12.0f} {row['update_ms']:>10.1f} {minimal:>11} "
            f"{row['peak_rss_mib']:>9.0f} {row['wall_s']:>7.0f}"
        )


def print_ratios(rows: list[dict]) -> list[str]:
    lines = []
    peers = {(r["algo"], r["threads"]): r for r in rows if r["implementation"] == "pymarlzooplus"}
    for row in rows:
        peer = peers.get((row["algo"], row["threads"]))
        if row["implementation"] == "pymarlzooplus" or peer is None:
            continue
        name = f"cadp_{row['algo']}.py {'advice on ' if row['advice'] == 'on' else 'advice off'}"
        lines.append(
            f"{name} / peer {row['algo'].upper()}, threads={row['threads']}: "
            f"{row['env_steps_per_s'] / peer['env_steps_per_s']:.2f}x env-steps/s, "
            f"{peer['update_ms'] / row['update_ms']:.2f}x faster updates"
        )
    if lines:
        print("\nours / peer (same task, same work per env step, measured in this invocation):")
        print("\n".join("  " + line for line in lines))
    return lines


def write_markdown(rows: list[dict], ratio_lines: list[str], path: Path) -> None:
    env_id, steps = rows[0]["env_id"], rows[0]["env_steps"]
    lines = [
        f"# Training speed: `{env_id}`, {steps} env steps per run",
        "",
        f"Written by `python benchmarks/speed.py{' --peers' if ratio_lines else ''}` on a machine with "
        f"{os.cpu_count()} CPU cores. Env steps/s of the training loop (start-up and test episodes excluded), "
        "mean time of one update, the same networks' minimal forward+backward+Adam step (ours only), "
        "peak resident memory of the run's process (the peer's MAPPO also has 10 env worker processes).",
        "",
        "| implementation | algo | advice | torch threads | env steps/s | update ms | minimal update ms | peak MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        minimal = f"{float(row['minimal_update_ms']):.1f}" if row["minimal_update_ms"] != "" else "-"
        lines.append(
            f"| {row['implementation']} | {row['algo']} | {row['advice']} | {row['threads']} | "
            f"{float(row['env_steps_per_s']):,.0f} | {float(row['update_ms']):.1f} | {minimal} | "
            f"{float(row['peak_rss_mib']):.0f} |"
        )
    if ratio_lines:
        lines += ["", "Ours / peer, measured in the same invocation:", ""] + [f"- {line}" for line in ratio_lines]
    path.write_text("\n".join(lines) + "\n")


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for name in ("env_steps_per_s", "update_ms", "peak_rss_mib", "wall_s"):
            row[name] = float(row[name])
        row["minimal_update_ms"] = float(row["minimal_update_ms"]) if row["minimal_update_ms"] else ""
        row["threads"] = int(row["threads"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="lbforaging:Foraging-8x8-2p-3f-v3")
    parser.add_argument("--env-steps", type=int, default=20_000, help="env steps of every run")
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=sorted({1, DEFAULT_THREADS}),
        help=f"torch threads per run (default: 1 and torch's default here, {DEFAULT_THREADS})",
    )
    parser.add_argument("--peers", action="store_true", help="also run pymarlzooplus (in benchmarks/.peer-venv)")
    parser.add_argument(
        "--updates", action="store_true", help="time the QMIX/VDN/QPLEX update padded and on real steps only, alone"
    )
    parser.add_argument("--repeats", type=int, default=20, help="--updates: updates of each kind per configuration")
    parser.add_argument("--out", help="default: benchmarks/results/speed.csv (--updates: speed_updates.csv)")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the .md beside --out from it, measure nothing"
    )
    args = parser.parse_args()
    results = ROOT / "benchmarks" / "results"
    out = Path(args.out or results / ("speed_updates.csv" if args.updates else "speed.csv"))
    if args.updates:
        return measure_updates(args.algos, args.threads, args.repeats, out)
    if args.report_only:
        rows = read_rows(out)
        print_table(rows)
        write_markdown(rows, print_ratios(rows), out.with_suffix(".md"))
        return

    if args.peers:
        import peer

        peer.ensure_venv()
    rows = []
    for algo in args.algos:
        for threads in args.threads:
            # ours and the peer one after the other, so that both see the same machine load
            for advice in (True, False):
                print(
                    f"cadp_{algo}.py advice {'on' if advice else 'off'}, {threads} thread(s), {args.env_steps} steps",
                    flush=True,
                )
                result = run_ours(algo, advice, args.env_id, args.env_steps, threads)
                minimal = minimal_update_ms(algo, advice, args.env_id, threads)
                rows.append(
                    {
                        "implementation": "ours",
                        "algo": algo,
                        "advice": "on" if advice else "off",
                        "threads": threads,
                        "env_id": args.env_id,
                        **result,
                        "minimal_update_ms": minimal,
                    }
                )
            if args.peers and algo in peer.SPEED_ALGOS:
                print(f"pymarlzooplus {algo}, {threads} thread(s), {args.env_steps} steps", flush=True)
                result = peer.measure_speed(algo, args.env_id, args.env_steps, threads)
                rows.append(
                    {
                        "implementation": "pymarlzooplus",
                        "algo": algo,
                        "advice": "-",
                        "threads": threads,
                        "env_id": args.env_id,
                        "env_steps": result["env_steps"],
                        "env_steps_per_s": result["env_steps_per_s"],
                        "update_ms": result["update_ms"],
                        "peak_rss_mib": result["peak_rss_mib"],
                        "wall_s": result["wall_s"],
                        "minimal_update_ms": "",
                    }
                )
    print_table(rows)
    ratio_lines = print_ratios(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    name: (round(value, 2) if isinstance(value, float) else value)
                    for name, value in row.items()
                    if name in CSV_FIELDS
                }
            )
    write_markdown(rows, ratio_lines, out.with_suffix(".md"))
    print(
        f"\nwritten to {out} and {out.with_suffix('.md').name}; "
        f"machine: {os.cpu_count()} CPU cores, budget {args.env_steps} env steps per run"
    )


if __name__ == "__main__":
    main()
