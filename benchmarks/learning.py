"""Learning studies: CADP against its advice-off baseline and an EPyMARL-family peer, over seeds.

A study (benchmarks/studies.py) is a grid of jobs: env ids x scripts x seeds x {advice, no advice}, plus runs of the
peer implementation (pymarlzooplus, through benchmarks/peer.py), or an ablation's arms, or a plan in a fixed order.
Each job trains as a subprocess in its own directory, benchmarks/runs/{study}/{job}/ (one torch thread, output in
log.txt). After each job, the TensorBoard scalars of every finished job go into one CSV,
benchmarks/results/learning_{study}.csv.gz, listed with their signatures (what each job was asked to do) in a
manifest beside it, learning_{study}.jobs.json, and benchmarks/plot.py redraws the curves and the table.

Resuming: a job is finished when its job directory or the manifest says so with its current signature, so a study
that was stopped resumes where it stopped, here or in another clone that has the results. In a study whose jobs
checkpoint (`smax`), an interrupted job continues from its newest checkpoint; `--export-checkpoints` copies those
into benchmarks/results/checkpoints/{study}/ so that another clone (a copy of that folder, or a commit of it with
`git add -f`) continues them. Once a job is finished, the study deletes its carried folder.

    python benchmarks/learning.py --study lbf --dry-run        # the jobs and a rough duration
    python benchmarks/learning.py --study lbf                  # os.cpu_count() jobs at a time
    python benchmarks/learning.py --study lbf --only Foraging-2s --seeds 1 2 --workers 2
    python benchmarks/learning.py --study rware --ray          # as tasks of a local Ray
    python benchmarks/learning.py --study rware --ray-address HOST:6379   # on a Ray cluster
    python benchmarks/learning.py --study smax --export-checkpoints       # unfinished runs, for another clone

Ray is optional: `pip install -r requirements-bench.txt`. On a cluster, the repository is shipped to the workers
(Ray's working_dir; their Python needs requirements.txt), each task trains from scratch in a temporary directory and
returns its scalars and log, which this driver writes: no shared filesystem is needed.
"""

import argparse
import contextlib
import csv
import datetime
import gzip
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.plot import open_csv  # noqa: E402 -- after the path; plot imports matplotlib only when drawing
from benchmarks.studies import PEER, STUDIES, Job, expand, job_name  # noqa: E402

# besides every eval/ tag; self_attention_weight and prune_coef are logged by advice runs (pruning), win_rate on
# envs with wins. The losses are the ones that show a run diverging or collapsing late (Q-values drifting from
# their targets, a value loss blowing up, the policy's entropy gone), so that committed results can tell why a run
# that had learned lost it: Q-learning's, then PPO's; a run keeps those its script logs.
KEPT_TAGS = (
    *("charts/episodic_return", "charts/SPS", "charts/self_attention_weight", "charts/prune_coef", "charts/win_rate"),
    *("losses/td_loss", "losses/prune_loss", "losses/q_values", "losses/target_q_values", "losses/grad_norm"),
    *("losses/value_loss", "losses/entropy", "losses/approx_kl"),
)
TRAINING_POINTS = 200  # KEPT_TAGS: the mean over at most this many step bins per run, to keep the CSV small
# a run logs every few seconds (checkpoint writes and evaluations: under a minute); a longer silence is a run
# that was stopped and resumed or paused (SIGSTOP), and is left out of its wall times
STOPPED_GAP_S = 300.0
CSV_COLUMNS = ["study", "env_id", "algo", "script", "advice", "seed", "tag", "step", "wall_time_s", "value"]


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


def newest_checkpoint(job_dir: Path, run: str) -> tuple[int, Path] | None:
    """(step, path) of the newest periodic checkpoint of the run directory `run` of job_dir."""
    from common.checkpoint import periodic_checkpoints  # torch, imported only where checkpoints are looked at

    found = periodic_checkpoints(str(job_dir / run))
    return (found[-1][0], Path(found[-1][1])) if found else None


