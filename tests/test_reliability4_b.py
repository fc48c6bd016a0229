"""Reliability, round 4 (b): the launcher's markers of finished steps are keyed on what each step read
(ood/runtime/launch.py, ood/system/inputs.py), a launcher that cannot submit here or a job that fails says so in one
line, a full disk while saving a torch file or while downloading is one line, and a stalled server is
given up after --timeout seconds (ood/data/download.py)."""
import http.server
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import torch

from checks import exits_2, one_line_error
import generate_stored_pattern
import test_download as TD
import verify_data
from ood.runtime import launch
from ood.runtime.launch import read_marker, run_job

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
        "--batch_size", "20", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]


# ----------------------------------------------------------------------------------------------------
# Item 2: a marker is honoured only while the step's command and what it read are unchanged
# ----------------------------------------------------------------------------------------------------
def _noting(what, path, **kw):
    """A step that records, as the scripts do (ood.system.inputs), that it read ``path``, then reads it."""
    args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
    code = f"from ood.system.inputs import note; note({what!r}, [{str(path)!r}]{', ' + args if args else ''})"
    return f"PYTHONPATH={ROOT} {sys.executable} -c \"{code}\" && cat {path} >> log.txt"


def test_a_marker_follows_the_files_its_step_read(tmp_path, capsys):
    """Without any change the step is skipped; an image rewritten, an image added to its folder, or a
    checkpoint's bytes changed under the same size and time each make it run again, saying why in one
    line; so does a marker of an earlier version, which recorded the command only."""
    work, done = tmp_path / "work", tmp_path / "done"
    images = work / "data" / "toy" / "images"
    images.mkdir(parents=True)
    (images / "a.png").write_bytes(b"one")
    (work / "ck.pt").write_bytes(b"weights-1")
    steps = (_noting("the images of image set toy", images / "a.png", root=str(work / "data" / "toy")),
             _noting("checkpoint ck.pt", work / "ck.pt", contents=True))
    assert run_job(steps, done, work) == (2, 0)
    marker = json.loads(read_marker(done / "000"))
    assert (done / "000").read_bytes()[:2] == b"\x1f\x8b"  # gzip: ImageNet's 1.28 M file names stay small
    assert marker["command"] == steps[0] and [e["what"] for e in marker["inputs"]] == ["the images of image set toy"]
    assert not [p for p in done.iterdir() if p.name.startswith(".")]  # the notes are gone; only the markers
    capsys.readouterr()
    assert run_job(steps, done, work) == (0, 2)

    (images / "a.png").write_bytes(b"two")  # replaced by another image
    assert run_job(steps, done, work) == (1, 1)
    assert "step 1 of 2 runs again: the images of image set toy changed since it last ran" in capsys.readouterr().out
    (images / "b.png").write_bytes(b"new")  # one more image in the set's folder
    assert run_job(steps, done, work) == (1, 1)
    assert "runs again: the images of image set toy changed" in capsys.readouterr().out

    st = os.stat(work / "ck.pt")  # other weights, same size and modification time: its contents decide
    (work / "ck.pt").write_bytes(b"weights-2")
    os.utime(work / "ck.pt", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run_job(steps, done, work) == (1, 1)
    assert "step 2 of 2 runs again: checkpoint ck.pt changed since it last ran" in capsys.readouterr().out
    (work / "ck.pt").unlink()
    with pytest.raises(RuntimeError, match="failed with exit status 1"):  # gone: run again (and fail)
        run_job(steps, done, work)
    assert "checkpoint ck.pt can no longer be read" in capsys.readouterr().out

    (done / "000").write_text(steps[0])  # the marker of an earlier version: the command alone
    (work / "ck.pt").write_bytes(b"weights-2")
    run_job(steps, done, work)
    assert "step 1 of 2 runs again: its marker records the command only" in capsys.readouterr().out
    assert run_job(steps, done, work) == (0, 2)
    for text in ("{", json.dumps({"command": steps[0], "inputs": [{"files": 3}]})):  # edited by hand
        (done / "000").write_text(text)
        assert run_job(steps, done, work) == (1, 1)


@pytest.mark.slow
def test_a_launched_step_runs_again_after_its_images_or_checkpoint_change(fmnist_run, trained_fmnist, capsys):
    """Through the scripts: a job of the scoring script and the aggregation, run as the launcher's jobs
    run them. Run again unchanged, both are skipped; after an OOD image is replaced, or the checkpoint
    is, both run again (the same command without --launcher recomputes too) and the results follow."""
    run = fmnist_run
    score = (f"{sys.executable} {ROOT / 'test_score_ood_detection.py'} {' '.join(TINY)} --dataset_path data "
             f"--ood iSUN --score MSP --results_dir r")
    steps = (score, f"{sys.executable} {ROOT / 'aggregate_results.py'} r --out agg --quiet")
    done = run / "jobs" / "s1" / "done"

    def auroc():
        return json.loads((run / "r" / "results.json").read_text())["rows"][0]["auroc"]
    assert run_job(steps, done, run) == (2, 0)
    whats = [e["what"] for e in json.loads(read_marker(done / "000"))["inputs"]]
    assert {"checkpoint checkpoints/fashionmnist/wrn.pt", "the images of image set iSUN", "the images of image set test",
            "the project's code"} <= set(whats), whats
    assert "the results under r" in [e["what"] for e in json.loads(read_marker(done / "001"))["inputs"]]
    first = auroc()
    assert run_job(steps, done, run) == (0, 2)

    images = sorted((run / "data" / "iSUN" / "images").iterdir())
    for a, b in zip(images[:5], images[5:]):  # five OOD images replaced by others
        shutil.copyfile(b, a)
    capsys.readouterr()
    assert run_job(steps, done, run) == (2, 0)
    out = capsys.readouterr().out
    assert "step 1 of 2 runs again: the images of image set iSUN changed since it last ran" in out
    assert "step 2 of 2 runs again: the results under r changed since it last ran" in out
    second = auroc()
    assert second != pytest.approx(first, abs=1e-9)

    shutil.copyfile(trained_fmnist / "other.pt", run / "checkpoints" / "fashionmnist" / "wrn.pt")
    assert run_job(steps, done, run) == (2, 0)
    assert "step 1 of 2 runs again: checkpoint checkpoints/fashionmnist/wrn.pt changed since it last ran" in \
        capsys.readouterr().out
    assert run_job(steps, done, run) == (0, 2)


# ----------------------------------------------------------------------------------------------------
# Item 8: one line instead of a traceback
# ----------------------------------------------------------------------------------------------------
def test_slurm_launcher_without_slurm_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    """python3 -m ood.runtime.launch --launcher slurm where sbatch and srun are not on the PATH: one line naming
    SLURM and --launcher local, exit status 2, nothing submitted; the reproduce script stops there too,
    before the data check and before it writes anything."""
    pytest.importorskip("submitit")  # without it the launcher says so first (the oldest-version pass has none)
    plan = tmp_path / "plan.txt"
    plan.write_text(f"# cwd {tmp_path}\n# job s1\necho 1 >> log.txt\n# job aggregate\necho 2 >> log.txt\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sbatch, no srun
    exits_2(launch.main, [str(plan), "--launcher", "slurm", "--jobs_dir", str(tmp_path / "jobs")], capsys,
            "SLURM is not available on this machine", "--launcher local")
    assert not (tmp_path / "jobs").exists() and not (tmp_path / "log.txt").exists()
    exits_2(launch.main, ["--launcher", "slurm", "--check"], capsys, "SLURM is not available")
    monkeypatch.undo()

    path = "/usr/bin:/bin"
    if shutil.which("sbatch", path=path) or shutil.which("srun", path=path):
        pytest.skip("this machine has SLURM")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "scripts/reproduce_cifar.sh"), "cifar10", "--launcher", "slurm",
                           "--seeds", "1", "--models", "wrn", "--dataset_path", str(tmp_path / "data"), "--out", str(out)],
                          capture_output=True, text=True, env={"PYTHON": sys.executable, "PATH": path}, timeout=120)
    one_line_error(proc.returncode, proc.stderr, "SLURM is not available on this machine", "--launcher local")
    assert "verify_data" not in proc.stdout and not out.exists()


