"""The job launcher of the reproduce scripts (ood/runtime/launch.py): plans, markers of finished steps, errors.
The grid through submitit's local executor, end to end, is in tests/test_reproduce.py."""
import subprocess
import sys
from pathlib import Path

import pytest

from ood.errors import UserError
from ood.runtime.launch import read_plan, run_job

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


@pytest.mark.slow
def test_local_launcher_resubmits_a_failed_job_without_redoing_finished_steps(tmp_path):
    """Through submitit's local executor: a job that fails is resubmitted (--retries) and then reported;
    the same command once the cause is fixed skips the steps every job finished, and the aggregation
    runs only after every other job succeeded."""
    pytest.importorskip("submitit")
    work = tmp_path / "work"
    work.mkdir()
    plan = tmp_path / "plan.txt"
    plan.write_text(f"# cwd {work}\n# job s1\necho train1 >> log.txt\necho score1 >> log.txt\n"
                    "# job s2\necho train2 >> log.txt\ntest -e fixed\necho score2 >> log.txt\n"
                    "# job aggregate\necho aggregate >> log.txt\n")
    argv = [sys.executable, "-m", "ood.runtime.launch", str(plan), "--launcher", "local", "--jobs_dir", str(tmp_path / "jobs"),
            "--retries", "1"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    first = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "s1: finished" in first.stdout and "s2: failed" in first.stdout and "resubmitted (1 more)" in first.stdout
    assert "stopped: job s2 failed" in first.stderr and "aggregate" not in (work / "log.txt").read_text()
    (work / "fixed").touch()
    again = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "s1: finished" in again.stdout and "0 step(s) run, 2 skipped" in again.stdout
    assert "s2: finished" in again.stdout and "2 step(s) run, 1 skipped" in again.stdout  # train2 was done
    # train2 ran once: the resubmission in the first run skipped it too
    assert (work / "log.txt").read_text().split() == ["train1", "score1", "train2", "score2", "aggregate"]