def start_job_dir(job: Job, job_dir: Path) -> None:
    """An empty job directory that knows which job it is for (resumable_run checks it)."""
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    (job_dir / "signature").write_text(job.signature())


def _train_script(job: Job, job_dir: Path, log_path: Path, root: Path, resume_from: str | None) -> Path:
    log_so_far = log_path.read_text(errors="replace") if resume_from and log_path.exists() else ""
    ended = re.findall(r"final eval after (\d+) steps", log_so_far)
    if any(int(steps) >= job.budget.total_timesteps for steps in ended):
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


def run_job(job: Job, job_dir: str | None = None, root: str | None = None) -> dict:
    """Train one job in job_dir (emptied first, unless it holds an interrupted run of the job to resume:
    resumable_run; None: a temporary directory, removed after) with the scripts of `root` (None: the current
    directory, as in a Ray task with a working_dir). Returns
    {"ok", "error", "rows" (read_scalars), "log" (its text), "seconds" (of this call)}; never raises."""
    root_path = Path(root or os.getcwd())
    if str(root_path) not in sys.path:
        sys.path.insert(0, str(root_path))
    scratch = None if job_dir else tempfile.mkdtemp(prefix="cadp-job-")
    path = Path(job_dir or Path(scratch) / job.name)
    resume_from = resumable_run(job, path)
    if resume_from is None:
        start_job_dir(job, path)
    log_path, start = path / "log.txt", time.time()
    try:
        if job.script == PEER:
            rows = read_scalars(_train_peer(job, path, log_path))
        else:
            rows = with_earlier(path, read_scalars(_train_script(job, path, log_path, root_path, resume_from)))
        error = None
    except Exception as e:  # noqa: BLE001 -- any failure is reported by the driver, with the log's tail
        rows, error = [], f"{type(e).__name__}: {e}"
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"ok": error is None, "error": error, "rows": rows, "log": log, "seconds": time.time() - start}


# ---- Carrying an unfinished job to another clone: its newest checkpoint and its rows so far ---------
# In RESULTS_DIR/checkpoints/{study}/{job}/: step_N.cadp_model, scalars.csv (the rows up to step N) and `carried`
# ({"signature", "run", "step"}). Imported, they become an interrupted run in the job directory, whose rows so far
# are EARLIER; the job directory keeps `carried` too, for the step the carried rows end at.
CARRY_MAX_BYTES = 64 << 20  # a checkpoint that holds its replay buffer (GiBs) is not carried
EARLIER = "earlier_scalars.csv"


def carry_dir(results_dir: Path, job: Job) -> Path:
    return results_dir / "checkpoints" / job.study / job.name


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
    if (job_dir / EARLIER).exists():
        earlier, step = read_rows(job_dir / EARLIER), json.loads((job_dir / "carried").read_text())["step"]
        offset = max((wall for _, _, wall, _ in earlier), default=0.0)
        rows = earlier + [(tag, s, wall + offset, value) for tag, s, wall, value in rows if s > step]
    return [row for row in rows if up_to is None or row[1] <= up_to]


def export_checkpoints(jobs: list[Job], job_dirs: dict[Job, Path], results_dir: Path) -> list[str]:
    """--export-checkpoints: for each job with an interrupted or running run, its newest checkpoint and its rows up
    to it, into carry_dir. Returns what it did, line by line."""
    lines = []
    for job in jobs:
        run = resumable_run(job, job_dirs[job])
        newest = newest_checkpoint(job_dirs[job], run) if run else None
        if newest is None:
            continue
        step, checkpoint = newest
        size = checkpoint.stat().st_size
        if size > CARRY_MAX_BYTES:
            lines.append(
                f"{job.name}: not carried: its checkpoint at step {step} holds the replay buffer ({size / 2**30:.1f} "
                "GiB; it was started with a larger --checkpoint-buffer-max-mb), so it continues only where it is"
            )
            continue
        target = carry_dir(results_dir, job)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shutil.copyfile(checkpoint, target / checkpoint.name)
        write_rows(target / "scalars.csv", with_earlier(job_dirs[job], read_scalars(job_dirs[job] / run), up_to=step))
        (target / "carried").write_text(json.dumps({"signature": job.signature(), "run": Path(run).name, "step": step}))
        lines.append(f"{job.name}: step {step} ({size / 2**20:.1f} MiB) -> {target}")
    return lines


