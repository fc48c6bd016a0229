"""Data sets and transforms: the in-distribution (ID) sets, the OOD sets, and their transforms.

Everything loads through torchvision's own classes (CIFAR10/100, SVHN, FashionMNIST, ImageFolder) from
one data root, ``--dataset_path``, laid out as in the reference code (docs/method.md, "Data"):

    <root>/cifar-10-batches-py/  <root>/cifar-100-python/   torchvision's CIFAR folders
    <root>/FashionMNIST/raw/                                torchvision's Fashion-MNIST folder
    <root>/imagenet/train/  <root>/imagenet/val/            ImageNet-1k as ImageFolder trees
    <root>/SVHN/test_32x32.mat                              torchvision's SVHN, test split
    <root>/LSUN_C/ LSUN_resize/ iSUN/ Places/ dtd/images/ Imagenet_resize/ SUN/ iNaturalist/

A missing or empty set stops with a message naming the folder it expected, where to download the data
and the archive's md5 sum.
"""
import contextlib
import dataclasses
import gzip
import hashlib
import os
import re
import shutil
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import Subset
from torchvision import transforms as T

from .errors import UserError
from .io import atomic_path, safe_name

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------------------------------
# Out-of-distribution sets
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OODSet:
    """One OOD set. ``build(root, transform)`` returns a torch Dataset; the rest feeds error messages
    and the data verifier."""
    name: str                      # canonical name, used in tables and file names
    folder: str                    # where it lives under the data root
    expected: int                  # number of images in the reference protocol
    url: str = ""                  # where to download it
    archive: str = ""              # archive file name
    md5: str = ""                  # the archive's md5 sum
    note: str = ""                 # how to lay the archive out
    aliases: tuple = ()
    builder: object = None         # callable(path, transform, spec, download) -> Dataset; default: ImageFolder
    custom: bool = False           # a user's NAME=PATH folder

    def build(self, root, transform, download=False):
        return (self.builder or _image_folder)(Path(root) / self.folder, transform, self, download)

    @property
    def key(self):
        """The set's cache file stem. A user's name may hold any characters, so its stem carries a digest
        of the exact name: "x y" and "x_y" (or two names in another script) never share a cache file."""
        if not self.custom:
            return safe_name(self.name)
        return f"custom-{safe_name(self.name)[:40]}-{hashlib.sha256(self.name.encode()).hexdigest()[:12]}"

    def names(self):
        """Every name that selects this set: its name, aliases and folder, in lower case."""
        return {self.name.lower(), *self.aliases, self.folder.lower()}

    def missing_message(self, path, detail=""):
        msg = f"OOD set {self.name} was not found: expected {'the file' if self.name == 'SVHN' else 'an ImageFolder tree (images in one or more sub-folders)'} at {path}"
        msg += f" ({detail})." if detail else "."
        if self.url:
            msg += f" Download {self.archive or self.url} from {self.url}"
            msg += f" (md5 {self.md5})" if self.md5 else ""
            msg += f" and {self.note}" if self.note else f" into {path}"
            msg += "."
        msg += " Pass --dataset_path for another data root, or --ood to choose other sets."
        return msg


class BadImage(Exception):
    """An image file that cannot be decoded. Raised inside DataLoader workers, which re-raise it in the
    main process with the worker's traceback around the message; ``bad_image_message`` recovers the line
    that names the file."""


_BAD_IMAGE = "unreadable image"


def bad_image_message(error):
    m = re.search(rf"{_BAD_IMAGE}: [^\n]*", str(error))
    return m.group(0) if m else str(error).splitlines()[-1]


