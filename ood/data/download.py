"""Fetch, check and unpack the declared archives (``verify_data.py --download``).

One downloader for every :class:`ood.data.Archive`, whichever benchmark declares it:

- **fetch** into ``<root>/<file>.part``: over http(s) (or file://) with urllib, continuing a ``.part`` an
  interrupted run left (an HTTP Range request; a server that ignores it sends the whole file, which then
  replaces the partial bytes), and a Google Drive file (``drive_id``, no mirror) through gdown, which
  resumes its own partial file. A mirror (``--mirror URL`` or the environment variable
  ``RECLAG_DATA_MIRROR``) serves every archive as ``<URL>/<file>``.
- **check** the complete download before anything is unpacked or renamed: its md5 when declared (else
  its size when declared); a zip member by member (each member's CRC), a tar (.gz, .bz2, .xz) read to the
  end of its compressed stream (gzip's CRC); member paths that would land outside the destination
  (absolute, ``..``, links pointing out, devices) are refused. A bad download is renamed
  ``<file>.corrupt`` (never overwriting anything), a bad file the user put there is left where it is.
- **unpack** into a staging folder beside the destination, then rename it into ``<root>/<dest>``: when
  the archive holds exactly one top-level folder named like the archive (its stem) or like the
  destination's last component, that folder's contents become the destination (LSUN.tar.gz's
  ``LSUN/`` becomes ``<root>/LSUN_C/``), otherwise the archive's entries do; an archive that declares
  its ``contents`` (a release of checkpoints: ``s0/best.ckpt``, ...) puts the one folder holding them all
  there, however deep it lies, and is refused in one line saying what it holds when no folder does. The
  destination must not exist (an empty folder is replaced): the downloader never writes into an
  existing folder.
- a file that is not an archive (SVHN's test_32x32.mat) is put at ``<root>/<dest>/<file>``.

The archive file is kept in the root after unpacking (the verifier checks its md5 there; delete it to
save space). Every failure is a :class:`DownloadFailed` whose message is one line: the archive, what
went wrong, and what to fetch by hand and where to put it.

What the archives are is derived from the declarations (ood/data/paper.py, ood/data/openood.py): see
:func:`declared_archive` and ``Benchmark.archives_of``; ood/data/verify.py decides which ones a target needs.
"""
import bz2
import contextlib
import errno
import fcntl
import gzip
import http.client
import itertools
import lzma
import os
import posixpath
import re
import shlex
import shutil
import socket
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path

from ood import data as D
from ood.errors import UserError
from ood.io import DiskFull, file_digest, is_disk_full, orphans, umask_mode

MIRROR_ENV = "RECLAG_DATA_MIRROR"
TIMEOUT = 60          # seconds without a byte before a URL counts as stalled and is given up (--timeout)
ATTEMPTS = 3          # transfers of one file per run, each resuming the last, while bytes keep coming
CHUNK = 1 << 20
USER_AGENT = "reclag-verify-data (urllib)"
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")
JUNK = ("__MACOSX",)  # macOS metadata folders in archives made on a Mac: never unpacked


class DownloadFailed(Exception):
    """One archive could not be fetched, checked or unpacked; the message is one line saying what to do."""


class BadArchive(Exception):
    """The archive file is not what was declared (the message says how)."""


# ----------------------------------------------------------------------------------------------------
# What is downloaded, from where, to where
# ----------------------------------------------------------------------------------------------------
def declared_archive(spec, mirror=None):
    """The Archive of a paper set's declaration (an IDSet or OODSet with ``url``, ``archive`` and ``md5``),
    or None: sets torchvision fetches (CIFAR, SVHN) stay with torchvision unless a mirror serves them.
    Its destination is the first component of where the set lies (``dtd`` for Textures' dtd/images/,
    ``cifar-10-batches-py`` for CIFAR-10)."""
    if not (spec.url and spec.archive and spec.md5):
        return None
    is_id = isinstance(spec, D.IDSet)
    layout = spec.layout if is_id else spec.source
    if layout.downloadable and not mirror:
        return None
    where = layout.location(spec, spec.split_names[0]) if is_id else spec.folder
    dest = where.strip("/").split("/")[0]
    return D.Archive(spec.name, spec.archive, dest, url=spec.url, md5=spec.md5)