def import_carried(job: Job, job_dir: Path, results_dir: Path) -> None:
    """A job carried from another clone (export_checkpoints) becomes an interrupted run in job_dir, unless job_dir
    holds a run of its own that got as far, or the carried run is of other flags."""
    source = carry_dir(results_dir, job)
    try:
        carried = json.loads((source / "carried").read_text())
    except (OSError, ValueError):
        return
    if carried.get("signature") != job.signature():
        print(f"note: {source} is for another version of {job.name} (its flags changed): not continued from")
        return
    run = resumable_run(job, job_dir)
    here = newest_checkpoint(job_dir, run) if run else None
    if here is not None and here[0] >= carried["step"]:
        return
    start_job_dir(job, job_dir)
    checkpoints, name = job_dir / "runs" / carried["run"] / "checkpoints", f"step_{carried['step']}.cadp_model"
    checkpoints.mkdir(parents=True)
    shutil.copyfile(source / name, checkpoints / name)
    shutil.copyfile(source / "scalars.csv", job_dir / EARLIER)
    shutil.copyfile(source / "carried", job_dir / "carried")
    (job_dir / "log.txt").write_text(f"carried from another clone at step {carried['step']} ({source})\n")
    print(f"{job.name}: continues from step {carried['step']}, carried in {source}", flush=True)


# ---- Executors: yield (job, result) as jobs finish ------------------------------------------------
def _failure(error: str) -> dict:
    return {"ok": False, "error": error, "rows": [], "log": "", "seconds": 0.0}


