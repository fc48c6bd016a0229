"""verify_data.py --download (ood/data/download.py) against a local HTTP server on 127.0.0.1: archives in their
real formats fetched, checked and unpacked where the verifier then finds them complete; resume of a
partial download, a server that ignores Range, a dropped connection, a corrupt / truncated / unsafe
archive, a missing file, no network, a complete set left alone, an incomplete folder never written
into, the mirror's flag and environment variable, OpenOOD v1.5's image lists and image zips, and gdown
failing cleanly without network.

No test reaches any address but 127.0.0.1: in this process every socket connection and name lookup to
another host is refused (``loopback_only``), and the scripts started here get proxies at a closed port
on 127.0.0.1 (so any request that is not to 127.0.0.1 itself goes nowhere)."""
import errno
import hashlib
import http.server
import io
import os
import re
import shutil
import socket
import socketserver
import subprocess
import sys
import tarfile
import threading
import urllib.parse
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torchvision
from PIL import Image

import datagen
import verify_data
from ood import data as D
from ood.data import download as DL
from ood.data import verify as V
from ood.data import DRIVE
from ood.data.openood import BENCHMARK, LISTS

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
PROXY_VARS = [v for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") for v in (name, name.upper())]
LOOPBACK = ("127.0.0.1", "::1", "localhost")


# ----------------------------------------------------------------------------------------------------
# The local server
# ----------------------------------------------------------------------------------------------------
class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` ({name: bytes}) with Range support; ``server.modes[name]`` makes it answer
    404, a web page ("html"), serve the first half only ("truncated"), a flipped byte ("corrupt"), ignore Range ("norange"),
    or close the connection half-way through the body (always: "drop"; the first time: "drop_once")."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in [("Content-Length", str(len(body))), *headers]:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv = self.server
        name = urllib.parse.unquote(self.path.lstrip("/"))
        rng = self.headers.get("Range")
        srv.requests.append((name, rng))
        mode = srv.modes.get(name, "ok")
        if name not in srv.files or mode == "404":
            return self.reply(404, b"no such file", [("Content-Type", "text/plain")])
        if mode == "html":
            return self.reply(200, b"<html>sign in first</html>", [("Content-Type", "text/html; charset=utf-8")])
        data = srv.files[name]
        if mode == "truncated":
            data = data[:len(data) // 2]
        elif mode == "corrupt":
            mid = len(data) // 2
            data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
        start = 0
        if rng and mode != "norange":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng)[1])
            if start >= len(data):
                return self.reply(416, b"", [("Content-Range", f"bytes */{len(data)}")])
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if mode != "norange":
            self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if mode == "drop" or (mode == "drop_once" and name not in srv.dropped):
            srv.dropped.add(name)
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


class Mirror(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files, self.modes, self.requests, self.dropped = {}, {}, [], set()

    def server_bind(self):  # without HTTPServer's reverse lookup of the address
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def asked(self, name):
        """The Range header of each request for ``name`` (None: the whole file)."""
        return [r for n, r in self.requests if n == name]


def start_mirror():
    srv = Mirror()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


def stop_mirror(srv):
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def mirror():
    srv = start_mirror()
    yield srv
    stop_mirror(srv)


def closed_port():
    """A port on 127.0.0.1 nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """In this process: no proxy, no mirror from the environment, and any connection or name lookup that is
    not 127.0.0.1's refused."""
    for var in PROXY_VARS + [DL.MIRROR_ENV]:
        monkeypatch.delenv(var, raising=False)
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"the tests reach 127.0.0.1 only, not {address[0]}")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and host not in LOOPBACK:
            raise socket.gaierror(socket.EAI_NONAME, f"the tests look up no name ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def start_script(args, proxy_bypass="127.0.0.1"):
    """verify_data.py in its own process, every proxy variable pointing at a closed port on 127.0.0.1
    except for the hosts in ``proxy_bypass`` (NO_PROXY), and no mirror variable."""
    dead = f"http://127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and k != DL.MIRROR_ENV}
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        env[name] = env[name.upper()] = dead
    env["no_proxy"] = env["NO_PROXY"] = proxy_bypass
    return subprocess.Popen([sys.executable, str(ROOT / "verify_data.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def failures(err):
    return [line for line in err.splitlines() if line.startswith("download failed: ")]


# ----------------------------------------------------------------------------------------------------
# The paper's benchmark: a test-declared OOD set (tests/download_sets.py)
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sets(register_sets):
    """tests/download_sets.py imported (its two registrations done) for this module only."""
    return register_sets("download_sets")


@pytest.fixture
def root(sets, tmp_path):
    """A data root holding the complete ID set toyid (6 training, 4 test images) and nothing else."""
    data = tmp_path / "data"
    datagen.write_image_folder(data / "toyid" / "train", n=3, size=8, subdirs=("a", "b"))
    datagen.write_image_folder(data / "toyid" / "test", n=2, size=8, subdirs=("a", "b"))
    return data


def pebbles_args(root, *more):
    return ["--dataset_path", str(root), "--for", "toyid", "--download", *more]


def assert_pebbles_in_place(sets, root):
    for name, data in sets.PEBBLES_FILES.items():
        assert (root / "pebbles" / name).read_bytes() == data
    assert sorted(p.name for p in root.iterdir()) == ["PEB.tar.gz", "pebbles", "toyid"]  # no .part, staging, PEB/
    assert hashlib.md5((root / "PEB.tar.gz").read_bytes()).hexdigest() == sets.PEBBLES.md5
    rows = {r.entry.key: r for r in V.check(root, "toyid").rows}
    assert rows["Pebbles"].ok and rows["Pebbles"].count == 6 and rows["Pebbles"].md5 == "PEB.tar.gz ok"


def test_fetch_check_unpack_then_leave_alone(sets, root, mirror, capsys):
    """Fetched from the mirror, its PEB/ folder unpacked as <root>/pebbles/ and found complete by the
    verifier. A second run fetches nothing and touches no file."""
    mirror.files["PEB.tar.gz"] = sets.PEBBLES_ARCHIVE
    assert verify_data.main(pebbles_args(root, "--mirror", mirror.url)) == 0
    out, err = capsys.readouterr()
    assert "OK: all 3 sets needed by 'toyid'" in out and not failures(err)
    assert f"PEB.tar.gz: unpacked into {root / 'pebbles'}" in out
    assert mirror.asked("PEB.tar.gz") == [None]
    assert_pebbles_in_place(sets, root)

    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert verify_data.main(pebbles_args(root, "--mirror", mirror.url)) == 0
    assert "fetching" not in capsys.readouterr().out
    assert len(mirror.requests) == 1  # not asked again
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_corrupt_download_is_kept_aside_and_not_unpacked(sets, root, mirror, capsys):
    """An md5 mismatch is one line, the file is renamed .corrupt, nothing is unpacked; a second bad
    download never overwrites the first."""
    mirror.files["PEB.tar.gz"] = sets.PEBBLES_ARCHIVE
    mirror.modes["PEB.tar.gz"] = "corrupt"
    assert verify_data.main(pebbles_args(root, "--mirror", mirror.url)) == 1
    [line] = failures(capsys.readouterr().err)
    url = f"{mirror.url}/PEB.tar.gz"
    assert line.startswith(f"download failed: PEB.tar.gz: the download from {url} is corrupt: md5 ")
    assert f"expected {sets.PEBBLES.md5} (1,599 bytes). It is kept aside as {root / 'PEB.tar.gz.corrupt'} " \
           f"and nothing was unpacked; run again to fetch it anew." in line
    assert sorted(p.name for p in root.iterdir()) == ["PEB.tar.gz.corrupt", "toyid"]
    assert verify_data.main(pebbles_args(root, "--mirror", mirror.url)) == 1
    assert f"kept aside as {root / 'PEB.tar.gz.corrupt.1'}" in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir()) == ["PEB.tar.gz.corrupt", "PEB.tar.gz.corrupt.1", "toyid"]


def test_partial_file_is_resumed(sets, root, mirror):
    """A .part left by an interrupted run holds the first half: only the rest is asked for (Range). One
    that holds it all (a run stopped before renaming it) is found complete (HTTP 416)."""
    half = len(sets.PEBBLES_ARCHIVE) // 2
    (root / "PEB.tar.gz.part").write_bytes(sets.PEBBLES_ARCHIVE[:half])
    mirror.files["PEB.tar.gz"] = sets.PEBBLES_ARCHIVE
    assert verify_data.main(pebbles_args(root, "--mirror", mirror.url)) == 0
    assert mirror.asked("PEB.tar.gz") == [f"bytes={half}-"]
    assert_pebbles_in_place(sets, root)

    other = root.parent / "other"
    shutil_copy_toyid(root, other)
    (other / "PEB.tar.gz.part").write_bytes(sets.PEBBLES_ARCHIVE)
    assert verify_data.main(pebbles_args(other, "--mirror", mirror.url)) == 0
    assert mirror.asked("PEB.tar.gz")[-1] == f"bytes={len(sets.PEBBLES_ARCHIVE)}-"
    assert_pebbles_in_place(sets, other)


def test_dropped_connection_resumes(sets, root, mirror, capsys):
    """A connection closed half-way: within a run, the next transfer continues it (Range); when it keeps
    failing, one line says the bytes are kept and the next run resumes them, which it does."""
    mirror.files["PEB.tar.gz"] = sets.PEBBLES_ARCHIVE
    mirror.modes["PEB.tar.gz"] = "drop_once"
    assert verify_data.main(pebbles_args(root, "--mirror", mirror.url)) == 0
    assert mirror.asked("PEB.tar.gz") == [None, f"bytes={len(sets.PEBBLES_ARCHIVE) // 2}-"]
    assert_pebbles_in_place(sets, root)

    other = root.parent / "other"
    shutil_copy_toyid(root, other)
    mirror.requests.clear()
    mirror.modes["PEB.tar.gz"] = "drop"
    assert verify_data.main(pebbles_args(other, "--mirror", mirror.url)) == 1
    [line] = failures(capsys.readouterr().err)
    part = other / "PEB.tar.gz.part"
    kept = part.stat().st_size
    assert re.fullmatch(rf"download failed: PEB\.tar\.gz: the transfer from {re.escape(mirror.url)}/PEB\.tar\.gz "
                        rf"stopped after {kept:,} of 1,599 bytes \(the connection closed early\); the bytes received "
                        rf"are kept in {re.escape(str(part))} and the next run of verify_data\.py --download resumes "
                        rf"from there\.", line), line
    assert len(mirror.requests) == DL.ATTEMPTS and not (other / "pebbles").exists()
    mirror.modes["PEB.tar.gz"] = "ok"
    assert verify_data.main(pebbles_args(other, "--mirror", mirror.url)) == 0
    assert mirror.requests[-1] == ("PEB.tar.gz", f"bytes={kept}-")
    assert_pebbles_in_place(sets, other)


def shutil_copy_toyid(src, dst):
    shutil.copytree(src / "toyid", dst / "toyid")


def test_server_ignoring_range_restarts_cleanly(sets, root, mirror):
    (root / "PEB.tar.gz.part").write_bytes(b"stale bytes of some other file" * 20)
    mirror.files["PEB.tar.gz"] = sets.PEBBLES_ARCHIVE
    mirror.modes["PEB.tar.gz"] = "norange"
    assert verify_data.main(pebbles_args(root, "--mirror", mirror.url)) == 0
    assert mirror.asked("PEB.tar.gz") == ["bytes=600-"]  # asked, got the whole file, kept only that
    assert_pebbles_in_place(sets, root)


def test_missing_file_and_no_network(sets, root, mirror, capsys):
    """HTTP 404, and a mirror nobody listens on: one line each naming the URL tried and what to fetch by
    hand, and where to put it; nothing left behind."""
    hand = (f"Fetch PEB.tar.gz by hand from https://example.invalid/PEB.tar.gz (md5 {sets.PEBBLES.md5}) and put it "
            f"at {root / 'PEB.tar.gz'}; verify_data.py --download then checks and unpacks it.")
    assert verify_data.main(pebbles_args(root, "--mirror", mirror.url)) == 1
    out, err = capsys.readouterr()
    assert failures(err) == [f"download failed: PEB.tar.gz: could not fetch {mirror.url}/PEB.tar.gz "
                             f"(HTTP 404 Not Found). {hand}"]
    assert "NOT READY: 1 of the 3 sets needed by 'toyid'" in out
    dead = f"http://127.0.0.1:{closed_port()}"
    assert verify_data.main(pebbles_args(root, "--mirror", dead)) == 1
    assert failures(capsys.readouterr().err) == [f"download failed: PEB.tar.gz: could not fetch {dead}/PEB.tar.gz "
                                                 f"(Connection refused). {hand}"]
    assert sorted(p.name for p in root.iterdir()) == ["toyid"]
    mirror.files["PEB.tar.gz"], mirror.modes["PEB.tar.gz"] = sets.PEBBLES_ARCHIVE, "html"
    assert verify_data.main(pebbles_args(root, "--mirror", mirror.url)) == 1
    assert failures(capsys.readouterr().err) == [
        f"download failed: PEB.tar.gz: {mirror.url}/PEB.tar.gz sent a web page (text/html), not the file (a sign-in, "
        f"quota or preview page?); nothing was kept. {hand}"]
    assert sorted(p.name for p in root.iterdir()) == ["toyid"]
    # the archive put there by hand is then checked and unpacked, and left in place
    (root / "PEB.tar.gz").write_bytes(sets.PEBBLES_ARCHIVE)
    assert verify_data.main(pebbles_args(root, "--mirror", dead)) == 0
    assert_pebbles_in_place(sets, root)


def test_bad_file_put_there_by_hand_is_left_alone(sets, root, mirror, capsys):
    (root / "PEB.tar.gz").write_bytes(sets.PEBBLES_ARCHIVE[:900])
    mirror.files["PEB.tar.gz"] = sets.PEBBLES_ARCHIVE
    assert verify_data.main(pebbles_args(root, "--mirror", mirror.url)) == 1
    [line] = failures(capsys.readouterr().err)
    assert line.startswith(f"download failed: PEB.tar.gz: the file already at {root / 'PEB.tar.gz'} is corrupt: md5 ")
    assert "It is left where it is and nothing was unpacked: delete it or move it aside and run again" in line
    assert (root / "PEB.tar.gz").read_bytes() == sets.PEBBLES_ARCHIVE[:900] and not mirror.requests
    assert sorted(p.name for p in root.iterdir()) == ["PEB.tar.gz", "toyid"]


def test_incomplete_folder_is_never_written_into(sets, root, mirror, capsys):
    (root / "pebbles" / "stones").mkdir(parents=True)
    (root / "pebbles" / "stones" / "mine.png").write_bytes(sets.PEBBLES_FILES["stones/00000.png"])
    mtime = (root / "pebbles" / "stones" / "mine.png").stat().st_mtime_ns
    mirror.files["PEB.tar.gz"] = sets.PEBBLES_ARCHIVE
    assert verify_data.main(pebbles_args(root, "--mirror", mirror.url)) == 1
    dest = root / "pebbles"
    assert failures(capsys.readouterr().err) == [
        f"download failed: Pebbles: {dest} already exists and is not complete (Pebbles: too few images (1 of 6)); "
        f"--download never writes into an existing folder: move it aside (mv {dest} {dest}.old) and run again to "
        f"fetch PEB.tar.gz."]
    assert not mirror.requests and [p.name for p in dest.rglob("*")] == ["stones", "mine.png"]
    assert (root / "pebbles" / "stones" / "mine.png").stat().st_mtime_ns == mtime
    # an empty folder holds nothing to lose: the set is unpacked in its place
    (dest / "stones" / "mine.png").unlink()
    (dest / "stones").rmdir()
    assert verify_data.main(pebbles_args(root, "--mirror", mirror.url)) == 0
    assert_pebbles_in_place(sets, root)


def test_unsafe_archives_are_refused(sets, root, mirror, monkeypatch, capsys):
    """Members that would land outside the destination (.., an absolute path, a link pointing out) are
    refused before anything is unpacked, even when the archive's md5 is the declared one."""
    good = sets.PEBBLES_FILES
    link = io.BytesIO()
    with tarfile.open(fileobj=link, mode="w:gz") as tar:
        info = tarfile.TarInfo("PEB/stones/escape.png")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../outside.png"
        tar.addfile(info)
    for archive, member in ((sets.tar_gz({**good, "../../evil.png": b"x"}, top="PEB"), "PEB/.."),
                            (sets.tar_gz({**good, "/tmp/evil.png": b"x"}), "/tmp"),
                            (link.getvalue(), "PEB/stones/escape.png")):
        monkeypatch.setitem(D.OOD_SETS, "pebbles", replace(sets.PEBBLES, md5=hashlib.md5(archive).hexdigest()))
        mirror.files["PEB.tar.gz"] = archive
        assert verify_data.main(pebbles_args(root, "--mirror", mirror.url)) == 1
        [line] = failures(capsys.readouterr().err)
        assert f"/PEB.tar.gz is unsafe to unpack: member {member!r}" in line and "nothing was unpacked" in line
        assert not (root / "pebbles").exists() and not (root.parent / "evil.png").exists()
        for p in root.glob("PEB.tar.gz.corrupt*"):
            p.unlink()
        assert sorted(p.name for p in root.iterdir()) == ["toyid"]


def test_mirror_from_the_environment_and_the_flag_wins(sets, root, mirror, monkeypatch, capsys):
    mirror.files["PEB.tar.gz"] = sets.PEBBLES_ARCHIVE
    monkeypatch.setenv(DL.MIRROR_ENV, mirror.url + "/")
    assert verify_data.main(pebbles_args(root)) == 0
    assert mirror.asked("PEB.tar.gz") == [None]
    assert_pebbles_in_place(sets, root)

    other = root.parent / "other"
    shutil_copy_toyid(root, other)
    monkeypatch.setenv(DL.MIRROR_ENV, f"http://127.0.0.1:{closed_port()}")
    assert verify_data.main(pebbles_args(other, "--mirror", mirror.url)) == 0
    assert mirror.asked("PEB.tar.gz") == [None, None]
    monkeypatch.setenv(DL.MIRROR_ENV, "ftp://lab/data")
    with pytest.raises(SystemExit) as e:
        verify_data.main(pebbles_args(other))
    assert e.value.code == 2
    assert f"{DL.MIRROR_ENV} 'ftp://lab/data': give the http://, https:// or file:// URL" in capsys.readouterr().err
    # a folder is a file:// mirror
    folder = root.parent / "lab-copies"
    folder.mkdir()
    (folder / "PEB.tar.gz").write_bytes(sets.PEBBLES_ARCHIVE)
    assert DL.resolve_mirror(str(folder)) == folder.resolve().as_uri()
    third = root.parent / "third"
    shutil_copy_toyid(root, third)
    assert verify_data.main(pebbles_args(third, "--mirror", str(folder))) == 0
    assert_pebbles_in_place(sets, third)
    assert DL.resolve_mirror(None, {}) is None and DL.resolve_mirror(None, {DL.MIRROR_ENV: " "}) is None


def test_usage_errors(sets, root, mirror, capsys):
    for argv in (["--mirror", mirror.url], ["--download", "--mirror", "ftp://lab/data"],
                 ["--download", "--mirror", str(root / "no-such-folder")], ["--benchmark", "bogus"],
                 ["--benchmark", "openood", "--for", "toyid"], ["--benchmark", "openood", "--for", "reproduce_cifar"],
                 ["--benchmark", "openood", "--expect", "cifar10/nosuch=3"],
                 ["--benchmark", "openood", "--for", "cifar10", "--ood", "SVHN_nope"]):
        with pytest.raises(SystemExit) as e:
            verify_data.main(["--dataset_path", str(root), *argv])
        assert e.value.code == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
    assert not mirror.requests


def test_cifar_and_svhn_from_a_mirror(data, tmp_path, mirror, monkeypatch):
    """With a mirror, the sets torchvision fetches come from it too, by their file names: CIFAR-10's
    archive unpacks into the root (cifar-10-batches-py/), SVHN's .mat is put in <root>/SVHN/."""
    def no_download(cls):
        class NoDownload(cls):
            def __init__(self, *args, download=False, **kwargs):
                assert not download, "torchvision must not fetch what the mirror serves"
                super().__init__(*args, **kwargs)
        return NoDownload
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_download(torchvision.datasets.CIFAR10))
    monkeypatch.setattr(torchvision.datasets, "SVHN", no_download(torchvision.datasets.SVHN))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        tar.add(data / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    c10, svhn = D.ID_SETS["cifar10"], D.OOD_SETS["svhn"]
    mat = (data / "SVHN" / "test_32x32.mat").read_bytes()
    mirror.files = {c10.archive: raw.getvalue(), svhn.archive: mat}
    monkeypatch.setitem(D.ID_SETS, "cifar10", replace(c10, md5=hashlib.md5(raw.getvalue()).hexdigest()))
    monkeypatch.setitem(D.OOD_SETS, "svhn", replace(svhn, md5=hashlib.md5(mat).hexdigest()))
    root = tmp_path / "new"
    assert verify_data.main(["--dataset_path", str(root), "--for", "cifar10", "--ood", "SVHN", "--download",
                             "--mirror", mirror.url, "--expect", "cifar10/train=100", "--expect", "cifar10/test=40",
                             "--expect", "SVHN=30"]) == 0
    assert [n for n, _ in mirror.requests] == ["cifar-10-python.tar.gz", "test_32x32.mat"]
    assert sorted(p.name for p in root.iterdir()) == ["SVHN", "cifar-10-batches-py", "cifar-10-python.tar.gz"]
    assert (root / "SVHN" / "test_32x32.mat").read_bytes() == mat
    # without a mirror they stay torchvision's
    assert DL.declared_archive(c10) is None and DL.declared_archive(svhn) is None
    lsun = DL.declared_archive(D.OOD_SETS["lsun_c"])
    assert (lsun.file, lsun.dest, lsun.md5) == ("LSUN.tar.gz", "LSUN_C", D.OOD_SETS["lsun_c"].md5)
    assert DL.declared_archive(D.OOD_SETS["textures"]).dest == "dtd"
    assert DL.declared_archive(D.ID_SETS["imagenet"]) is None  # no public archive: told by hand
    assert DL.source_url(lsun) == "https://www.dropbox.com/s/fhtsw1m3qxlwj6h/LSUN.tar.gz?dl=1"


# ----------------------------------------------------------------------------------------------------
# OpenOOD v1.5: image lists and image zips in its layout
# ----------------------------------------------------------------------------------------------------
def openood_archives(id_set, with_top=(), fsood=False):
    """{file name: zip bytes} of every archive ``id_set`` needs, small, in OpenOOD's layout: the image
    lists (``benchmark_imglist.zip``: benchmark_imglist/<id>/..., ``path label`` lines relative to the image
    folder) and one zip per image set holding the images they name, as OpenOOD's zips do: the set's own
    folders at the top (``with_top``: sets whose zip wraps them in a folder named like the set). ``fsood``:
    with the covariate-shifted ID sets' lists (in benchmark_imglist.zip, as OpenOOD's has them) and zips."""
    bench = BENCHMARK
    archives = {a.name: a for a in (*bench.archives_of(id_set), *(bench.csid_archives_of(id_set) if fsood else ()))}
    lists, images = {}, {name: {} for name in archives if name != LISTS}
    seeds = iter(range(1000))

    def add(list_path, set_name, split, labels):
        lines = []
        for i, y in enumerate(labels):
            rel = f"{split}/{i:03d}.png"
            images[set_name][rel] = png(next(seeds))
            lines.append(f"{set_name}/{rel} {y}")
        lists[list_path] = "\n".join(lines) + "\n"

    for role in ("train", "test", "val"):
        split = id_set.split_name(role)
        add(id_set.layout.list_path(id_set, split), id_set.name, split, [0, 1, 2])
    for o in bench.ood_sets(id_set):
        add(o.layout.list_path(o), o.name.removeprefix("val_"), "test" if o.group != "val" else "val", [-1, -1])
    for c in bench.csid_sets(id_set) if fsood else ():
        add(c.layout.list_path(c), c.name, "test", [2, 0, 1])

    def zipped(members, top):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in sorted(members.items()):
                zf.writestr(f"{top}/{name}" if top else name, data)
        return buf.getvalue()

    out = {archives[LISTS].file: zipped({p: t.encode() for p, t in lists.items()}, "")}
    for name, members in images.items():
        out[archives[name].file] = zipped(members, name if name in with_top else "")
    return out, lists


def png(seed, size=8):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    """The two runs of the script itself, started together (each process spends seconds importing torch):
    --benchmark openood --for cifar10 --download from a mirror serving its archives, and the same without
    a mirror and without network. Yields (mirror, lists written, {run: (root, rc, stdout, stderr)})."""
    srv = start_mirror()
    srv.files, lists = openood_archives(BENCHMARK.id_set("cifar10"))
    common = ["--benchmark", "openood", "--for", "cifar10", "--download"]
    roots = {run: tmp_path_factory.mktemp(run) / "data" for run in ("mirror", "offline")}
    procs = {"mirror": start_script(["--dataset_path", str(roots["mirror"]), *common, "--mirror", srv.url]),
             "offline": start_script(["--dataset_path", str(roots["offline"]), *common], proxy_bypass="")}
    runs = {}
    for run, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        runs[run] = (roots[run], proc.returncode, out, err)
    yield srv, lists, runs
    stop_mirror(srv)


@pytest.mark.slow  # a script run (see pytest.ini)
def test_openood_lists_and_images(scripts):
    """Through the script: --benchmark openood --for cifar10 fetches the image lists and each image set's
    zip once, unpacks them in OpenOOD's layout (images_classic/<set>/, each zip as it is, as OpenOOD's
    data_setup does), and the verifier finds the 3 ID splits and 7 OOD sets complete."""
    mirror, lists, runs = scripts
    root, rc, out, err = runs["mirror"]
    assert rc == 0, out + err
    assert "OK: all 10 sets needed by 'cifar10'" in out and not failures(err)
    assert sorted(n for n, _ in mirror.requests) == sorted(mirror.files)  # each archive once
    for list_path, text in lists.items():
        assert (root / list_path).read_text() == text
    assert (root / "images_classic/cifar10/train/000.png").is_file()
    assert (root / "images_classic/mnist/test/000.png").is_file()
    report = V.check(root, "cifar10", benchmark="openood")
    rows = {r.entry.key: r for r in report.needed}
    assert list(rows) == ["cifar10/train", "cifar10/test", "cifar10/val", "cifar10/val_tin", "cifar10/cifar100",
                          "cifar10/tin", "cifar10/mnist", "cifar10/svhn", "cifar10/texture", "cifar10/places365"]
    assert rows["cifar10/tin"].count == 2 and rows["cifar10/tin"].entry.label == "tin (CIFAR-10, near)"
    assert report.ok and not any(r.needed for r in report.rows if not r.entry.key.startswith("cifar10/"))
    # complete: a second run fetches nothing
    mirror.requests.clear()
    assert verify_data.main(["--dataset_path", str(root), "--benchmark", "openood", "--for", "cifar10",
                             "--download", "--mirror", mirror.url]) == 0
    assert not mirror.requests


def test_openood_zips_unpack_as_they_are(tmp_path, mirror, capsys):
    """An OpenOOD image zip is unpacked as it is into images_*/<set>/, as OpenOOD's data_setup does: one
    whose images sit under a folder named like the set lands one level deeper, where the lists do not
    find them (the same layout OpenOOD's own code would read), and the verifier says so."""
    mirror.files, _ = openood_archives(BENCHMARK.id_set("cifar10"), with_top=("tin",))
    root = tmp_path / "data"
    assert verify_data.main(["--dataset_path", str(root), "--benchmark", "openood", "--for", "cifar10",
                             "--download", "--mirror", mirror.url]) == 1
    out = capsys.readouterr().out
    assert (root / "images_classic/tin/tin/test/000.png").is_file()
    assert not (root / "images_classic/tin/test").exists() and "listed images missing" in out


def test_openood_truncated_and_corrupt_zips(tmp_path, mirror, capsys):
    c10 = BENCHMARK.id_set("cifar10")
    mirror.files, _ = openood_archives(c10)
    mirror.modes.update({"svhn.zip": "truncated", "texture.zip": "corrupt"})
    root = tmp_path / "data"
    argv = ["--dataset_path", str(root), "--benchmark", "openood", "--for", "cifar10", "--download",
            "--mirror", mirror.url]
    assert verify_data.main(argv) == 1
    out, err = capsys.readouterr()
    lines = failures(err)
    assert len(lines) == 2, err
    svhn, texture = lines
    assert svhn.startswith(f"download failed: svhn.zip: the download from {mirror.url}/svhn.zip is a damaged zip "
                           f"archive (BadZipFile: ") and f"kept aside as {root / 'svhn.zip.corrupt'}" in svhn
    assert f"Fetch svhn.zip by hand from {DRIVE}1DQfc11HOtB1nEwqS4pWUFp8vtQ3DczvI and put it at " \
           f"{root / 'svhn.zip'}" in svhn
    assert texture.startswith("download failed: texture.zip: the download from") and "damaged zip archive" in texture
    classic = sorted(p.name for p in (root / "images_classic").iterdir())
    assert classic == ["cifar10", "cifar100", "mnist", "places365", "tin"]  # the others unpacked, these two not
    assert "NOT READY: 2 of the 10 sets needed by 'cifar10'" in out and "listed images missing" in out
    # served whole again: the next run fetches only those two, and all is complete
    mirror.modes.clear()
    mirror.requests.clear()
    assert verify_data.main(argv) == 0
    assert sorted(n for n, _ in mirror.requests) == ["svhn.zip", "texture.zip"]
    # an image folder missing one listed image is never written into
    (root / "images_classic/mnist/test/001.png").unlink()
    mirror.requests.clear()
    assert verify_data.main(argv) == 1
    dest = root / "images_classic" / "mnist"
    assert failures(capsys.readouterr().err) == [
        f"download failed: mnist: {dest} already exists and is not complete (1 listed images missing, e.g. "
        f"images_classic/mnist/test/001.png); --download never writes into an existing folder: move it aside "
        f"(mv {dest} {dest}.old) and run again to fetch mnist.zip."]
    assert not mirror.requests


def test_openood_archives_derived_once_each(tmp_path):
    report = V.check(tmp_path, "all", benchmark="openood")
    archives, covered = V.target_archives(report, BENCHMARK, BENCHMARK.id_sets)
    files = [a.file for a in archives]
    assert len(files) == len(set(files)) and files[0] == "benchmark_imglist.zip"
    assert set(files) == {a.file for s in BENCHMARK.id_sets for a in BENCHMARK.archives_of(s)}
    # OpenOOD does not distribute ImageNet's training images: those two splits are fetched by hand, and
    # their missing images never make imagenet_1k.zip's folder look incomplete
    by_hand = {r.entry.key for r in report.needed if r.entry.by_hand}
    assert by_hand == {"imagenet200/train", "imagenet/train"}
    assert covered == {r.entry.key for r in report.needed} - by_hand
    assert all("ILSVRC2012" in r.entry.howto for r in report.needed if r.entry.by_hand)
    assert len(report.needed) == sum(3 + len(BENCHMARK.ood_sets(s)) for s in BENCHMARK.id_sets) == 38
    # --for names one ID set, --ood some of its own OOD sets
    assert V.resolve_target("CIFAR100", "openood")[0] == ("cifar100/train", "cifar100/test", "cifar100/val")
    report = V.check(tmp_path, "cifar100", ood=["TIN", "mnist"], benchmark="openood")
    assert [r.entry.key for r in report.needed] == ["cifar100/train", "cifar100/test", "cifar100/val",
                                                    "cifar100/tin", "cifar100/mnist"]


@pytest.mark.slow  # a script run (see pytest.ini)
def test_gdown_fails_cleanly_without_network(scripts):
    """Through the script, no mirror: OpenOOD's archives come from Google Drive through gdown, which cannot
    reach anything (every proxy variable points at a closed port on 127.0.0.1, none bypassed): one line
    per archive, naming the Drive link to fetch by hand and where to put it; nothing is left behind."""
    root, rc, out, err = scripts[2]["offline"]
    assert rc == 1, out + err
    lines = failures(err)
    archives = BENCHMARK.archives_of(BENCHMARK.id_set("cifar10"))
    assert len(lines) == len(archives) == 8, err
    for line, a in zip(lines, archives):
        link = f"{DRIVE}{a.drive_id}"
        assert line == (f"download failed: {a.file}: could not fetch {link} through gdown (ProxyError: cannot reach "
                        f"the proxy (Connection refused)). Fetch {a.file} by hand from {link} and put it at "
                        f"{root / a.file}; verify_data.py --download then checks and unpacks it."), line
    assert list(root.iterdir()) == []
    assert "NOT READY: 10 of the 10 sets needed by 'cifar10'" in out


# ----------------------------------------------------------------------------------------------------
# OpenOOD v1.5's full-spectrum setting: the covariate-shifted ID sets (verify_data.py --fsood)
# ----------------------------------------------------------------------------------------------------
def test_openood_fsood_sets_only_with_the_flag(tmp_path, mirror, capsys):
    """Without --fsood, CIFAR-10-C is neither needed nor fetched (its archive is large and only --fsood runs
    read it); with --fsood its list (in benchmark_imglist.zip) and cifar10c.zip are checked and fetched, the
    zip unpacked into images_classic/cifar10c/, and the verifier counts its labelled images."""
    c10 = BENCHMARK.id_set("cifar10")
    mirror.files, lists = openood_archives(c10, fsood=True)
    root = tmp_path / "data"
    argv = ["--dataset_path", str(root), "--benchmark", "openood", "--for", "cifar10", "--download",
            "--mirror", mirror.url]
    assert verify_data.main(argv) == 0
    out = capsys.readouterr().out
    assert "OK: all 10 sets needed by 'cifar10'" in out and "cifar10c (CIFAR-10, csid)" in out
    assert "cifar10c.zip" not in [n for n, _ in mirror.requests] and not (root / "images_classic/cifar10c").exists()
    report = V.check(root, "cifar10", benchmark="openood", fsood=True)
    rows = {r.entry.key: r for r in report.needed}
    assert list(rows)[-1] == "cifar10/cifar10c" and not rows["cifar10/cifar10c"].ok and not report.ok
    assert "listed images missing" in rows["cifar10/cifar10c"].status
    mirror.requests.clear()
    assert verify_data.main(argv + ["--fsood"]) == 0
    out = capsys.readouterr().out
    assert "OK: all 11 sets needed by 'cifar10'" in out
    assert [n for n, _ in mirror.requests] == ["cifar10c.zip"]  # the rest was complete already
    assert (root / "benchmark_imglist/cifar10/test_cifar10c.txt").read_text() == \
        lists["benchmark_imglist/cifar10/test_cifar10c.txt"]
    assert (root / "images_classic/cifar10c/test/000.png").is_file()
    row = {r.entry.key: r for r in V.check(root, "cifar10", benchmark="openood", fsood=True).needed}["cifar10/cifar10c"]
    assert row.ok and row.count == 3 and row.entry.label == "cifar10c (CIFAR-10, csid)"
    # an ID label out of range in a csid list is refused as in the ID lists
    (root / "benchmark_imglist/cifar10/test_cifar10c.txt").write_text("cifar10c/test/000.png 10\n")
    row = {r.entry.key: r for r in V.check(root, "cifar10", benchmark="openood", fsood=True).needed}["cifar10/cifar10c"]
    assert not row.ok and "label 10 is out of range" in row.status


def test_openood_fsood_through_gdown(tmp_path, monkeypatch, capsys):
    """No mirror: every archive, cifar10c.zip included, comes through gdown from its Google Drive id (a fake
    gdown.download here, serving the zips by id: nothing leaves the machine), and is checked and unpacked as
    a mirror's would be."""
    import gdown
    c10 = BENCHMARK.id_set("cifar10")
    files, _ = openood_archives(c10, fsood=True)
    by_id = {a.drive_id: files[a.file] for a in (*BENCHMARK.archives_of(c10), *BENCHMARK.csid_archives_of(c10))}
    asked = []

    def download(url=None, output=None, resume=False, quiet=False, **kwargs):
        asked.append(url)
        Path(output).write_bytes(by_id[url.removeprefix(DRIVE)])
        return output

    monkeypatch.setattr(gdown, "download", download)
    root = tmp_path / "data"
    assert verify_data.main(["--dataset_path", str(root), "--benchmark", "openood", "--for", "cifar10", "--fsood",
                             "--download"]) == 0
    assert "OK: all 11 sets needed by 'cifar10'" in capsys.readouterr().out
    assert sorted(asked) == sorted(f"{DRIVE}{i}" for i in by_id)
    assert f"{DRIVE}170DU_ficWWmbh6O2wqELxK9jxRiGhlJH" in asked  # cifar10c.zip
    assert (root / "images_classic/cifar10c/test/002.png").is_file() and (root / "cifar10c.zip").is_file()


def test_openood_fsood_without_csid_sets_is_one_line(tmp_path, capsys):
    for argv, says in ((["--benchmark", "openood", "--for", "cifar100"], "declares no covariate-shifted ID sets for "
                                                                         "CIFAR-100"),
                       (["--for", "cifar10"], "add --benchmark openood")):
        with pytest.raises(SystemExit) as e:
            verify_data.main(["--dataset_path", str(tmp_path), *argv, "--fsood"])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
    # --for all: every ID set that has csid sets (CIFAR-100 has none and is no error there)
    needed = [r.entry.key for r in V.check(tmp_path, "all", benchmark="openood", fsood=True).needed]
    assert [k for k in needed if k.split("/")[1] in ("cifar10c", "imagenet_v2", "imagenet_c", "imagenet_r",
                                                     "imagenet_es")] == [
        "cifar10/cifar10c", "imagenet200/imagenet_v2", "imagenet200/imagenet_c", "imagenet200/imagenet_r",
        "imagenet/imagenet_v2", "imagenet/imagenet_c", "imagenet/imagenet_r", "imagenet/imagenet_es"]
