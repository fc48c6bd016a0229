"""Run a reproduction grid as jobs: one job per (seed, backbone) chain of steps, and the aggregation as a
job that waits for all of them, through submitit (SLURM, or its local executor).

The reproduce scripts stay the one place that knows the steps: with ``--launcher`` they write the
commands they would have run into a plan (``# job NAME`` headers, then one shell command a line, as
``--dry-run`` prints them) and hand it to ``python3 -m ood.launch``. A job runs its commands in order
with bash, stopping at the first that fails. Each finished step leaves a marker holding its command
(``<jobs>/<job>/done/<k>``), so a job submitted again, after a failure, a timeout or a preemption,
skips the steps that finished with the same command and resumes at the first that did not; the steps
themselves resume too (``train_model.py --resume`` continues a checkpoint, the caches are reused), so
nothing finished is computed twice and the results are those of the sequential run. A marker records
the command only: after changing data, code or a checkpoint, delete the jobs folder to run every step.

    python3 -m ood.launch PLAN --launcher slurm --partition gpu --gpus 1 --time 1440 [--account A]
    python3 -m ood.launch PLAN --launcher local [--retries 1]
"""
import argparse
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError, cli_main
from .io import write_text

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
    same command; a command that fails ends the job with an error naming it (and its exit status).
    Returns (steps run, steps skipped)."""
    done = Path(done_dir).resolve()
    skipped = 0
    for k, line in enumerate(commands):
        marker = done / f"{k:03d}"
        if marker.exists() and marker.read_text(encoding="utf-8") == line:
            print(f"done before, skipped (delete {done} to run it again): {line}", flush=True)
            skipped += 1
            continue
        print(f"+ {line}", flush=True)
        code = subprocess.run(["bash", "-c", line], cwd=cwd).returncode
        if code != 0:
            raise RuntimeError(f"step {k + 1} of {len(commands)} failed with exit status {code}: {line}")
        write_text(line, marker)
    return len(commands) - skipped, skipped


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
                last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                left = args.retries - attempt
                print(f"{j.name}: failed ({last}); " + (f"resubmitted ({left} more)" if left else
                      f"logs in {folder}/{job.job_id}/"), flush=True)
        else:
            print(f"stopped: job {j.name} failed; fix it and run the same command again (finished steps are "
                  f"skipped)", file=sys.stderr)
            return 1
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="python3 -m ood.launch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("plan", help="the plan the reproduce scripts wrote (--launcher)")
    p.add_argument("--launcher", choices=("slurm", "local"), required=True)
    p.add_argument("--jobs_dir", required=True, help="submitit's logs and each job's markers of finished steps")
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
    args = build_parser().parse_args(argv)
    if args.gpus < 0 or args.time < 1 or args.retries < 0 or (args.cpus is not None and args.cpus < 1):
        raise UserError("--gpus, --retries must be >= 0; --time and --cpus >= 1.")
    jobs = read_plan(args.plan)
    if args.dry_run:
        print(describe(jobs))
        return 0
    if importlib.util.find_spec("submitit") is None:
        raise UserError("--launcher needs submitit (pip install 'submitit>=1.5,<2').")
    return submit(jobs, args)


if __name__ == "__main__":
    sys.exit(main())

