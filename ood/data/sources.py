"""The files an image set is read from, and a cheap proxy of their contents (names, sizes, modification
times): what the feature caches key an image set on (ood.cache.features), and what a launched step
records having read (ood.system.inputs), so that its marker is keyed on the same files."""
from pathlib import Path

import torchvision
from torch.utils.data import Subset

from ood.errors import UserError
from ood.system import inputs


def source_files(dataset):
    """The files ``dataset`` reads its images from, or None for a set held in memory."""
    inner = getattr(dataset, "dataset", None)
    if isinstance(dataset, Subset) or (inner is not None and hasattr(dataset, "indices")):
        return source_files(inner)
    if hasattr(dataset, "source_files"):  # a set that lists its own files (ood.data.openood.ImageListDataset)
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
    """Tell the launcher running this step (ood.system.inputs) which image files, and folders, ``dataset`` reads."""
    files = source_files(dataset) if files is None else files
    if files is not None:
        inputs.note(f"the images of image set {set_name}", files, root=source_root(dataset))


def source_digest(dataset, set_name):
    """Names, sizes and modification times of the files behind ``dataset``, hashed: replacing images
    by others (even as many, under the same names) changes it. An empty file is an error, found here
    before any extraction starts. A launcher's step that lists them records them too (ood.system.inputs):
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
