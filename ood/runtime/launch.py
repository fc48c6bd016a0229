"""Run a reproduction grid as jobs: one job per (seed, backbone) chain of steps, and the aggregation as a
job that waits for all of them, through submitit (SLURM, or its local executor).

The reproduce scripts stay the one place that knows the steps: with ``--launcher`` they write the
commands they would have run into a plan (``# job NAME`` headers, then one shell command a line, as
``--dry-run`` prints them) and hand it to ``python3 -m ood.runtime.launch``. A job runs its commands in order
with bash, stopping at the first that fails. Each finished step leaves a marker (``<jobs>/<job>/done/<k>``)
holding its command and the fingerprints of what it read, as the scripts record it (ood.system.inputs): the
image files and folders of each image set, the checkpoint's contents, the results files, the code. A
job submitted again, after a failure, a timeout or a preemption, skips a step only when its command and
those fingerprints are unchanged, and resumes at the first that is not (saying why in one line); the
steps themselves resume too (``train_model.py --resume`` continues a checkpoint, the caches are
reused), so nothing finished is computed twice and the results are those of the sequential run, also
after images or a checkpoint were replaced.

    python3 -m ood.runtime.launch PLAN --launcher slurm --partition gpu --gpus 1 --time 1440 [--account A]
    python3 -m ood.runtime.launch PLAN --launcher local [--retries 1]
    python3 -m ood.runtime.launch --launcher slurm --check    (can it submit from here? exit status 2 if not)
"""
import argparse
import codecs
import contextlib
import gzip
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ood.system import inputs
from ood.errors import UserError
from ood.runtime.entry import cli_main
from ood.io import atomic_path

FINAL = "aggregate"  # the plan's last job: it runs after every other job has succeeded


@dataclass(frozen=True)
class Job:
    name: str
    commands: tuple  # shell command lines, run in order by bash
    cwd: str = "."  # where they run: where the reproduce script was started (its paths are relative to it)


def read_plan(path):
    """The jobs of a plan file, in order; the last one, named "aggregate", depends on all the others."""
    jobs, name, lines, cwd = [], None, [], "."
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read the plan {path}: {e.strerror or e}.") from None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("# cwd "):
            cwd = line[len("# cwd "):]
        elif line.startswith("# job "):
            if name is not None:
                jobs.append(Job(name, tuple(lines), cwd))
            name, lines = line[len("# job "):].strip(), []
        elif line and not line.startswith("#"):
            if name is None:
                raise UserError(f"{path}: a command before the first '# job NAME' line: {line[:80]}")
            lines.append(line)
    if name is not None:
        jobs.append(Job(name, tuple(lines), cwd))
    names = [j.name for j in jobs]
    if not jobs or names[-1] != FINAL or len(set(names)) != len(names) or any(not j.commands for j in jobs):
        raise UserError(f"{path} is not a plan of the reproduce scripts (jobs {names}); write it with --launcher.")
    return jobs


def run_job(commands, done_dir, cwd="."):
    """Run ``commands`` in order with bash in ``cwd``, skipping those whose marker in ``done_dir`` holds the
    same command and what it read unchanged (``stale``); a command that fails ends the job with an error
    naming it, its exit status and the last line it wrote to stderr. Returns (steps run, steps skipped)."""
    done = Path(done_dir).resolve()
    done.mkdir(parents=True, exist_ok=True)
    skipped = 0
    for k, line in enumerate(commands):
        marker = done / f"{k:03d}"
        why = stale(marker, line)
        if why is None:
            print(f"done before, skipped (delete {done} to run it again): {line}", flush=True)
            skipped += 1
            continue
        if why:
            print(f"step {k + 1} of {len(commands)} runs again: {why}", flush=True)
        print(f"+ {line}", flush=True)
        notes = done / f".{k:03d}.inputs"  # what the step's scripts record that they read (ood.system.inputs)
        notes.unlink(missing_ok=True)
        try:
            code, last = _run_step(line, cwd, {**os.environ, inputs.ENV: str(notes)})
            if code != 0:
                said = f"; its last error line: {last}" if last else ""
                raise RuntimeError(f"step {k + 1} of {len(commands)} failed with exit status {code}: {line}{said}")
            record = {"command": line, "inputs": [{**e, "fingerprint": _fingerprint(e)} for e in inputs.read_notes(notes)]}
            write_marker(record, marker)
        finally:
            notes.unlink(missing_ok=True)
    return len(commands) - skipped, skipped