def kind(archive):
    """"zip", "tar" or "file" (not an archive: put in place as it is), from the file name."""
    name = archive.file.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    return "file"


def stem(archive):
    """The file name without its archive suffix (LSUN.tar.gz -> LSUN)."""
    for suffix in (".zip", *TAR_SUFFIXES):
        if archive.file.lower().endswith(suffix):
            return archive.file[:-len(suffix)]
    return archive.file


def file_path(archive, root):
    """Where the downloaded file lies: ``<root>/<file>`` for an archive, ``<root>/<dest>/<file>`` for a
    file that is not one."""
    return Path(root) / archive.dest / archive.file if kind(archive) == "file" else Path(root) / archive.file


def dest_path(archive, root):
    """What the archive makes under the root: its destination folder (or the file itself)."""
    return file_path(archive, root) if kind(archive) == "file" else Path(root) / archive.dest


def resolve_mirror(flag=None, environ=None):
    """The mirror's base URL (no trailing slash) from ``--mirror`` or, without it, the environment variable
    RECLAG_DATA_MIRROR; None for none. An existing folder is taken as a file:// mirror. Anything else than
    an http(s):// or file:// URL is a UserError."""
    environ = os.environ if environ is None else environ
    value, where = (flag, "--mirror") if flag is not None else (environ.get(MIRROR_ENV), MIRROR_ENV)
    if value is None or (flag is None and not value.strip()):
        return None
    value = value.strip()
    parts = urllib.parse.urlsplit(value)
    if "://" not in value:
        folder = Path(value).expanduser()
        if value and folder.is_dir():
            return folder.resolve().as_uri()
    elif parts.scheme.lower() in ("http", "https") and parts.hostname:
        return value.rstrip("/")
    elif parts.scheme.lower() == "file" and parts.path:
        return value.rstrip("/")
    example = f"{MIRROR_ENV}=" if where == MIRROR_ENV else "--mirror "
    raise UserError(f"{where} {value!r}: give the http://, https:// or file:// URL (or an existing folder) of a "
                    f"mirror serving the archives under their own file names, e.g. {example}http://lab-server/datasets.")


def _direct(url):
    """A Dropbox share link (www.dropbox.com/s/...) serves a preview page unless asked for the file (dl=1)."""
    parts = urllib.parse.urlsplit(url)
    if (parts.hostname or "").endswith("dropbox.com") and "dl=" not in parts.query:
        query = f"{parts.query}&dl=1" if parts.query else "dl=1"
        return urllib.parse.urlunsplit(parts._replace(query=query))
    return url


def source_url(archive, mirror=None):
    """The URL the archive is fetched from: ``<mirror>/<file>``, else its declared URL or Drive link."""
    if mirror:
        return f"{mirror}/{urllib.parse.quote(archive.file)}"
    return _direct(archive.url) if archive.url else archive.source


def _by_hand(archive, root):
    """The end of a failure's line: what to fetch by hand, and where to put it."""
    check = f" (md5 {archive.md5})" if archive.md5 else (f" ({archive.size:,} bytes)" if archive.size else "")
    then = "checks and unpacks it" if kind(archive) != "file" else "checks it"
    return (f"Fetch {archive.file} by hand from {archive.source}{check} and put it at {file_path(archive, root)}; "
            f"verify_data.py --download then {then}.")


