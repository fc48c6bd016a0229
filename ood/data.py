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

Each set is declared once, as one ``register_id(IDSet(...))`` or ``register_ood(OODSet(...))``: its
layout (``Layout``: how to load, count and fetch it), folder, image counts, archive, URL, md5, hint,
preprocessing family, channels, statistics, classes and default OOD sets. The loaders, ``--dataset`` and
``--ood`` help and defaults, the error messages and ``verify_data.py``'s rows and targets derive from the
declarations; a module of one's own that registers sets before a script builds its parser adds sets
without editing this repository (tests/extra_sets.py does that).
"""
import contextlib
import dataclasses
import gzip
import hashlib
import os
import pickle
import re
import shutil
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import Subset
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS

from .errors import UserError
from .io import atomic_path, file_digest, safe_name

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------------------------------
# Out-of-distribution sets
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OODSet:
    """The declaration of one OOD set: everything the code knows about it. ``build(root, transform)``
    returns a torch Dataset (through its ``layout``); ``--help``, the error messages and the data verifier's
    row derive from the rest. A new set is one ``register_ood(OODSet(...))``."""
    name: str                      # canonical name, used in tables and file names
    folder: str                    # where it lives under the data root (it also keys the feature caches)
    expected: int                  # number of images in the reference protocol
    url: str = ""                  # where to download it
    archive: str = ""              # archive file name
    md5: str = ""                  # the archive's md5 sum
    note: str = ""                 # how to lay the archive out
    aliases: tuple = ()
    layout: object = None          # a Layout: how to load, count and fetch it; default: an ImageFolder tree
    custom: bool = False           # a user's NAME=PATH folder
    group: str = ""                # a benchmark's group of it: "near", "far" or "val" (OpenOOD); "" otherwise

    @property
    def source(self):
        return self.layout or IMAGE_FOLDER

    def build(self, root, transform, download=False):
        return self.source.load(self, root, None, transform, download)

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
        msg = f"OOD set {self.name} was not found: expected {self.source.what} at {path}"
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


@contextlib.contextmanager
def download_errors(what, url, folder):
    """Turn a failed torchvision download (no network, proxy, checksum) into one clear line."""
    try:
        yield
    except (urllib.error.URLError, OSError, RuntimeError) as e:  # torchvision's MNIST wraps it in RuntimeError
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e).strip().splitlines()[-1]
        raise UserError(f"--download could not fetch {what} from {url} ({reason}). On a machine without "
                        f"internet, download it elsewhere and put it in {folder}.") from None


# ----------------------------------------------------------------------------------------------------
# Layouts: how a declared set lies under the data root
# ----------------------------------------------------------------------------------------------------
class Layout:
    """How a declared set's files lie under the data root, and so how to load them, count their images
    without decoding them (``verify_data.py``), which files torchvision verifies and whether torchvision
    can fetch them. A declaration (``IDSet``, ``OODSet``) names its layout and gives the facts (folder,
    URL, md5, hint); the loaders, the verifier's rows and the missing-set messages ask the layout, so a
    new set in a known layout is one declaration, and a new layout is one subclass.

    ``split`` is a split's name ("train", "test", "val") for an ID set and None for an OOD set."""
    what = "an ImageFolder tree (images in one or more sub-folders)"  # what a missing-set message expects
    under_root = True      # lies under --dataset_path: the verifier lists it (False: made from elsewhere)
    downloadable = False   # torchvision fetches it with --download

    def location(self, spec, split=None):
        """Where it lies, relative to the data root (as the verifier's table shows it)."""
        return f"{spec.folder}/{split + '/' if split else ''}"

    def label(self, spec, split=None):
        """How the verifier's table names it."""
        return f"{spec.label} {split}" if split else spec.name

    def load(self, spec, root, split, transform, download=False):
        raise NotImplementedError

    def count(self, spec, root, split=None):
        """(images, or None when absent; info; problem), from headers or file listings."""
        raise NotImplementedError

    def files(self, spec, root, split=None):
        """(path, md5) of the files torchvision verifies whenever it loads them."""
        return []

    def archives(self, spec, split=None):
        """(file name in the root, md5) of the downloadable archives: checked when they lie there."""
        return ((spec.archive, spec.md5),) if spec.archive and spec.md5 else ()

    def fetch(self, spec, root):
        """Download through torchvision (``downloadable`` layouts only)."""
        raise NotImplementedError

    def howto(self, spec, split=None):
        """Where to get it, in one sentence (the verifier's summary)."""
        if spec.url:
            return f"Download {spec.archive or spec.url} from {spec.url}{f' (md5 {spec.md5})' if spec.md5 else ''} " \
                   f"and {spec.note or 'extract it into <root>/'}."
        return f"An ImageFolder tree of your own at {spec.folder}."