@pytest.mark.slow
def test_a_failed_job_says_its_last_error_line(tmp_path, monkeypatch):
    """Through submitit's local executor: a job whose step fails is reported with the step's own last
    error line and the path of the job's log, not with a fragment of submitit's list of log paths."""
    pytest.importorskip("submitit")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    plan = tmp_path / "plan.txt"
    plan.write_text(f"# cwd {tmp_path}\n# job s1\necho started\n"
                    "echo 'prepare.py: error: the calibration file is missing' >&2; exit 2\n"
                    "# job aggregate\necho aggregate\n")
    out = subprocess.run([sys.executable, "-m", "ood.runtime.launch", str(plan), "--launcher", "local", "--jobs_dir",
                          str(tmp_path / "jobs"), "--retries", "0"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    [line] = [x for x in out.stdout.splitlines() if x.startswith("s1: failed")]
    assert "step 2 of 2 failed with exit status 2" in line, line
    assert "its last error line: prepare.py: error: the calibration file is missing" in line, line
    log = Path(line.rsplit("(log: ", 1)[1].rstrip(")"))
    assert log.name.endswith("_log.err") and "the calibration file is missing" in log.read_text()


def test_disk_full_while_saving_a_stored_pattern(fmnist_run, capsys, monkeypatch):
    """torch.save's own word for a full disk on a small file ("basic_ios::clear: iostream error", a
    RuntimeError, as torch.save to /dev/full says) is one line; the temporary file is removed and the
    earlier pattern file kept as it was."""
    argv = TINY + ["--dataset_path", "data", "--ood", "iSUN", "--score", "SHE"]
    generate_stored_pattern.main(argv)
    [pattern] = (fmnist_run / "stored_pattern").rglob("patterns/*.pt")
    pattern.write_bytes(b"an earlier file, not a pattern: refitted")
    real = torch.save

    def full(obj, f, *a, **k):
        if "patterns" not in str(f):
            return real(obj, f, *a, **k)
        Path(f).write_bytes(b"PK\x03\x04 a few bytes")
        raise RuntimeError("basic_ios::clear: iostream error")
    monkeypatch.setattr(torch, "save", full)
    exits_2(generate_stored_pattern.main, argv, capsys, "the disk is full", str(pattern.relative_to(fmnist_run)))
    assert pattern.read_bytes() == b"an earlier file, not a pattern: refitted"
    assert not list(fmnist_run.rglob("*.tmp"))


# ----------------------------------------------------------------------------------------------------
# Downloads: a full disk, a stalled server
# ----------------------------------------------------------------------------------------------------
class StallingHandler(TD.Handler):
    """tests/test_download.py's server, with two more modes: "stall" sends the headers and half of the
    body, then nothing; "silent" answers nothing at all. Both hold until the test ends."""

    def do_GET(self):
        name = urllib.parse.unquote(self.path.lstrip("/"))
        mode = self.server.modes.get(name)
        if mode not in ("stall", "silent"):
            return super().do_GET()
        self.server.requests.append((name, self.headers.get("Range")))
        if mode == "stall":
            data = self.server.files[name]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
        self.server.release.wait(30)
        self.close_connection = True


class StallingMirror(TD.Mirror):
    def __init__(self):
        http.server.ThreadingHTTPServer.__init__(self, ("127.0.0.1", 0), StallingHandler)
        self.files, self.modes, self.requests, self.dropped = {}, {}, [], set()
        self.release = threading.Event()


@pytest.fixture
def mirror(monkeypatch):
    for var in TD.PROXY_VARS + [TD.DL.MIRROR_ENV]:
        monkeypatch.delenv(var, raising=False)
    srv = StallingMirror()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv
    srv.release.set()
    TD.stop_mirror(srv)


# the download tests' test-declared set and its data root (tests/download_sets.py)
sets, root = TD.sets, TD.root


def test_a_stalled_server_is_given_up_after_the_timeout(sets, root, mirror, capsys):
    """A server that stops sending half-way, and one that never answers: with --timeout 1 each URL is
    given up after about a second, at once (not tried again), in one line naming it; the bytes that
    came are kept for the next run. The timeout is checked as a number above 0."""
    mirror.files["PEB.tar.gz"] = sets.PEBBLES_ARCHIVE
    url = f"{mirror.url}/PEB.tar.gz"
    for mode in ("stall", "silent"):
        mirror.modes["PEB.tar.gz"], mirror.requests[:] = mode, []
        t0 = time.monotonic()
        assert verify_data.main(["--dataset_path", str(root), "--for", "toyid", "--download", "--mirror", mirror.url,
                                 "--timeout", "1"]) == 1
        assert time.monotonic() - t0 < 20
        [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("download failed: ")]
        assert len(mirror.requests) == 1, mirror.requests
        if mode == "stall":
            half = len(sets.PEBBLES_ARCHIVE) // 2
            assert f"PEB.tar.gz: {url} sent no data for 1 s (a stalled server); gave up on it after {half:,} of " \
                   f"{len(sets.PEBBLES_ARCHIVE):,} bytes, kept in {root / 'PEB.tar.gz.part'}" in line, line
            assert (root / "PEB.tar.gz.part").stat().st_size == half
            (root / "PEB.tar.gz.part").unlink()
        else:
            assert f"PEB.tar.gz: could not fetch {url} (no data for 1 s)" in line, line
            assert not (root / "PEB.tar.gz.part").exists()
    for bad in ("0", "-3", "nan", "inf"):
        exits_2(verify_data.main, ["--dataset_path", str(root), "--download", "--timeout", bad], capsys, "--timeout")


@pytest.mark.slow
def test_disk_full_while_downloading(sets, root, mirror):
    """A real full disk, as the file-size limit makes it (RLIMIT_FSIZE, EFBIG): the archive's bytes
    fit in the file's buffer, so it is f.flush() that fails. One line saying the disk is full and
    where, exit status 2, and the partial file removed."""
    mirror.files["PEB.tar.gz"] = sets.PEBBLES_ARCHIVE
    limit = len(sets.PEBBLES_ARCHIVE) // 2

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    env = {k: v for k, v in os.environ.items() if k not in TD.PROXY_VARS and k != TD.DL.MIRROR_ENV}
    env.update(PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}", PYTHONDONTWRITEBYTECODE="1")
    code = "import sys, download_sets, verify_data; sys.exit(verify_data.main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "--dataset_path", str(root), "--for", "toyid", "--download",
                           "--mirror", mirror.url], capture_output=True, text=True, env=env, timeout=300,
                          preexec_fn=small_files)
    part = root / "PEB.tar.gz.part"
    one_line_error(proc.returncode, proc.stderr, "the disk is full", str(part), "the partial download was removed")
    assert not part.exists() and not (root / "pebbles").exists()