# ----------------------------------------------------------------------------------------------------
# The whole job for one archive
# ----------------------------------------------------------------------------------------------------
def install(archive, root, mirror=None, log=print, quiet=True, timeout=TIMEOUT):
    """Fetch ``archive`` (unless its file already lies in the root), check it and unpack it under ``root``.
    The caller has seen that its destination is absent. Raises DownloadFailed (one line); a full disk
    while fetching, DiskFull (a UserError: it would stop every other archive too). ``timeout``: seconds
    without a byte after which a server counts as stalled and its URL is given up."""
    root = Path(root)
    path = file_path(archive, root)
    dest = dest_path(archive, root)
    if kind(archive) != "file" and dest.exists() and not empty_dir(dest):
        raise DownloadFailed(exists_message(archive, root, "is not complete"))
    if path.exists():
        log(f"{archive.file}: checking the copy already at {path} ...")
        try:
            check(archive, path)
        except BadArchive as e:
            raise DownloadFailed(f"{archive.file}: the file already at {path} is {e}. It is left where it is and "
                                 f"nothing was unpacked: delete it or move it aside and run again, or replace "
                                 f"it with a good copy from {archive.source}"
                                 f"{f' (md5 {archive.md5})' if archive.md5 else ''}.") from None
    else:
        part = fetch(archive, root, mirror, log, quiet, timeout)
        try:
            check(archive, part)
        except BadArchive as e:
            aside = _keep_aside(part, path)
            raise DownloadFailed(f"{archive.file}: the download from {source_url(archive, mirror)} is {e}. It is "
                                 f"kept aside as {aside} and nothing was unpacked; run again to fetch it anew. "
                                 f"{_by_hand(archive, root)}") from None
        _publish(part, path, archive)
    if kind(archive) != "file":
        unpack(archive, path, root, log)
    log(f"{archive.file}: {'unpacked into' if kind(archive) != 'file' else 'in place at'} {dest}")


def exists_message(archive, root, why):
    """The line for a destination that is there but not complete (``why``: "is not complete (...)")."""
    dest = dest_path(archive, root)
    return (f"{archive.name}: {dest} already exists and {why}; --download never writes into an existing "
            f"{'folder' if kind(archive) != 'file' else 'file'}: move it aside (mv {shlex.quote(str(dest))} "
            f"{shlex.quote(str(dest) + '.old')}) and run "
            f"again to fetch {archive.file}.")


def empty_dir(path):
    """A folder without any entry (nothing to lose: an unpacked archive may take its place)."""
    try:
        if not path.is_dir() or path.is_symlink():
            return False
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------------
# Fetching
# ----------------------------------------------------------------------------------------------------
def fetch(archive, root, mirror=None, log=print, quiet=True, timeout=TIMEOUT):
    """Download the archive into ``<file>.part`` beside its final place; returns that path once complete.
    When the disk fills up, the partial file is removed (it holds what space is left) and DiskFull raised."""
    path = file_path(archive, root)
    part = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadFailed(f"{archive.file}: cannot create {path.parent} ({e.strerror}).") from None
    url = source_url(archive, mirror)
    existed = part.exists()
    try:
        if not mirror and not archive.url and archive.drive_id:
            _gdown(archive, url, part, root, log, quiet)
        else:
            _http(archive, url, part, root, log, quiet, timeout)
    except DownloadFailed:
        with contextlib.suppress(OSError):
            if not existed and part.stat().st_size == 0:  # the empty file this call made, and nothing came
                part.unlink()
        raise
    except OSError as e:  # from a write, or from the flush or close of the file (its buffered bytes)
        if not is_disk_full(e):
            raise
        with contextlib.suppress(OSError):
            part.unlink()
        raise DiskFull(f"{archive.file}: the disk is full (or a quota or file-size limit was reached) while "
                       f"writing {part}; the partial download was removed. Free some space under {part.parent} "
                       f"and run again.") from None
    return part