def _is_image(name):
    return name.lower().endswith(IMG_EXTENSIONS)


def count_image_folder(path):
    """(images, info, problem) of an ImageFolder tree as torchvision's ImageFolder would load it: files with an
    image extension anywhere below the class sub-folders (symlinks followed). None when absent."""
    path = Path(path)
    if not path.is_dir():
        return None, "", ""
    classes = sorted((e for e in os.scandir(path) if e.is_dir()), key=lambda e: e.name)
    total, empty = 0, []
    for c in classes:
        n = sum(1 for _, _, files in os.walk(c.path, followlinks=True) for f in files if _is_image(f))
        total += n
        if n == 0:
            empty.append(c.name)
    top = sum(1 for e in os.scandir(path) if e.is_file() and _is_image(e.name))
    info = f"{len(classes)} class folder{'s' if len(classes) != 1 else ''}"
    if top:
        info += f"; {top} images directly in the folder, ignored (ImageFolder reads sub-folders only)"
    problem = ""
    if empty:
        problem = (f"{len(empty)} class folder{'s' if len(empty) != 1 else ''} without images "
                   f"({', '.join(empty[:3])}{', ...' if len(empty) > 3 else ''}): ImageFolder refuses that")
    return total, info, problem


class ImageFolderTree(Layout):
    """An ImageFolder tree at <root>/<folder>/ (an OOD set), or one per split at <root>/<folder>/<split>/
    (an ID set such as ImageNet-1k). Not downloadable: messages name the archive, its URL and md5."""

    def path(self, spec, root, split=None):
        return Path(root) / spec.folder / (split or "")

    def load(self, spec, root, split, transform, download=False):
        path = self.path(spec, root, split)
        if split is None and not path.is_dir():
            raise UserError(spec.missing_message(path))
        try:
            return image_folder(path, transform)
        except (FileNotFoundError, RuntimeError) as e:
            if split is None:
                raise UserError(spec.missing_message(path, str(e).rstrip("."))) from None
            raise UserError(f"{spec.label} {split} split not found at {path} ({e}). Lay it out as an ImageFolder "
                            f"tree (one sub-folder per class{', ' + spec.hint if spec.hint else ''}) "
                            f"from {spec.url}.") from None

    def count(self, spec, root, split=None):
        n, info, problem = count_image_folder(self.path(spec, root, split))
        if split and n is not None and not info.startswith(f"{spec.num_classes} class"):
            info += f" ({spec.label} has {spec.num_classes})"
        return n, info, problem

    def howto(self, spec, split=None):
        if split is None:
            return super().howto(spec)
        return (f"Download {spec.archive or spec.label} from {spec.url} and lay out <root>/{spec.folder}/{split}/ "
                f"as an ImageFolder tree (one sub-folder per class, {spec.num_classes} classes).")


IMAGE_FOLDER = ImageFolderTree()


class TorchvisionLayout(Layout):
    """A set that torchvision's class ``cls_name`` (looked up in torchvision.datasets when used, so that
    a replaced class is the one called) loads, verifies and downloads."""
    downloadable = True

    def __init__(self, cls_name):
        self.cls_name = cls_name

    def __repr__(self):
        return f"{type(self).__name__}({self.cls_name!r})"

    @property
    def cls(self):
        return getattr(torchvision.datasets, self.cls_name)

    def load(self, spec, root, split, transform, download=False):
        """The ID split through torchvision's class; one instance with ``download``, so that torchvision
        checks the files once."""
        train = split == spec.split_names[0]
        self.prepare(spec, root)
        try:
            if download:
                with download_errors(spec.name, spec.url, Path(root)):
                    return self.cls(root, train=train, transform=transform, download=True)
            return self.cls(root, train=train, transform=transform)
        except RuntimeError:
            raise UserError(f"the {split} split of {spec.name} was not found or is corrupted under "
                            f"{os.path.join(root, self.location(spec))}{self.what}{self.damage(spec, root, split)}; "
                            f"{self.get_it(spec)}. Pass --dataset_path to use another data root.") from None

    def damage(self, spec, root, split):
        """Which of the files torchvision verifies are missing or fail its md5, as " (...)" for the message
        of a split torchvision refused (it says only that something is wrong); "" when none is declared.
        Hashed here, on the error path only: torchvision hashed them before refusing."""
        missing, bad = [], []
        for path, md5 in self.files(spec, root, split):
            if not path.is_file():
                missing.append(path.name)
            elif file_digest(path, "md5") != md5:
                bad.append(path.name)
        parts = [f"missing: {', '.join(missing)}"] if missing else []
        if bad:
            parts.append(f"md5 mismatch (not read): {', '.join(bad)}")
        return f" ({'; '.join(parts)})" if parts else ""

    def prepare(self, spec, root):
        """Anything to do before torchvision looks (unpacking a local copy)."""

    def get_it(self, spec):
        md5 = f", md5 {spec.md5}" if spec.md5 else ""
        if spec.hint:
            return f"{spec.hint}, or let torchvision download it with --download ({spec.url}{md5})"
        return f"torchvision downloads it with --download ({spec.url}{md5})"

    def fetch(self, spec, root):
        self.cls(str(root), train=True, download=True)

    def howto(self, spec, split=None):
        md5 = f" (md5 {spec.md5})" if spec.md5 else ""
        also = f", or {spec.hint}" if spec.hint else ""
        return f"torchvision downloads it (--download) from {spec.url}{md5} into <root>/{self.location(spec)}{also}."


