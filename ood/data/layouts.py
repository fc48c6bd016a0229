"""Layouts: how a declared set's files lie under the data root, and so how to load, count, verify and
fetch them. A declaration (ood.data.declarations) names its layout; a new layout is one subclass."""
import gzip
import os
import pickle
import shutil
from pathlib import Path

import torchvision

from ood.data.images import count_image_folder, download_errors, image_folder
from ood.errors import UserError
from ood.io import atomic_path, file_digest


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