def run_local(jobs: list[Job], job_dirs: dict[Job, Path], workers: int):
    """The jobs on `workers` processes, in their order."""
    if workers == 1:  # in this process, one after the other
        for job in jobs:
            yield job, run_job(job, str(job_dirs[job]), str(ROOT))
        return
    queue, running = list(jobs), {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # a job is handed to the pool only when a worker is free: after Ctrl-C, no further job starts
        while queue or running:
            while queue and len(running) < workers:
                job = queue.pop(0)
                running[pool.submit(run_job, job, str(job_dirs[job]), str(ROOT))] = job
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                try:
                    result = future.result()
                except Exception as e:  # noqa: BLE001 -- e.g. a pool process that died
                    result = _failure(f"{type(e).__name__}: {e}")
                yield job, result


RAY_EXCLUDES = [".git", ".venv", ".ci-venv", "runs", "benchmarks/runs", ".hypothesis", ".pytest_cache", "__pycache__"]


def run_ray(jobs: list[Job], job_dirs: dict[Job, Path], workers: int, address: str | None):
    """Each job is a Ray task with num_cpus=1. Local (address None): a Ray of `workers` CPUs whose tasks write
    into the job directories. A cluster: the repository goes to the workers as working_dir and the tasks train
    in temporary directories, returning their scalars and logs."""
    try:
        import ray
    except ImportError:
        raise SystemExit("error: --ray and --ray-address need Ray: pip install -r requirements-bench.txt") from None
    import logging

    if address:  # the repository goes to the workers
        init = {"address": address, "runtime_env": {"working_dir": str(ROOT), "excludes": RAY_EXCLUDES}}
    else:  # "local": a new Ray of its own, even if one already runs on this machine; its tasks import this checkout
        python_path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        init = {"address": "local", "num_cpus": workers, "include_dashboard": False}
        init["runtime_env"] = {"env_vars": {"PYTHONPATH": python_path}}
    ray.init(logging_level=logging.WARNING, **init)
    task = ray.remote(num_cpus=1, max_retries=0)(run_job)
    try:
        pending = {
            task.remote(job, None, None) if address else task.remote(job, str(job_dirs[job]), str(ROOT)): job
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


# ---- Results: the job's done marker, the study CSV and its manifest ------------------------------------
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
    if csv_path.exists():
        with open_csv(csv_path) as f:
            for row in csv.DictReader(f):
                old_rows[job_name(row["env_id"], row["algo"], row["seed"])].append([row[c] for c in CSV_COLUMNS])
    entries, rows = {}, []
    for job in jobs:
        marker = done_marker(job, job_dirs[job])
        if marker is not None:
            entries[job.name] = marker
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
    return len(rows)


def log_tail(text: str, lines: int = 15) -> str:
    """The last lines of a log, with progress-bar redraws (carriage returns) as separate lines."""
    kept = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return "\n".join("    " + line for line in kept[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True, choices=list(STUDIES))
    parser.add_argument("--seeds", type=int, nargs="+", help="instead of the study's seeds")
    parser.add_argument("--total-timesteps", type=int, help="instead of every job's budget")
    parser.add_argument(
        "--only", metavar="SUBSTRING", help="run only the jobs whose name contains this (the CSV keeps every other)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="jobs at a time (default: CPU count)")
    parser.add_argument("--dry-run", action="store_true", help="list the jobs and a rough duration, run nothing")
    parser.add_argument(
        "--export-checkpoints",
        action="store_true",
        help="run nothing: copy the newest checkpoint of each unfinished job, with its rows so far, into "
        "RESULTS_DIR/checkpoints/{study}/ (ignored by git), for another clone to continue those jobs from",
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

    if args.dry_run:
        width = max(55, *(len(job.name) for job in jobs))
        for job in jobs:
            status = f"~{job.rough_seconds() / 60:.0f} min" if job in todo else "finished"
            what = job.signature() if job.script == PEER else f"{job.script}.py {' '.join(job.flags())}"
            print(f"{job.name:<{width}} {status:>9}  {what}")
        steps, seconds = sum(job.budget.total_timesteps for job in todo), [job.rough_seconds() for job in todo]
        hours = max(sum(seconds) / args.workers, *seconds, 0) / 3600
        print(
            f"{len(jobs)} jobs: {len(jobs) - len(todo)} finished, {len(todo)} to run, {steps:,} env steps; roughly "
            f"{hours:.1f} h on {args.workers} workers (from rough speeds: benchmarks/studies.py)"
        )
        return 0

    # a finished job's rows are in the CSV: its carried checkpoint goes, so that the results hold none
    for job in all_jobs:
        if is_finished(job, job_dirs[job], manifest):
            shutil.rmtree(carry_dir(args.results_dir, job), ignore_errors=True)
    if args.export_checkpoints:
        lines = export_checkpoints(todo, job_dirs, args.results_dir)
        print("\n".join(lines) if lines else "no unfinished job has a checkpoint to carry")
        return 0
    if not args.ray_address:  # a cluster's tasks start in directories of their own
        for job in todo:
            import_carried(job, job_dirs[job], args.results_dir)

    print(
        f"study {args.study}: {len(jobs)} jobs, {len(jobs) - len(todo)} already finished, "
        f"running {len(todo)} on {'Ray' if args.ray or args.ray_address else f'{args.workers} workers'}",
        flush=True,
    )
    if any(job.script == PEER for job in todo):
        importlib.import_module("benchmarks.peer")  # fail now, not after the other jobs
    machine = (
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

    executor = (
        run_ray(todo, job_dirs, args.workers, args.ray_address)
        if args.ray or args.ray_address
        else run_local(todo, job_dirs, args.workers)
    )
    failed, results = [], None
    for done_count, (job, result) in enumerate(executor, 1):
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
    if failed:
        print(f"{len(failed)} of {len(todo)} jobs failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