class _CountingUnpickler(pickle.Unpickler):
    """Reads a CIFAR pickle's dict and lists without building its image array: the only globals it admits
    are those that rebuild the array (numpy's, and the bytes of a pickle written by Python 3 at protocol
    2), each replaced by an inert placeholder, so that nothing the file names is ever called. Only files
    whose md5 matched are read at all (the checksum is the guard; this keeps counting from executing
    anything even then)."""
    ARRAY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                     ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                     ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    class Placeholder:
        def __init__(self, *args, **kwargs):
            pass

        def __setstate__(self, state):
            pass

    def find_class(self, module, name):
        if (module, name) in self.ARRAY_GLOBALS:
            return self.Placeholder
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR batch")


def cifar_labels(path):
    """The number of labels in a CIFAR batch file (``labels``, or CIFAR-100's ``fine_labels``)."""
    with open(path, "rb") as f:
        entry = _CountingUnpickler(f, encoding="latin1").load()
    return len(entry["labels"] if "labels" in entry else entry["fine_labels"])


class CifarPickles(TorchvisionLayout):
    """torchvision's CIFAR10 / CIFAR100 folder of python pickles (<root>/<base_folder>/), counted from the
    pickles' label lists; torchvision verifies every pickle's md5. A pickle can run code when read, so
    ``count`` reads only the files whose md5 is torchvision's (the files it would load), and those with a
    reader that admits nothing but the format's types; the others are reported, not counted."""
    what = ""

    def location(self, spec, split=None):
        return f"{self.cls.base_folder}/"

    def _names(self, spec, split):
        return self.cls.train_list if split == spec.split_names[0] else self.cls.test_list

    def count(self, spec, root, split=None):
        base = Path(root) / self.cls.base_folder
        names = self._names(spec, split)
        if not base.is_dir() or not any((base / n).exists() for n, _ in names):
            return None, "", ""
        total, missing, unverified = 0, [], []
        for n, md5 in names:
            if not (base / n).exists():
                missing.append(n)
                continue
            try:
                if file_digest(base / n, "md5") != md5:
                    unverified.append(n)
                    continue
                total += cifar_labels(base / n)
            except Exception as e:  # unreadable, or a file of torchvision's sum that is not a CIFAR batch
                return total, "", f"{n} unreadable ({type(e).__name__})"
        info = f"not counted (md5 mismatch, not read): {', '.join(unverified)}" if unverified else ""
        return total, info, (f"missing {', '.join(missing)}" if missing else "")

    def files(self, spec, root, split=None):
        base, cls = Path(root) / self.cls.base_folder, self.cls
        return [(base / n, m) for n, m in self._names(spec, split)] + [(base / cls.meta["filename"], cls.meta["md5"])]


