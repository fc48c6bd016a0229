"""What cached files are keyed on: fingerprints (plain dicts stored in each cache file and compared for
equality), content digests of tensors, and cheap proxies of the images an image set is read from
(file names, sizes and modification times)."""
import hashlib
import json
from pathlib import Path

import torch
import torchvision
from torch.utils.data import Subset

from . import inputs
from .errors import UserError

CACHE_VERSION = 2


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


# ----------------------------------------------------------------------------------------------------
# The images an image set is read from
# ----------------------------------------------------------------------------------------------------
def source_files(dataset):
    """The files ``dataset`` reads its images from, or None for a set held in memory."""
    inner = getattr(dataset, "dataset", None)
    if isinstance(dataset, Subset) or (inner is not None and hasattr(dataset, "indices")):
        return source_files(inner)
    if hasattr(dataset, "source_files"):  # a set that lists its own files (ood.openood.ImageListDataset)
        return dataset.source_files()
    if isinstance(dataset, torchvision.datasets.DatasetFolder):
        return [p for p, _ in dataset.samples]
    if isinstance(dataset, torchvision.datasets.CIFAR10):  # CIFAR-100 too
        folder = Path(dataset.root) / dataset.base_folder
        names = [n for n, _ in (dataset.train_list if dataset.train else dataset.test_list)]
        return [str(folder / n) for n in names + [dataset.meta["filename"]]]
    if isinstance(dataset, torchvision.datasets.SVHN):
        return [str(Path(dataset.root) / dataset.filename)]
    if isinstance(dataset, torchvision.datasets.MNIST):  # Fashion-MNIST too
        prefix = "train" if dataset.train else "t10k"
        return [str(Path(dataset.raw_folder) / f"{prefix}-{kind}-idx{n}-ubyte")
                for kind, n in (("images", 3), ("labels", 1))]
    return None


def source_root(dataset):
    """The top folder of an ImageFolder tree behind ``dataset`` (new class folders appear there), else None."""
    inner = getattr(dataset, "dataset", None)
    if isinstance(dataset, Subset) or (inner is not None and hasattr(dataset, "indices")):
        return source_root(inner)
    return dataset.root if isinstance(dataset, torchvision.datasets.DatasetFolder) else None


def note_source(dataset, set_name, files=None):
    """Tell the launcher running this step (ood.inputs) which image files, and folders, ``dataset`` reads."""
    files = source_files(dataset) if files is None else files
    if files is not None:
        inputs.note(f"the images of image set {set_name}", files, root=source_root(dataset))


def source_digest(dataset, set_name):
    """Names, sizes and modification times of the files behind ``dataset``, hashed: replacing images
    by others (even as many, under the same names) changes it. An empty file is an error, found here
    before any extraction starts. A launcher's step that lists them records them too (ood.inputs):
    its marker is then keyed on them as this cache is."""
    files = source_files(dataset)
    if files is None:
        return {"files": 0}
    try:
        hexdigest, total, empty = inputs.stat_digest(files)
    except OSError as e:
        raise UserError(f"image set {set_name}: cannot read {e.filename} ({e.strerror}).") from None
    if empty:
        more = f" (and {len(empty) - 1} more empty files)" if len(empty) > 1 else ""
        raise UserError(f"image set {set_name}: {empty[0]} is an empty file{more}. Remove or replace it.")
    note_source(dataset, set_name, files)
    return {"files": len(files), "bytes": total, "digest": hexdigest}
