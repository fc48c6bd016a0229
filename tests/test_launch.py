"""The job launcher of the reproduce scripts (ood/launch.py): plans, markers of finished steps, errors.
The grid through submitit's local executor, end to end, is in tests/test_reproduce.py."""
import subprocess
import sys
from pathlib import Path

import pytest

from ood.errors import UserError
from ood.launch import read_plan, run_job

REPO = Path(__file__).resolve().parents[1]


def test_a_job_skips_the_steps_it_finished(tmp_path):
    """Steps run in order in the plan's folder; a second run skips those whose marker holds the same
    command, runs a changed one again, and a failing step stops the job naming it."""
    work, done = tmp_path / "work", tmp_path / "done"
    work.mkdir()
    steps = ("echo a >> log.txt", "echo b >> log.txt")
    assert run_job(steps, done, work) == (2, 0)
    assert run_job(steps, done, work) == (0, 2)
    assert (work / "log.txt").read_text() == "a\nb\n"  # nothing ran twice
    run_job(("echo a >> log.txt", "echo c >> log.txt"), done, work)
    assert (work / "log.txt").read_text() == "a\nb\nc\n"  # only the changed step
    with pytest.raises(RuntimeError, match=r"step 2 of 3 failed with exit status 3: exit 3"):
        run_job(("echo a >> log.txt", "exit 3", "echo never >> log.txt"), done, work)
    assert "never" not in (work / "log.txt").read_text()


def test_plans(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text("# cwd /somewhere\n# job s1\necho 1\n# job aggregate\necho 2\n")
    jobs = read_plan(plan)
    assert [(j.name, j.commands, j.cwd) for j in jobs] == [("s1", ("echo 1",), "/somewhere"),
                                                          ("aggregate", ("echo 2",), "/somewhere")]
    for text in ("echo 0\n# job aggregate\necho 2\n", "# job s1\necho 1\n", "# job a\n# job aggregate\necho 1\n",
                 "# job s\necho 1\n# job s\necho 2\n# job aggregate\necho 3\n"):
        plan.write_text(text)
        with pytest.raises(UserError):
            read_plan(plan)


def test_dry_run_prints_the_jobs_and_bad_options_are_one_line(tmp_path):
    run = subprocess.run(["bash", str(REPO / "scripts/reproduce_cifar.sh"), "cifar10", "--dry-run", "--launcher", "slurm",
                          "--seeds", "1", "2", "--models", "wrn", "--partition", "gpu", "--out", str(tmp_path)],
                         capture_output=True, text=True, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert "job cifar10-seed1-wrn: 4 step(s)" in run.stdout and "job aggregate (after every other job)" in run.stdout
    assert not (tmp_path / "jobs").exists()  # a dry run writes nothing
    bad = subprocess.run(["bash", str(REPO / "scripts/reproduce_cifar.sh"), "cifar10", "--dry-run", "--launcher", "pbs"],
                         capture_output=True, text=True, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2 and bad.stderr.strip().endswith("--launcher: slurm or local, not 'pbs'")
    assert len(bad.stderr.strip().splitlines()) == 1