def _reason(e, timeout=TIMEOUT):
    """A network error in a few words."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    inner = getattr(e, "reason", None)
    if isinstance(e, urllib.error.URLError) and isinstance(inner, BaseException):
        e = inner
    elif isinstance(e, urllib.error.URLError) and inner:
        return str(inner)
    if isinstance(e, (TimeoutError, socket.timeout)):
        return f"no data for {timeout:g} s"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}" if type(e).__name__ not in text else text


def _gdown(archive, url, part, root, log, quiet):
    try:
        import gdown
    except ImportError:
        raise DownloadFailed(f"{archive.file}: Google Drive files are fetched with gdown, which is not installed "
                             f"(pip install gdown; or pass --mirror). {_by_hand(archive, root)}") from None
    log(f"{archive.file}: fetching {url} through gdown into {part} ...")
    try:
        out = gdown.download(url=url, output=str(part), resume=True, quiet=quiet)
    except Exception as e:  # requests' network errors, gdown's DownloadError / FileURLRetrievalError, OSError
        raise DownloadFailed(f"{archive.file}: could not fetch {url} through gdown ({_gdown_reason(e)}). "
                             f"{_by_hand(archive, root)}") from None
    if not out or not part.is_file():
        raise DownloadFailed(f"{archive.file}: gdown fetched nothing from {url}. {_by_hand(archive, root)}")


def _gdown_reason(e):
    """gdown's and requests' errors in a few words: they nest the cause in a paragraph."""
    text = " ".join(str(e).split())
    name = type(e).__name__
    if name == "FileURLRetrievalError":  # Drive's own page: quota, permissions
        m = re.search(r"Failed to retrieve file url: (.*?)(?: You may still| $)", text + " ")
        return f"Google Drive refused: {(m[1] if m else text)[:300]}"
    cause = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if name == "ProxyError":
        return f"ProxyError: cannot reach the proxy ({cause[-1].strip() if cause else text[:200]})"
    if cause:
        return f"{name}: {cause[-1].strip()}"
    return f"{name}: {text[:300]}"


def _content_range(value):
    """(first byte, total or None) of a Content-Range header, or None when it cannot be read."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value or "")
    return (int(m[1]), None if m[2] == "*" else int(m[2])) if m else None


def _http(archive, url, part, root, log, quiet, timeout=TIMEOUT):
    """urllib, with Range resume of ``part``: a few transfers per run while bytes keep coming; a server
    that sends nothing for ``timeout`` seconds is given up at once (another try would stall as long)."""
    opener = urllib.request.build_opener()  # proxies from the environment, read now
    last, total = None, None
    for attempt in range(ATTEMPTS):
        with open(part, "ab") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise DownloadFailed(f"{archive.file}: another download is writing {part}; let it finish "
                                     f"(or stop it) and run again.") from None
            have = f.seek(0, os.SEEK_END)
            headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
            if have:
                headers["Range"] = f"bytes={have}-"
            if attempt == 0:
                log(f"{archive.file}: fetching {url} into {part}" + (f", resuming after {have:,} bytes" if have else "")
                    + " ...")
            try:
                resp = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
            except urllib.error.HTTPError as e:
                if e.code == 416 and have:  # nothing left to send: complete, or a stale partial file
                    rng = e.headers.get("Content-Range", "")
                    e.close()
                    m = re.fullmatch(r"\s*bytes\s+\*/(\d+)\s*", rng)
                    if m and int(m[1]) == have:
                        return
                    log(f"{archive.file}: the partial file does not fit the server's; starting again")
                    f.truncate(0)
                    continue
                e.close()
                raise DownloadFailed(f"{archive.file}: could not fetch {url} ({_reason(e, timeout)}). "
                                     f"{_by_hand(archive, root)}") from None
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
                raise DownloadFailed(f"{archive.file}: could not fetch {url} ({_reason(e, timeout)}). "
                                     f"{_by_hand(archive, root)}") from None
            with resp:
                status = getattr(resp, "status", None)
                ctype = resp.headers.get("Content-Type", "")
                if ctype.startswith("text/html") and not archive.file.lower().endswith((".html", ".htm")):
                    raise DownloadFailed(f"{archive.file}: {url} sent a web page ({ctype.split(';')[0]}), not the "
                                         f"file (a sign-in, quota or preview page?); nothing was kept. "
                                         f"{_by_hand(archive, root)}")
                total = None
                if have and status == 206:
                    rng = _content_range(resp.headers.get("Content-Range"))
                    if rng is None or rng[0] != have:
                        log(f"{archive.file}: the server answered another byte range; starting again")
                        f.truncate(0)
                        continue
                    total = rng[1]
                else:
                    if have:
                        log(f"{archive.file}: the server ignores byte ranges; fetching the whole file again")
                        f.truncate(0)
                        have = 0
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                start, last, stalled = have, None, False
                try:
                    _copy(resp, f, have, total, archive.file, quiet)
                except (OSError, http.client.HTTPException, ValueError) as e:
                    if is_disk_full(e):
                        raise  # fetch() removes the partial file
                    last, stalled = _reason(e, timeout), isinstance(e, TimeoutError)
                f.flush()
                got = f.tell()
            if stalled:
                kept = (f" after {got:,}{f' of {total:,}' if total else ''} bytes, kept in {part} for the next run "
                        f"of verify_data.py --download to resume") if got else ""
                raise DownloadFailed(f"{archive.file}: {url} sent no data for {timeout:g} s (a stalled server); gave "
                                     f"up on it{kept}. --timeout SECONDS waits longer. {_by_hand(archive, root)}")
            if total is not None and got >= total:
                return
            if total is None and last is None:  # no announced length: the stream's end is the file's end
                return
            if got == start:  # nothing came this time: no use trying again now
                break
    got = part.stat().st_size if part.exists() else 0
    of = f" of {total:,}" if total else ""
    raise DownloadFailed(f"{archive.file}: the transfer from {url} stopped after {got:,}{of} bytes "
                         f"({last or 'the connection closed early'}); the bytes received are kept in {part} and the "
                         f"next run of verify_data.py --download resumes from there.")