def write_marker(record, marker):
    """The marker of a finished step: its record as gzip-compressed JSON, written atomically. A step that
    reads ImageNet's training set records 1.28 million file names, about 100 MB as plain JSON; their
    shared folders compress them tenfold and more."""
    with atomic_path(marker) as tmp:
        Path(tmp).write_bytes(gzip.compress(json.dumps(record).encode("utf-8"), mtime=0))


def read_marker(marker):
    """A marker's text: decompressed when gzip-compressed (``write_marker``), as it is otherwise (a marker
    of an earlier version, the command alone). FileNotFoundError when there is none."""
    data = marker.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):  # cut short or damaged: never honoured
            return ""
    return data.decode("utf-8", errors="replace")


def _fingerprint(entry):
    try:
        return inputs.fingerprint(entry)
    except OSError:  # read by the step, gone by its end: the marker is never honoured
        return None


def stale(marker, line):
    """Why the step ``line`` must run although ``marker`` exists ("": it has none), or None when the marker
    holds this command and everything the step read is as it was then (the same fingerprints)."""
    try:
        text = read_marker(marker)
    except FileNotFoundError:
        return ""
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict):  # a marker of an earlier version: the command alone
        return "its marker records the command only, not what it read" if text == line else "its command changed"
    if record.get("command") != line:
        return "its command changed"
    try:
        for entry in record["inputs"]:
            try:
                now = inputs.fingerprint(entry)
            except OSError as e:
                return f"{entry['what']} can no longer be read ({e.filename}: {e.strerror})"
            if now != entry.get("fingerprint"):
                return f"{entry['what']} changed since it last ran"
    except (KeyError, TypeError, AttributeError):  # edited by hand
        return "its marker is not one this launcher wrote"
    return None


def _run_step(line, cwd, env):
    """Run ``line`` with bash; returns (its exit status, the last non-empty line it wrote to stderr). Its
    stderr is passed on as it comes, so the job's log still holds all of it."""
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    proc = subprocess.Popen(["bash", "-c", line], cwd=cwd, env=env, stderr=subprocess.PIPE)
    try:
        while block := proc.stderr.read1(1 << 16):
            text = decode.decode(block)
            sys.stderr.write(text)
            sys.stderr.flush()
            tail = (tail + text)[-8192:]
        proc.stderr.close()
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    lines = [x.strip() for x in tail.splitlines() if x.strip()]
    return code, lines[-1] if lines else ""


def describe(jobs):
    out = []
    for j in jobs:
        after = " (after every other job)" if j.name == FINAL else ""
        out.append(f"job {j.name}{after}: {len(j.commands)} step(s)")
        out += [f"  {c}" for c in j.commands]
    return "\n".join(out)


def _executor(args, folder, name):
    import submitit
    cluster = "local" if args.launcher == "local" else "slurm"
    ex = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster)
    params = {"name": name, "timeout_min": args.time, "gpus_per_node": args.gpus, "cpus_per_task": args.cpus}
    if cluster == "slurm":
        params.update(slurm_partition=args.partition, slurm_account=args.account)
        params = {k: v for k, v in params.items() if v is not None}
    ex.update_parameters(**params)
    return ex