class IdxFiles(TorchvisionLayout):
    """torchvision's MNIST family (MNIST, FashionMNIST, KMNIST, ...): uncompressed idx files in
    <root>/<class name>/raw/, counted from the idx headers. ``gz_copy`` (a function, so that it is read
    when used) names a folder holding the gzipped files, unpacked there on first use: Debian's package
    dataset-fashion-mnist."""
    what = " (uncompressed idx files)"

    def __init__(self, cls_name, gz_copy=None):
        super().__init__(cls_name)
        self.gz_copy = gz_copy

    def location(self, spec, split=None):
        return f"{self.cls_name}/raw/"

    def _raw_names(self):
        return [n[:-3] if n.endswith(".gz") else n for n, _ in self.cls.resources]

    @staticmethod
    def _prefix(spec, split):
        """torchvision's file-name prefix of a split: "train" or "t10k"."""
        return "train" if split == spec.split_names[0] else "t10k"

    def _images(self, spec, split):
        return next(n for n in self._raw_names() if n.startswith(self._prefix(spec, split)) and "images" in n)

    def prepare(self, spec, root):
        raw = Path(root) / self.location(spec)
        source = Path(self.gz_copy()) if self.gz_copy else None
        names = self._raw_names()
        if all((raw / n).exists() for n in names) or source is None or not source.is_dir():
            return
        raw.mkdir(parents=True, exist_ok=True)
        for n in names:
            src = source / (n + ".gz")
            if (raw / n).exists() or not src.exists():
                continue
            with atomic_path(raw / n) as tmp, gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)

    def count(self, spec, root, split=None):
        raw = Path(root) / self.location(spec) / self._images(spec, split)
        places = [(raw, open, ""), (raw.with_name(raw.name + ".gz"), gzip.open, "from the .gz")]
        if self.gz_copy:
            copy = Path(self.gz_copy())
            places.append((copy / (raw.name + ".gz"), gzip.open, f"the gzipped copy in {copy}, unpacked on first use"))
        for path, opener, note in places:
            if path.exists():
                try:
                    with opener(path, "rb") as f:
                        header = f.read(8)
                    magic, n = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big")
                    return (n, note, "") if magic == 0x803 else (0, "", f"{path.name}: not an idx image file")
                except OSError as e:
                    return 0, "", f"{path.name} unreadable ({e})"
        return None, "", ""

    def archives(self, spec, split=None):
        prefix = self._prefix(spec, split)
        return tuple((f"{self.location(spec)}{n}", m) for n, m in self.cls.resources if n.startswith(prefix))


class SVHNFile(Layout):
    """torchvision's SVHN test split, one .mat file (<root>/<folder>/<archive>), counted from its header."""
    what = "the file"
    downloadable = True

    def location(self, spec, split=None):
        return f"{spec.folder}/{spec.archive}"

    def label(self, spec, split=None):
        return f"{spec.name} (test)"

    def load(self, spec, root, split, transform, download=False):
        path = Path(root) / spec.folder
        if download and not (path / spec.archive).exists():
            with download_errors(spec.name, spec.url, path):
                self.fetch(spec, root)
        try:
            return torchvision.datasets.SVHN(str(path), split="test", transform=transform)
        except RuntimeError:
            raise UserError(spec.missing_message(path / spec.archive, "missing or corrupted")) from None

    def count(self, spec, root, split=None):
        import scipy.io
        path = Path(root) / spec.folder / spec.archive
        if not path.exists():
            return None, "", ""
        try:
            shapes = {name: shape for name, shape, _ in scipy.io.whosmat(str(path))}
            return int(shapes["y"][0] if "y" in shapes else shapes["X"][-1]), "", ""
        except Exception as e:
            return 0, "", f"unreadable .mat ({type(e).__name__})"

    def files(self, spec, root, split=None):  # torchvision's sum, read when used (tests replace it)
        return [(Path(root) / spec.folder / spec.archive, torchvision.datasets.SVHN.split_list["test"][2])]

    def archives(self, spec, split=None):
        return ()  # the file itself is checked

    def fetch(self, spec, root):
        torchvision.datasets.SVHN(str(Path(root) / spec.folder), split="test", download=True)

    def howto(self, spec, split=None):
        return f"torchvision downloads it (--download) from {spec.url} into <root>/{spec.folder}/."


class HeldOutClasses(Layout):
    """The near-OOD set of an --id_classes split: made from the ID test split by ``held_out``."""
    under_root = False

    def location(self, spec, split=None):
        return "(the ID test split)"

    def load(self, spec, root, split, transform, download=False):
        raise UserError("the OOD set HeldOut is made from the ID set's test split (--id_classes); "
                        "ood.data.held_out builds it.")

    def count(self, spec, root, split=None):
        return None, "", ""

    def howto(self, spec, split=None):
        return "It is made from the ID set's test split with --id_classes; there is nothing to download."