def _copy(resp, f, have, total, name, quiet):
    """Write the body of ``resp`` to ``f`` as it comes: ``read1`` hands over what has arrived, so the
    bytes received before a stall are kept (a ``read`` of a whole chunk would drop them with the timeout)."""
    done, shown = have, 0.0
    tty = not quiet and sys.stderr.isatty()
    read = getattr(resp, "read1", resp.read)
    while True:
        block = read(CHUNK)
        if not block:
            break
        f.write(block)
        done += len(block)
        if tty and time.monotonic() - shown > 1:
            shown = time.monotonic()
            of = f" / {total / 2**20:,.0f}" if total else ""
            print(f"\r{name}: {done / 2**20:,.0f}{of} MiB", end="", file=sys.stderr, flush=True)
    if tty:
        print(file=sys.stderr)


def _publish(part, path, archive):
    """Give the checked ``.part`` its final name, atomically, never replacing a file that appeared meanwhile."""
    try:
        os.link(part, path)
    except FileExistsError:
        raise DownloadFailed(f"{archive.file}: {path} appeared while it was being fetched (another run?); "
                             f"the download is left in {part}.") from None
    except OSError:  # a file system without hard links
        if path.exists():
            raise DownloadFailed(f"{archive.file}: {path} appeared while it was being fetched (another run?); "
                                 f"the download is left in {part}.") from None
        os.rename(part, path)
        return
    os.unlink(part)


def _keep_aside(part, path):
    """Rename a bad download ``<file>.corrupt`` (``.corrupt.1``, ... when taken); returns the new path."""
    for i in itertools.count():
        aside = path.with_name(f"{path.name}.corrupt{f'.{i}' if i else ''}")
        try:
            os.link(part, aside)
        except FileExistsError:
            continue
        except OSError:
            if aside.exists():
                continue
            os.rename(part, aside)
            return aside
        os.unlink(part)
        return aside