def load_image(path):
    """An image file as an RGB PIL image, as torchvision's ImageFolder loader does, except that 16-bit
    images are scaled to 8 bits (PIL's plain conversion clips them, which turns them almost white) and
    that a truncated or corrupt file raises ``BadImage`` naming it."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            img.load()
    except Exception as e:  # OSError (truncated), PIL.UnidentifiedImageError, SyntaxError, ...
        raise BadImage(f"{_BAD_IMAGE}: {path} ({type(e).__name__}: {e}). Remove or replace the file.") from None
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.int64)
        if img.mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr // 257  # 0..65535 -> 0..255
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    return img.convert("RGB")


def image_folder(path, transform):
    """A torchvision ImageFolder read with ``load_image``."""
    return torchvision.datasets.ImageFolder(str(path), transform=transform, loader=load_image)


def _image_folder(path, transform, spec, download=False):
    """An ImageFolder tree (none of these sets is downloadable: ``download`` is ignored)."""
    if not path.is_dir():
        raise UserError(spec.missing_message(path))
    try:
        return image_folder(path, transform)
    except (FileNotFoundError, RuntimeError) as e:
        raise UserError(spec.missing_message(path, str(e).rstrip("."))) from None


@contextlib.contextmanager
def download_errors(what, url, folder):
    """Turn a failed torchvision download (no network, proxy, checksum) into one clear line."""
    try:
        yield
    except (urllib.error.URLError, OSError, RuntimeError) as e:  # torchvision's MNIST wraps it in RuntimeError
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e).strip().splitlines()[-1]
        raise UserError(f"--download could not fetch {what} from {url} ({reason}). On a machine without "
                        f"internet, download it elsewhere and put it in {folder}.") from None


def _svhn(path, transform, spec, download=False):
    if download and not (path / "test_32x32.mat").exists():
        with download_errors("SVHN", spec.url, path):
            torchvision.datasets.SVHN(str(path), split="test", download=True)
    try:
        return torchvision.datasets.SVHN(str(path), split="test", transform=transform)
    except RuntimeError:
        raise UserError(spec.missing_message(path / "test_32x32.mat", "missing or corrupted")) from None


_MOS = "http://pages.cs.wisc.edu/~huangrui/imagenet_ood_dataset/"
OOD_SETS = {s.name.lower(): s for s in [
    OODSet("SVHN", "SVHN", 26032, torchvision.datasets.SVHN.split_list["test"][0], "test_32x32.mat",
           torchvision.datasets.SVHN.split_list["test"][2], "put it in <root>/SVHN/", ("svhn",), _svhn),
    OODSet("LSUN_C", "LSUN_C", 10000, "https://www.dropbox.com/s/fhtsw1m3qxlwj6h/LSUN.tar.gz",
           "LSUN.tar.gz", "458a0a0ab8e5f1cb4516d7400568e460",
           "extract it and rename the folder LSUN/ to <root>/LSUN_C/", ("lsun-c", "lsunc", "lsun")),
    OODSet("LSUN_R", "LSUN_resize", 10000, "https://www.dropbox.com/s/moqh2wh8696c3yl/LSUN_resize.tar.gz",
           "LSUN_resize.tar.gz", "278b7b31c8cb7e804a1465a8ce03a2dc", "extract it into <root>/",
           ("lsun-r", "lsunr", "lsun_resize")),
    OODSet("iSUN", "iSUN", 8925, "https://www.dropbox.com/s/ssz7qxfqae0cca5/iSUN.tar.gz", "iSUN.tar.gz",
           "be77b0f2c26fda898afac5f99645ee70", "extract it into <root>/"),
    OODSet("Places", "Places", 10000, _MOS + "Places.tar.gz", "Places.tar.gz",
           "b5cb5eba2754ae2a28beea8718db699a", "extract it into <root>/", ("places365",)),
    OODSet("Textures", "dtd/images", 5640, "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
           "dtd-r1.0.1.tar.gz", "fff73e5086ae6bdbea199a49dfb8a4c1",
           "extract it into <root>/ (it creates dtd/images/)", ("dtd",)),
    OODSet("TinyImageNet", "Imagenet_resize", 10000,
           "https://www.dropbox.com/s/kp3my3412u5k9rl/Imagenet_resize.tar.gz", "Imagenet_resize.tar.gz",
           "0f9ff11d45babf2eff5fe12281d1ac31", "extract it into <root>/",
           ("tiny-imagenet", "tinyimagenet_r", "imagenet_resize", "tim")),
    OODSet("SUN", "SUN", 10000, _MOS + "SUN.tar.gz", "SUN.tar.gz", "8469c3ada62211477954ec1be53b12d0",
           "extract it into <root>/"),
    OODSet("iNaturalist", "iNaturalist", 10000, _MOS + "iNaturalist.tar.gz", "iNaturalist.tar.gz",
           "5be6ea8aa027d7b631916427b32cb335", "extract it into <root>/", ("inat",)),
]}
# The near-OOD set of an --id_classes split; built from the ID set by held_out() (see ood/features.py).
OOD_SETS["heldout"] = OODSet("HeldOut", "id-test:classes-not-in-id_classes", 0, aliases=("held-out", "near-ood"))
CIFAR_OOD = ("SVHN", "LSUN_C", "LSUN_R", "iSUN", "Places", "Textures", "TinyImageNet", "SUN", "iNaturalist")
IMAGENET_OOD = ("iNaturalist", "SUN", "Places", "Textures")


def register_ood(spec):
    """Register an extra OOD set (an :class:`OODSet`), usable by name like the built-in ones. A name,
    alias or folder that already selects another set is refused: a name selects one set."""
    taken = spec.names() & {n for other in OOD_SETS.values() if other.name != spec.name for n in other.names()}
    if taken:
        raise ValueError(f"OOD set {spec.name}: {', '.join(sorted(taken))} already selects another set.")
    OOD_SETS[spec.name.lower()] = spec


def builtin_ood(name):
    """The registered OOD set that ``name`` selects (case-insensitive; aliases and folders too), or None."""
    key = name.lower()
    return next((spec for spec in OOD_SETS.values() if key in spec.names()), None)


def resolve_ood(name):
    """Map a user-given OOD name (case-insensitive, aliases allowed) or ``NAME=PATH`` to an OODSet. A
    custom NAME that is also a registered set's name or alias is refused: otherwise ``--ood SVHN=PATH``
    would be reported as SVHN, and ``--select_on lsunc`` could pick the built-in set instead of the folder."""
    if "=" in name:
        label, path = name.split("=", 1)
        if not label.strip() or not path:
            raise UserError(f"custom OOD set {name!r}: write it as NAME=PATH (an ImageFolder tree).")
        same = builtin_ood(label)
        if same is not None:
            raise UserError(f"--ood {name}: {label!r} already names the OOD set {same.name}; give your folder "
                            f"another name (e.g. my_{safe_name(label)}={path}).")
        return OODSet(label, str(Path(path).expanduser().resolve()), 0, custom=True)
    spec = builtin_ood(name)
    if spec is not None:
        return spec
    raise UserError(f"unknown OOD set {name!r}. Known: {', '.join(s.name for s in OOD_SETS.values())}; "
                    f"or give a folder of your own as NAME=PATH.")


# ----------------------------------------------------------------------------------------------------
# In-distribution sets
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IDSet:
    name: str
    num_classes: int
    mean: tuple
    std: tuple
    protocol: str                  # "cifar": Resize((s, s)); "imagenet": Resize + CenterCrop
    default_ood: tuple = CIFAR_OOD
    channels: int = field(default=3)
    classes: tuple = ()            # with --id_classes: the original labels kept as ID, in order
    base: str = ""                 # with --id_classes: the data set they come from


ID_SETS = {
    "cifar10": IDSet("cifar10", 10, CIFAR_MEAN, CIFAR_STD, "cifar"),
    # The reference code normalises CIFAR-100 and all OOD sets with the CIFAR-10 statistics.
    "cifar100": IDSet("cifar100", 100, CIFAR_MEAN, CIFAR_STD, "cifar"),
    "imagenet": IDSet("imagenet", 1000, IMAGENET_MEAN, IMAGENET_STD, "imagenet", IMAGENET_OOD),
    "fashionmnist": IDSet("fashionmnist", 10, FASHION_MNIST_MEAN, FASHION_MNIST_STD, "cifar", channels=1),
}


def get_id_set(name, id_classes=None):
    """The ID set ``name``; with ``id_classes`` (a near-OOD split) only those classes, relabelled
    0..k-1 in the order given, under the name ``<name>_classes<c1>-<c2>-...`` (which also names the
    checkpoint, cache and results folders). The other classes form the OOD set ``HeldOut``."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in ID_SETS:
        raise UserError(f"unknown data set {name!r}. Choose one of: {', '.join(ID_SETS)}.")
    base = ID_SETS[key]
    if not id_classes:
        return base
    classes = tuple(int(c) for c in id_classes)
    if len(set(classes)) != len(classes) or not all(0 <= c < base.num_classes for c in classes) \
            or not 1 < len(classes) < base.num_classes:
        raise UserError(f"--id_classes must name at least two and fewer than all of the {base.num_classes} "
                        f"classes of {base.name} (0..{base.num_classes - 1}), each once; got {list(classes)}.")
    return dataclasses.replace(base, name=f"{base.name}_classes{'-'.join(map(str, classes))}",
                               num_classes=len(classes), classes=classes, base=base.name)