_MOS = "http://pages.cs.wisc.edu/~huangrui/imagenet_ood_dataset/"
OOD_SETS = {s.name.lower(): s for s in [
    OODSet("SVHN", "SVHN", 26032, torchvision.datasets.SVHN.split_list["test"][0], "test_32x32.mat",
           torchvision.datasets.SVHN.split_list["test"][2], "put it in <root>/SVHN/", ("svhn",), SVHNFile()),
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
OOD_SETS["heldout"] = OODSet("HeldOut", "id-test:classes-not-in-id_classes", 0, aliases=("held-out", "near-ood"),
                              layout=HeldOutClasses())
CIFAR_OOD = ("SVHN", "LSUN_C", "LSUN_R", "iSUN", "Places", "Textures", "TinyImageNet", "SUN", "iNaturalist")
IMAGENET_OOD = ("iNaturalist", "SUN", "Places", "Textures")


def register_ood(spec):
    """Register an extra OOD set (an :class:`OODSet`), usable by name like the built-in ones; returns it.
    A name, alias or folder that already selects another set is refused: a name selects one set."""
    taken = spec.names() & {n for other in OOD_SETS.values() if other.name != spec.name for n in other.names()}
    if taken:
        raise ValueError(f"OOD set {spec.name}: {', '.join(sorted(taken))} already selects another set.")
    OOD_SETS[spec.name.lower()] = spec
    return spec


def builtin_ood(name):
    """The registered OOD set that ``name`` selects (case-insensitive; aliases and folders too), or None."""
    key = name.lower()
    return next((spec for spec in OOD_SETS.values() if key in spec.names()), None)


def benchmark_ood(name, id_set):
    """The OOD set of ``id_set``'s benchmark that ``name`` names (case-insensitive), or None."""
    bench = get_benchmark(id_set.benchmark)
    return next((o for o in bench.ood_sets(id_set) if o.name.lower() == name.lower()), None)


def resolve_ood(name, id_set=None):
    """Map a user-given OOD name (case-insensitive, aliases allowed) or ``NAME=PATH`` to an OODSet; for an
    ``id_set`` of another benchmark than the paper's, among that benchmark's sets of it. A custom NAME
    that is also a registered set's name or alias is refused: otherwise ``--ood SVHN=PATH`` would be
    reported as SVHN, and ``--select_on lsunc`` could pick the built-in set instead of the folder."""
    foreign = id_set is not None and bool(id_set.benchmark)
    if "=" in name:
        label, path = name.split("=", 1)
        if not label.strip() or not path:
            raise UserError(f"custom OOD set {name!r}: write it as NAME=PATH (an ImageFolder tree).")
        same = benchmark_ood(label, id_set) if foreign else builtin_ood(label)
        if same is not None:
            raise UserError(f"--ood {name}: {label!r} already names the OOD set {same.name}; give your folder "
                            f"another name (e.g. my_{safe_name(label)}={path}).")
        return OODSet(label, str(Path(path).expanduser().resolve()), 0, custom=True)
    if foreign:
        spec = benchmark_ood(name, id_set)
        if spec is not None:
            return spec
        sets = get_benchmark(id_set.benchmark).ood_sets(id_set)
        raise UserError(f"unknown OOD set {name!r} of {id_set.label} in --benchmark {id_set.benchmark}. Known: "
                        f"{', '.join(o.name for o in sets)}; or give a folder of your own as NAME=PATH.")
    spec = builtin_ood(name)
    if spec is not None:
        return spec
    raise UserError(f"unknown OOD set {name!r}. Known: {', '.join(s.name for s in OOD_SETS.values())}; "
                    f"or give a folder of your own as NAME=PATH.")


# ----------------------------------------------------------------------------------------------------
# In-distribution sets
# ----------------------------------------------------------------------------------------------------
PREPROCESSING = {"cifar": "Resize((s, s))", "imagenet": "Resize(s * 256 / 224) + CenterCrop(s)",
                 "openood": "Resize(resize) + CenterCrop(s), bilinear (OpenOOD v1.5's test preprocessor)"}


@dataclass(frozen=True)
class IDSet:
    """The declaration of one ID data set: everything the code knows about it. The loaders (through its
    ``layout``), ``verify_data.py``'s rows and targets, ``--dataset`` / ``--ood`` help, defaults and error
    messages derive from it. A new set is one ``register_id(IDSet(...))``; with --id_classes,
    ``get_id_set`` derives a class split of it (``classes``, ``base``)."""
    name: str                      # the --dataset value; it names checkpoints, caches and results folders
    num_classes: int
    mean: tuple                    # Normalize statistics, used for the OOD sets too
    std: tuple
    preprocessing: str             # a key of PREPROCESSING: "cifar": Resize((s, s)); "imagenet": + CenterCrop
    default_ood: tuple = CIFAR_OOD  # the OOD sets of its protocol: --ood's default
    channels: int = 3              # 1: every image (OOD sets too) is seen in grayscale
    layout: object = None          # a Layout: how its files lie under the data root (load, count, fetch)
    folder: str = ""               # its folder under the data root, where the layout does not fix it
    splits: tuple = (("train", 0), ("test", 0))  # (name, images) of its training split, then its test split
    label: str = ""                # as tables and messages name it ("CIFAR-10"; default: name)
    url: str = ""                  # where to download it
    archive: str = ""              # the archive's file name
    md5: str = ""                  # the archive's md5 sum
    hint: str = ""                 # another way to get it, for a missing set's message
    paper: bool = False            # one of the paper's sets: needed by verify_data.py --for all
    classes: tuple = ()            # with --id_classes: the original labels kept as ID, in order
    base: str = ""                 # with --id_classes: the data set they come from
    benchmark: str = ""            # the benchmark declaring it, when not the paper's (ood/openood.py)
    resize: int = 0                # "openood" preprocessing: the shorter side before the centre crop
    input_size: int = 0            # the input size its benchmark fixes (0: the backbone's or checkpoint's)
    by_hand: tuple = ()            # (split, how to get it) of the splits no declared archive holds

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @property
    def split_names(self):
        """(training split, test split), e.g. ("train", "val") for ImageNet-1k."""
        return self.splits[0][0], self.splits[1][0]

    @property
    def val_split(self):
        """The name of its validation split (OpenOOD's ID val list), or "" when it has none."""
        return self.splits[2][0] if len(self.splits) > 2 else ""

    @property
    def key(self):
        """The folder name of its checkpoints, caches and results: its name, prefixed by its benchmark
        when that is not the paper's (``openood-cifar10``), so that the two benchmarks' CIFAR-10 caches
        and tables never share a folder."""
        return f"{self.benchmark}-{self.name}" if self.benchmark else self.name

    def fetched_by_hand(self, split):
        """How to get split ``split`` when no declared archive holds it (OpenOOD's ImageNet training
        images), or ""."""
        return dict(self.by_hand).get(split, "")

    def split_name(self, role):
        """The name of the split that plays ``role``: "train", "test" or "val" (ImageNet-1k's test split
        is its "val" folder)."""
        if role == "val":
            if not self.val_split:
                raise UserError(f"{self.label} has no ID validation split; OpenOOD's sets have one "
                                f"(--benchmark openood).")
            return self.val_split
        return self.split_names[0 if role == "train" else 1]

    def build(self, root, role, transform, download=False):
        return self.layout.load(self, root, self.split_name(role), transform, download)


def id_key(name):
    """How a --dataset value selects a set: case, "-" and "_" ignored (fashion-mnist, Fashion_MNIST)."""
    return name.lower().replace("-", "").replace("_", "")


ID_SETS = {}


def register_id(spec):
    """Register an ID set (an :class:`IDSet`), usable by name like the built-in ones; returns it. A name
    that already selects another set, an unknown preprocessing family or a declaration without a layout
    or without two splits is refused."""
    key = id_key(spec.name)
    if key == "all":  # verify_data.py --for all: every set of the paper
        raise ValueError("ID set all: the name is reserved (verify_data.py --for all).")
    if key in ID_SETS and ID_SETS[key] != spec:
        raise ValueError(f"ID set {spec.name}: the name already selects the ID set {ID_SETS[key].name}.")
    if spec.preprocessing not in PREPROCESSING:
        raise ValueError(f"ID set {spec.name}: preprocessing {spec.preprocessing!r} is not one of "
                         f"{', '.join(PREPROCESSING)}.")
    if not isinstance(spec.layout, Layout) or len(spec.splits) != 2:
        raise ValueError(f"ID set {spec.name}: declare its layout (a Layout) and its two splits (training, test).")
    ID_SETS[key] = spec
    return spec


_C10, _C100 = torchvision.datasets.CIFAR10, torchvision.datasets.CIFAR100
for _spec in [
    IDSet("cifar10", 10, CIFAR_MEAN, CIFAR_STD, "cifar", label="CIFAR-10", layout=CifarPickles("CIFAR10"),
          splits=(("train", 50000), ("test", 10000)), url=_C10.url, archive=_C10.filename, md5=_C10.tgz_md5,
          paper=True),
    # The reference code normalises CIFAR-100 and all OOD sets with the CIFAR-10 statistics.
    IDSet("cifar100", 100, CIFAR_MEAN, CIFAR_STD, "cifar", label="CIFAR-100", layout=CifarPickles("CIFAR100"),
          splits=(("train", 50000), ("test", 10000)), url=_C100.url, archive=_C100.filename, md5=_C100.tgz_md5,
          paper=True),
    IDSet("imagenet", 1000, IMAGENET_MEAN, IMAGENET_STD, "imagenet", IMAGENET_OOD, label="ImageNet-1k",
          layout=IMAGE_FOLDER, folder="imagenet", splits=(("train", 1281167), ("val", 50000)),
          url="https://image-net.org/download.php", archive="ILSVRC2012",
          hint="as extracted by torchvision's ImageNet helpers",
          paper=True),
    IDSet("fashionmnist", 10, FASHION_MNIST_MEAN, FASHION_MNIST_STD, "cifar", channels=1, label="Fashion-MNIST",
          layout=IdxFiles("FashionMNIST", gz_copy=lambda: os.environ.get("FASHION_MNIST_GZ", DEBIAN_FASHION_MNIST)),
          splits=(("train", 60000), ("test", 10000)), url=torchvision.datasets.FashionMNIST.mirrors[0],
          hint="install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"),
]:
    register_id(_spec)


def _either(names, last="or"):
    names = list(names)
    return ", ".join(names[:-1]) + f" {last} " + names[-1] if len(names) > 1 else "".join(names)


def benchmark_help():
    """``--benchmark``'s help: the paper's, and each registered benchmark's ID sets and FPR95 convention."""
    others = "".join(f"; {b.name}: {b.label} (ID sets {_either((s.name for s in b.id_sets), 'and')}, with their "
                     f"validation, near and far OOD sets; FPR95 variant {b.fpr_variant})" for b in BENCHMARKS.values())
    return f"{PAPER}: the paper's protocol (its ID sets and far-OOD sets){others}"


def dataset_help():
    """``--dataset``'s help: the registered ID sets, and each benchmark's."""
    others = "".join(f"; under --benchmark {b.name}: {_either(s.name for s in b.id_sets)}"
                     for b in BENCHMARKS.values())
    return f"ID data set: {_either(s.name for s in ID_SETS.values())}{others}"


def ood_help():
    """``--ood``'s help: each ID set's default OOD sets and every registered name."""
    groups = {}
    for s in ID_SETS.values():
        groups.setdefault(tuple(s.default_ood), []).append(s.name)
    defaults = "; ".join(f"{_either(ids, 'and')}: {' '.join(oods)}" for oods, ids in groups.items())
    others = "".join(f"; under --benchmark {b.name}, the ID set's own near and far sets (e.g. {b.id_sets[0].name}: "
                     f"{' '.join(b.id_sets[0].default_ood)}; its validation set: {b.val_ood(b.id_sets[0]).name})"
                     for b in BENCHMARKS.values())
    return (f"OOD sets (default: the ID set's own; {defaults}): {' '.join(s.name for s in OOD_SETS.values())} "
            f"(case-insensitive), or NAME=PATH for an ImageFolder tree of your own{others}")


# ----------------------------------------------------------------------------------------------------
# Benchmarks
# ----------------------------------------------------------------------------------------------------
PAPER = "paper"
DRIVE = "https://drive.google.com/uc?id="  # a Google Drive file's download address, before its id


@dataclass(frozen=True)
class Archive:
    """One downloadable archive: the file, where it unpacks under the data root, and where it comes
    from (an http(s) URL, or a Google Drive id fetched with gdown). A lab mirror serves the same file
    names (``verify_data.py --mirror``). ``md5`` or ``size`` check it when known; a zip is also checked
    member by member (its CRCs) before it is unpacked. ``flatten``: a single top-level folder named like
    the archive or its destination is the archive's root (LSUN.tar.gz's ``LSUN/`` becomes ``LSUN_C/``);
    False unpacks the entries into the destination as they are, as OpenOOD's data_setup does."""
    name: str
    file: str
    dest: str
    url: str = ""
    drive_id: str = ""
    md5: str = ""
    size: int = 0
    flatten: bool = True

    @property
    def source(self):
        return self.url or f"{DRIVE}{self.drive_id}"


@dataclass(frozen=True)
class Benchmark:
    """A benchmark other than the paper's (whose sets are ID_SETS and OOD_SETS above): its own ID sets,
    each with its own OOD sets (``OODSet.group``: "val" for the validation set, then "near" and "far")
    and the archives that hold them, and the FPR95 convention its tables use. ``--benchmark NAME``
    selects it; ood/openood.py declares OpenOOD v1.5."""
    name: str
    label: str
    id_sets: tuple                 # IDSet, each with benchmark=name
    oods: tuple                    # per ID set (same order): its OODSets, the validation set first
    archives: tuple                # per ID set: the Archive objects that hold its data
    fpr_variant: str = "standard"  # the FPR95 variant (ood.metrics) of its tables: --fpr_variant's default
    source: str = ""               # where its facts come from

    def id_set(self, name):
        for s in self.id_sets:
            if id_key(s.name) == id_key(name):
                return s
        raise UserError(f"--benchmark {self.name} has no ID set {name!r}; its ID sets are "
                        f"{_either((s.name for s in self.id_sets), 'and')}.")

    def ood_sets(self, id_set):
        """Every OOD set of ``id_set``, the validation set first."""
        return self.oods[[s.name for s in self.id_sets].index(id_set.name)]

    def val_ood(self, id_set):
        return next(o for o in self.ood_sets(id_set) if o.group == "val")

    def archives_of(self, id_set):
        return self.archives[[s.name for s in self.id_sets].index(id_set.name)]


BENCHMARKS = {}


def register_benchmark(bench):
    """Register a Benchmark (its name is --benchmark's value); returns it."""
    if bench.name == PAPER or bench.name in BENCHMARKS:
        raise ValueError(f"benchmark {bench.name}: the name is taken.")
    BENCHMARKS[bench.name] = bench
    return bench


def benchmark_names():
    return [PAPER, *BENCHMARKS]


def get_benchmark(name):
    """The Benchmark ``name``; None for the paper's."""
    if not name or name == PAPER:
        return None
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}; choose {_either(benchmark_names())}.")
    return BENCHMARKS[name]


def get_id_set(name, id_classes=None, benchmark=None):
    """The ID set ``name`` of ``benchmark`` (None or "paper": the paper's); with ``id_classes`` (a
    near-OOD split of a paper set) only those classes, relabelled 0..k-1 in the order given, under the
    name ``<name>_classes<c1>-<c2>-...`` (which also names the checkpoint, cache and results folders).
    The other classes form the OOD set ``HeldOut``."""
    bench = get_benchmark(benchmark)
    if bench is not None:
        if id_classes:
            raise UserError(f"--id_classes makes a near-OOD split of the paper's sets; --benchmark {bench.name} "
                            f"has near-OOD sets of its own.")
        return bench.id_set(name)
    key = id_key(name)
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
    if id_set.preprocessing == "imagenet":
        resize = [T.Resize(round(size * 256 / 224)), T.CenterCrop(size)]
    elif id_set.preprocessing == "openood":
        # OpenOOD's Resize(pre_size) + CenterCrop(img_size), scaled when a backbone needs another input size
        scaled = round(id_set.resize * size / id_set.input_size) if id_set.input_size else size
        resize = [T.Resize(scaled), T.CenterCrop(size)]
    else:
        resize = [T.Resize((size, size))]
    gray = [T.Grayscale(1)] if id_set.channels == 1 else []
    return T.Compose(resize + gray + [T.ToTensor(), T.Normalize(id_set.mean, id_set.std)])


def train_transform(id_set, size, augment="autoaugment"):
    """Training transform of the fixed recipe: Resize -> AutoAugment (CIFAR-10 policy) ->
    RandomHorizontalFlip -> ToTensor -> Normalize, as the authors describe it, at the input size actually
    used for testing (``--recipe reference`` builds its own, ood/recipes.py)."""
    if id_set.preprocessing == "imagenet":
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


def build_id_dataset(id_set, root, role, transform, download=False):
    """The ID split playing ``role`` ("train", "test", or "val" for a set with a validation split), as its
    declaration's layout loads it (only the --id_classes classes, relabelled, for a near-OOD split)."""
    if id_set.classes:
        full = build_id_dataset(ID_SETS[id_key(id_set.base)], root, role, transform, download)
        return ClassSubset(full, id_set.classes, {c: k for k, c in enumerate(id_set.classes)})
    return id_set.build(root, role, transform, download)


def held_out(id_set, root, transform, download=False):
    """The OOD set ``HeldOut`` of a near-OOD split: the ID test images of the classes not in --id_classes."""
    if not id_set.classes:
        raise UserError(f"the OOD set HeldOut is the test images of the classes a near-OOD split leaves out, "
                        f"and this run uses all classes of {id_set.name}: train a backbone on some classes "
                        f"(train_model.py --dataset {id_set.name} --id_classes 0 1 2 3 4 ...) and score it with "
                        f"the same --id_classes, or leave HeldOut out of --ood.")
    base = ID_SETS[id_key(id_set.base)]
    full = build_id_dataset(base, root, "test", transform, download)
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
from . import openood  # noqa: E402,F401  (registers the benchmark OpenOOD v1.5)
