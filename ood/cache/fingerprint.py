"""What cached files are keyed on: fingerprints (plain dicts stored in each cache file and compared for
equality) and content digests of tensors. The images an image set is read from are keyed by
ood.data.sources (file names, sizes and modification times)."""
import hashlib
import json

import torch

from ood._moved import forward

CACHE_VERSION = 2
__getattr__ = forward("ood.cache.fingerprint")  # the image-set sources, now in ood.data.sources


def _plain(obj):
    """``obj`` with tuples as lists, paths and other objects as strings: what a fingerprint stores, and
    what it is after a save and load."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def fingerprint(kind, **parts):
    """A fingerprint: the kind of artefact, the cache format version and what it was computed from."""
    return {"kind": kind, "version": CACHE_VERSION, **_plain(parts)}


def digest(obj, length=16):
    """A short stable hash of a fingerprint-like object (for file names and compact keys)."""
    text = json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def tensor_digest(tensors):
    """sha256 of the contents of a dict of tensors (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.view(torch.uint8).numpy())  # the buffer itself: no copy of a memory-mapped file
    return h.hexdigest()