def test_transform(id_set, size):
    """The evaluation transform (docs/method.md, "Backbones"), shared by ID train/test features and OOD sets.
    Grayscale ID sets (in_channels 1) see every image in grayscale."""
    if id_set.protocol == "imagenet":
        resize = [T.Resize(round(size * 256 / 224)), T.CenterCrop(size)]
    else:
        resize = [T.Resize((size, size))]
    gray = [T.Grayscale(1)] if id_set.channels == 1 else []
    return T.Compose(resize + gray + [T.ToTensor(), T.Normalize(id_set.mean, id_set.std)])


def train_transform(id_set, size, augment="autoaugment"):
    """Training transform of the fixed recipe: Resize -> AutoAugment (CIFAR-10 policy) ->
    RandomHorizontalFlip -> ToTensor -> Normalize, as the authors describe it, at the input size actually
    used for testing (``--recipe reference`` builds its own, ood/recipes.py)."""
    if id_set.protocol == "imagenet":
        steps = [T.RandomResizedCrop(size)]
    else:
        steps = [T.Resize((size, size))]
    if id_set.channels == 1:
        steps.append(T.Grayscale(1))
    if augment == "autoaugment":
        steps.append(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10))
    if augment in ("autoaugment", "flip"):
        steps.append(T.RandomHorizontalFlip())
    return T.Compose(steps + [T.ToTensor(), T.Normalize(id_set.mean, id_set.std)])


