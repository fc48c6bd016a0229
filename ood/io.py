"""Atomic writes and file hashes."""
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import torch


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success rename it to ``path``, on error delete it.
    An interrupted run therefore never leaves a half-written file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_torch(obj, path):
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_text(text, path):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def sha256_file(path):
    return file_digest(path, "sha256")


def file_digest(path, algorithm="sha256", chunk=1 << 22):
    """Hex digest of a file's contents, read in blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