# ----------------------------------------------------------------------------------------------------
# Checking
# ----------------------------------------------------------------------------------------------------
def check(archive, path):
    """Raise BadArchive unless ``path`` is the declared archive: md5 (else size) when declared, and for a
    zip or tar every member read through (CRCs, the compressed stream's end) with a safe path."""
    size = path.stat().st_size
    if archive.md5:
        got = file_digest(path, "md5")
        if got != archive.md5:
            raise BadArchive(f"corrupt: md5 {got}, expected {archive.md5} ({size:,} bytes)")
    elif archive.size and size != archive.size:
        raise BadArchive(f"incomplete: {size:,} bytes, expected {archive.size:,}")
    if kind(archive) == "zip":
        _check_zip(path, size)
    elif kind(archive) == "tar":
        _check_tar(path, size)


def _check_name(name):
    """Refuse a member path that would land outside the destination."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean) or ".." in clean.split("/"):
        raise BadArchive(f"unsafe to unpack: member {name!r} would land outside the destination")


def _check_link(name, target):
    """A symbolic link must point inside the archive's tree."""
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(name.replace("\\", "/")), target))
    if target.startswith("/") or joined == ".." or joined.startswith("../"):
        raise BadArchive(f"unsafe to unpack: member {name!r} links outside the destination ({target})")


def _junk(name):
    first = name.replace("\\", "/").lstrip("./").split("/")[0]
    return first in JUNK or posixpath.basename(name.rstrip("/")).startswith("._")


def _check_zip(path, size):
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if not infos:
                raise BadArchive("an empty zip archive")
            for info in infos:
                _check_name(info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:  # a symbolic link (stored as its target)
                    _check_link(info.filename, zf.read(info).decode("utf-8", "replace"))
                    continue
                with zf.open(info) as f:
                    while f.read(CHUNK):  # zipfile checks the member's CRC at its end
                        pass
    except BadArchive:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error, lzma.LZMAError,
            NotImplementedError, RuntimeError) as e:
        raise BadArchive(f"a damaged zip archive ({type(e).__name__}: {e}; {size:,} bytes)") from None


def _decompressor(path):
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open
    if magic[:3] == b"BZh":
        return bz2.open
    if magic == b"\xfd7zXZ\x00":
        return lzma.open
    return open


def _check_tar(path, size):
    n = 0
    try:
        with _decompressor(path)(path, "rb") as raw:
            with tarfile.open(fileobj=raw, mode="r|") as tar:
                for member in tar:
                    _check_name(member.name)
                    if member.issym():
                        _check_link(member.name, member.linkname)
                    elif member.islnk():
                        _check_name(member.linkname)
                    elif member.ischr() or member.isblk() or member.isfifo():
                        raise BadArchive(f"unsafe to unpack: member {member.name!r} is a device or pipe")
                    elif member.isfile():
                        data = tar.extractfile(member)
                        while data.read(CHUNK):
                            pass
                    n += 1
            while raw.read(CHUNK):  # to the end of the compressed stream, where its CRC and length are checked
                pass
    except BadArchive:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as e:
        raise BadArchive(f"a damaged tar archive ({type(e).__name__}: {e}; {size:,} bytes)") from None
    if n == 0:
        raise BadArchive("an empty tar archive")


# ----------------------------------------------------------------------------------------------------
# Unpacking
# ----------------------------------------------------------------------------------------------------
def _clean_stale_staging(dest):
    """Remove staging folders of ``dest`` left by killed runs (their pid is gone)."""
    for other in orphans(dest.parent, rf"^\.{re.escape(dest.name)}\.unpack-(\d+)-"):
        shutil.rmtree(other, ignore_errors=True)