def _prepare_fashion_mnist(root):
    """torchvision reads Fashion-MNIST from <root>/FashionMNIST/raw/ (uncompressed idx files). If it is
    not there but the gzipped files are (Debian's package dataset-fashion-mnist, or the folder named by
    the environment variable FASHION_MNIST_GZ), unpack that copy there."""
    raw = Path(root) / "FashionMNIST" / "raw"
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]
    source = Path(os.environ.get("FASHION_MNIST_GZ", DEBIAN_FASHION_MNIST))
    if all((raw / n).exists() for n in names) or not source.is_dir():
        return
    raw.mkdir(parents=True, exist_ok=True)
    for n in names:
        src = source / (n + ".gz")
        if (raw / n).exists() or not src.exists():
            continue
        with atomic_path(raw / n) as tmp, gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)


class ClassSubset(torch.utils.data.Dataset):
    """The images of ``dataset`` whose label is in ``classes``; labels mapped through ``relabel``
    (a dict) when given, kept otherwise."""

    def __init__(self, dataset, classes, relabel=None):
        labels = dataset_labels(dataset).tolist()
        keep = set(classes)
        self.dataset, self.relabel = dataset, relabel
        self.indices = [i for i, y in enumerate(labels) if y in keep]
        self.targets = [relabel[labels[i]] if relabel else labels[i] for i in self.indices]

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        x, _ = self.dataset[self.indices[i]]
        return x, self.targets[i]