def submit(jobs, args):
    """Submit the jobs; under SLURM return at once (the aggregation waits for the others with
    ``afterok``), locally run them one after another, resubmitting a failed job up to ``--retries`` times."""
    folder = Path(args.jobs_dir).resolve()
    work, final = jobs[:-1], jobs[-1]
    if args.launcher == "slurm":
        ids = []
        for j in work:
            job = _executor(args, folder, j.name).submit(run_job, j.commands, folder / j.name / "done", j.cwd)
            ids.append(job.job_id)
            print(f"submitted {j.name}: SLURM job {job.job_id}")
        ex = _executor(args, folder, final.name)
        ex.update_parameters(slurm_additional_parameters={"dependency": "afterok:" + ":".join(ids)})
        job = ex.submit(run_job, final.commands, folder / final.name / "done", final.cwd)
        print(f"submitted {final.name}: SLURM job {job.job_id}, after {', '.join(ids)}; logs in {folder}/")
        return 0
    for j in jobs:
        for attempt in range(args.retries + 1):
            job = _executor(args, folder, j.name).submit(run_job, j.commands, folder / j.name / "done", j.cwd)
            try:
                ran, skipped = job.result()
                print(f"{j.name}: finished (local job {job.job_id}): {ran} step(s) run, {skipped} skipped (done "
                      f"before)", flush=True)
                break
            except Exception as e:  # submitit re-raises the job's error with its traceback
                left = args.retries - attempt
                print(f"{j.name}: failed: {failure_line(job, e)} (log: {job.paths.stderr})"
                      + (f"; resubmitted ({left} more)" if left else ""), flush=True)
        else:
            print(f"stopped: job {j.name} failed; fix it and run the same command again (finished steps are "
                  f"skipped)", file=sys.stderr)
            return 1
    return 0


def failure_line(job, error):
    """The last error line of a failed job: the last non-empty line of its stderr log (the exception
    that ended it, which names the failed step and the step's own last error line), else of the trace
    in ``error``, submitit's report (which ends with the paths of the logs, not with the error)."""
    text = ""
    with contextlib.suppress(Exception):
        text = job.stderr() or ""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    if not lines:
        trace = str(error).split("You can check full logs")[0]
        lines = [x.strip() for x in trace.splitlines() if x.strip() and set(x.strip()) != {"-"}]
    last = lines[-1] if lines else type(error).__name__
    return last.removeprefix("RuntimeError: ")


def check_launcher(launcher):
    """Before anything is submitted: ``launcher`` can submit from this machine (submitit is installed;
    for slurm, SLURM's sbatch and srun, which submitit submits with and looks for, are on the PATH)."""
    if importlib.util.find_spec("submitit") is None:
        raise UserError("--launcher needs submitit (pip install 'submitit>=1.5,<2').")
    missing = [c for c in ("sbatch", "srun") if launcher == "slurm" and shutil.which(c) is None]
    if missing:
        raise UserError(f"--launcher slurm: SLURM is not available on this machine ({' and '.join(missing)} not "
                        f"on the PATH). Submit from a SLURM login node, or use --launcher local to run the jobs "
                        f"here one after another.")


def build_parser():
    p = argparse.ArgumentParser(prog="python3 -m ood.runtime.launch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("plan", nargs="?", help="the plan the reproduce scripts wrote (--launcher)")
    p.add_argument("--launcher", choices=("slurm", "local"), required=True)
    p.add_argument("--jobs_dir", help="submitit's logs and each job's markers of finished steps")
    p.add_argument("--check", action="store_true", help="only check that the launcher can submit from this "
                   "machine (exit status 2 with one line if not); the reproduce scripts do, before any step")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--account", default=None, help="SLURM account")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per job")
    p.add_argument("--cpus", type=int, default=None, help="CPUs per job (default: the cluster's)")
    p.add_argument("--time", type=int, default=1440, help="time limit per job, minutes")
    p.add_argument("--retries", type=int, default=1, help="local: resubmissions of a failed job")
    p.add_argument("--dry_run", action="store_true", help="print the jobs and submit nothing")
    return p


@cli_main
def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if args.check:
        check_launcher(args.launcher)
        return 0
    if args.plan is None or args.jobs_dir is None:
        p.error("give the PLAN and --jobs_dir (or --check)")
    if args.gpus < 0 or args.time < 1 or args.retries < 0 or (args.cpus is not None and args.cpus < 1):
        raise UserError("--gpus, --retries must be >= 0; --time and --cpus >= 1.")
    jobs = read_plan(args.plan)
    if args.dry_run:
        print(describe(jobs))
        return 0
    check_launcher(args.launcher)
    return submit(jobs, args)


if __name__ == "__main__":
    sys.exit(main())