def unpack(archive, path, root, log=print):
    """Unpack the checked archive ``path`` into a staging folder beside its destination, then rename it
    there (see the module's docstring for which folder becomes the destination)."""
    dest = dest_path(archive, root)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadFailed(f"{archive.file}: cannot create {dest.parent} ({e.strerror}).") from None
    _clean_stale_staging(dest)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.unpack-{os.getpid()}-"))
    try:
        try:
            if kind(archive) == "zip":
                with zipfile.ZipFile(path) as zf:
                    for info in zf.infolist():
                        if not _junk(info.filename):
                            zf.extract(info, staging)
            else:
                with tarfile.open(path, "r:*") as tar:
                    members = [m for m in tar.getmembers() if not _junk(m.name)]
                    if hasattr(tarfile, "data_filter"):
                        tar.extractall(staging, members=members, filter="data")
                    else:  # an older Python: the members were checked above
                        tar.extractall(staging, members=members)
        except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
            full = is_disk_full(e)
            raise DownloadFailed(f"{archive.file}: unpacking into {dest.parent} failed "
                                 f"({'the disk is full' if full else _reason(e)}); nothing was put at {dest}. "
                                 f"{'Free some space and' if full else 'Fix that and'} run again: the checked "
                                 f"archive {path} is kept and reused.") from None
        entries = list(staging.iterdir())
        source = staging
        if archive.contents:
            source = _content_root(archive, staging, path, dest, log)
        elif archive.flatten and len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink() \
                and entries[0].name in (stem(archive), dest.name):
            source = entries[0]
        if source == staging:
            os.chmod(staging, umask_mode(0o777))  # mkdtemp's folder is private
        try:
            os.rename(source, dest)  # atomic; replaces an empty folder only
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise DownloadFailed(exists_message(archive, root, "was created while this run unpacked it (another run?)")) from None
            raise DownloadFailed(f"{archive.file}: could not move the unpacked files to {dest} ({_reason(e)}).") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _files(top):
    """The files (and links) under ``top`` that an archive put there, as "/"-separated paths relative to
    it, sorted, macOS metadata left out."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel = os.path.relpath(dirpath, top)
        out += [name if rel == "." else f"{rel}/{name}".replace(os.sep, "/") for name in sorted(filenames)]
        out += [f"{rel}/{d}".replace(os.sep, "/").removeprefix("./") for d in dirnames
                if os.path.islink(os.path.join(dirpath, d))]
    return [f for f in out if not _junk(f)]


def _some(paths, n=4):
    """A few of ``paths``, and how many there are in all."""
    more = f", ... ({len(paths):,} in all)" if len(paths) > n else ""
    return ", ".join(paths[:n]) + more


def _content_root(archive, staging, path, dest, log=print):
    """The folder of the unpacked tree ``staging`` that holds every path of ``archive.contents``: the
    archive's top, or a folder any number of levels down (OpenOOD's checkpoint zips wrap their run folder
    in folders of their own). None, or several: DownloadFailed, one line naming what the archive holds.
    Files outside the chosen folder are not put in place (a line says which)."""
    files = _files(staging)
    first = archive.contents[0]
    roots = sorted({f[:-len(first)] for f in files if f == first or f.endswith("/" + first)})
    present = set(files)
    roots = [r for r in roots if all(f"{r}{c}" in present for c in archive.contents)]
    wanted = ", ".join(archive.contents)
    if len(roots) == 1:
        top = roots[0]
        left = [f for f in files if not f.startswith(top)]
        if left:
            log(f"{archive.file}: put {top or 'its top folder'} in place; left out what lies beside it: "
                f"{_some(left)}")
        return staging / top if top else staging
    names = sorted({posixpath.basename(c) for c in archive.contents})
    named = [f for f in files if posixpath.basename(f) in names]
    if roots:
        what = f"several folders hold them: {_some([r.rstrip('/') or '.' for r in roots])}"
    elif named:
        what = f"no folder holds them all; its {' and '.join(names)} files: {_some(named)}"
    else:
        what = f"it holds no {' or '.join(names)} at all; its files: {_some(files) or 'none'}"
    raise DownloadFailed(f"{archive.file}: expected one folder holding {wanted}, but {what}. Nothing was put at "
                         f"{dest}; the archive is kept at {path}: unpack it by hand so that {dest}/{first} and "
                         f"the others exist, or report its layout.")
