"""Files: atomic writes with the umask's mode, stale temporaries cleaned, a lock for one writer at a
time, early checks that an output location is writable, file hashes and safe file names.

``__all__`` lists the helpers a plug-in or a new data-set layout may use; ``umask_mode`` and ``orphans``
serve the downloader."""
import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path


from ood.errors import UserError

__all__ = ["atomic_path", "write_text", "save_torch", "load_torch", "locked", "check_writable_dir",
           "check_writable_file", "file_digest", "sha256_file", "safe_name", "DiskFull", "is_disk_full"]


def safe_name(name):
    """A name usable as one file or folder name (tv:resnet50 -> tv_resnet50, a/b -> a_b)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))


class DiskFull(UserError):
    """The disk filled up while writing: a UserError (one line, exit status 2), told apart so that a
    caller writing several files as a unit (ood.reporting.commit) can name what was not written."""


_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no space, over quota, over the file-size limit


def is_disk_full(error):
    """Whether ``error`` says the disk is full (or a quota or the file-size limit was reached)."""
    return isinstance(error, OSError) and error.errno in _FULL


def _disk_full(path):
    free = ""
    with contextlib.suppress(OSError):
        free = f"; {shutil.disk_usage(Path(path).parent).free / 2**20:.0f} MiB free there"
    return DiskFull(f"the disk is full (or a quota or file-size limit was reached{free}): could not write {path}. "
                    f"Free some space and run again (finished steps are kept).")


def umask_mode(base=0o666):
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphans(folder, pattern):
    """The entries of ``folder`` whose names match ``pattern`` (a regex whose first group is a process id)
    and whose process is gone: what writers killed midway left behind (never this process's own)."""
    pattern = re.compile(pattern)
    with contextlib.suppress(OSError):
        for other in list(Path(folder).iterdir()):
            m = pattern.match(other.name)
            if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
                yield other


def _clean_stale_temporaries(path):
    """Remove temporaries of ``path`` left by writers that were killed (their pid is gone)."""
    for other in orphans(path.parent, rf"^\.{re.escape(path.name)}\.(\d+)\.[^.]+\.tmp$"):
        with contextlib.suppress(OSError):
            other.unlink()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success give it the umask's mode and rename it to
    ``path``, on error delete it. An interrupted run never leaves a half-written file behind, and the
    temporaries of a killed run are removed by the next write of the same file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"cannot write {path}: {path.parent} is not a directory.") from None
    _clean_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    except OSError as e:  # a folder made read-only after the early checks (check_writable_dir)
        if e.errno in _FULL:
            raise _disk_full(path) from None
        if e.errno in _UNWRITABLE:
            raise UserError(f"cannot write {path}: {path.parent} is not writable ({e.strerror}).") from None
        raise
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in _FULL:
            raise _disk_full(path) from None
        if isinstance(e, OSError) and e.errno in _UNWRITABLE:
            raise UserError(f"cannot write {path} ({e.strerror}).") from None
        raise


# how torch.save reports a write cut short (a full disk, a quota or a file-size limit): a RuntimeError
# instead of the OSError underneath, worded by the layer that failed (its zip writer, or the C++ stream)
_TORCH_WRITE_FAILED = ("unexpected pos", "write failed", "iostream error")


def save_torch(obj, path):
    """``torch.save`` through ``atomic_path`` (the temporary file is removed, an earlier file kept). A
    write cut short (``_TORCH_WRITE_FAILED``) becomes the same one-line error as any other full disk."""
    try:
        with atomic_path(path) as tmp:
            import torch  # here, so that importing this module (e.g. in a launcher's job) stays cheap
            torch.save(obj, tmp)
    except RuntimeError as e:
        if any(words in str(e) for words in _TORCH_WRITE_FAILED):
            raise _disk_full(path) from None
        raise


def write_text(text, path):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def load_torch(path, mmap=False):
    """A torch file saved by this project, or None when it is missing, unreadable or not a dict
    (a cache of another version or kind: the caller recomputes it)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        import torch
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception:
        return None
    return obj if isinstance(obj, dict) else None


@contextlib.contextmanager
def locked(folder):
    """Hold an exclusive lock on ``folder`` (its .lock file) while the block runs: concurrent runs that
    write into the same folder take turns instead of mixing their outputs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_writable_dir(path, flag):
    """Fail early (before any long work) when ``path`` cannot become a writable folder: it, or the
    nearest part of it that exists, is a file or is not writable. Creates nothing."""
    path = Path(path)
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        what = "is" if existing == path else f"lies under {existing}, which is"
        raise UserError(f"{flag} {path} {what} a file, not a folder; choose another location.")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot write into {existing} ({e.strerror}); choose a writable "
                        f"location.") from None


def check_writable_file(path, flag):
    """Fail early when ``path`` cannot be written as a file (it is a folder, or its folder is not writable)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; give a file path.")
    check_writable_dir(path.parent, f"{flag} {path}: its folder")


def sha256_file(path):
    return file_digest(path, "sha256")


def file_digest(path, algorithm="sha256", chunk=1 << 22):
    """Hex digest of a file's contents, read in blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