def build_id_dataset(id_set, root, train, transform, download=False):
    """ID train or test split through torchvision's class for the set (only the --id_classes classes,
    relabelled, for a near-OOD split)."""
    if id_set.classes:
        full = build_id_dataset(ID_SETS[id_set.base], root, train, transform, download)
        return ClassSubset(full, id_set.classes, {c: k for k, c in enumerate(id_set.classes)})
    split = "train" if train else "test"
    tv = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100,
          "fashionmnist": torchvision.datasets.FashionMNIST}
    if id_set.name in tv:
        cls = tv[id_set.name]
        if id_set.name == "fashionmnist":
            _prepare_fashion_mnist(root)
        try:
            if download:  # one instance: torchvision checks the files once
                url = getattr(cls, "url", None) or (cls.mirrors[0] if getattr(cls, "mirrors", None) else "")
                with download_errors(id_set.name, url, Path(root)):
                    return cls(root, train=train, transform=transform, download=True)
            return cls(root, train=train, transform=transform)
        except RuntimeError:
            where = {"cifar10": "cifar-10-batches-py/", "cifar100": "cifar-100-python/",
                     "fashionmnist": "FashionMNIST/raw/ (uncompressed idx files)"}[id_set.name]
            hint = {"cifar10": "torchvision downloads it with --download (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, md5 c58f30108f718f92721af3b95e74349a)",
                    "cifar100": "torchvision downloads it with --download (https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz, md5 eb9058c3a382ffc7106e4002c42a8d85)",
                    "fashionmnist": "install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist), or let torchvision download it with --download"}[id_set.name]
            raise UserError(f"the {split} split of {id_set.name} was not found or is corrupted under "
                            f"{Path(root) / where}; {hint}. Pass --dataset_path to use another data root.") from None
    # ImageNet-1k: ImageFolder trees <root>/imagenet/train and <root>/imagenet/val
    path = Path(root) / "imagenet" / ("train" if train else "val")
    try:
        return image_folder(path, transform)
    except (FileNotFoundError, RuntimeError) as e:
        raise UserError(f"ImageNet-1k {split} split not found at {path} ({e}). Lay it out as an ImageFolder "
                        f"tree (one sub-folder per class, as extracted by torchvision's ImageNet helpers) "
                        f"from https://image-net.org/download.php.") from None


def held_out(id_set, root, transform, download=False):
    """The OOD set ``HeldOut`` of a near-OOD split: the ID test images of the classes not in --id_classes."""
    if not id_set.classes:
        raise UserError(f"the OOD set HeldOut is the test images of the classes a near-OOD split leaves out, "
                        f"and this run uses all classes of {id_set.name}: train a backbone on some classes "
                        f"(train_model.py --dataset {id_set.name} --id_classes 0 1 2 3 4 ...) and score it with "
                        f"the same --id_classes, or leave HeldOut out of --ood.")
    base = ID_SETS[id_set.base]
    full = build_id_dataset(base, root, False, transform, download)
    return ClassSubset(full, [c for c in range(base.num_classes) if c not in id_set.classes])


def subset(dataset, n):
    """At most ``n`` images of ``dataset``, at evenly spaced indices (deterministic; for quick trials)."""
    if not n or n >= len(dataset):
        return dataset
    return Subset(dataset, np.linspace(0, len(dataset) - 1, n).round().astype(int).tolist())


def dataset_labels(dataset):
    """Integer labels of a dataset without decoding its images."""
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[torch.as_tensor(dataset.indices)]
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return torch.as_tensor(np.asarray(getattr(dataset, attr)), dtype=torch.long)
    return torch.full((len(dataset),), -1, dtype=torch.long)


from . import package_sets  # noqa: E402,F401  (registers the OOD sets shipped inside packages)
