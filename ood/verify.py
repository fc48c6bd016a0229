"""Is the data in place? For every ID and OOD set under a data root: present or not, how many images it
holds against the count of the reference protocol (docs/method.md, "Data"), and the md5 sums of the files
torchvision verifies (CIFAR pickles, the SVHN .mat) and of any downloaded archive lying in the root
(e.g. ``<root>/LSUN.tar.gz``). Images are counted without decoding them: CIFAR from the pickles' label
lists, SVHN from the .mat header, Fashion-MNIST from the idx headers, ImageFolder trees from the file
listing (files with an image extension in class sub-folders, as ImageFolder counts them).

``check(root, target)`` returns a :class:`Report`; ``verify_data.py`` is its command line.
"""
import gzip
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torchvision
from torchvision.datasets.folder import IMG_EXTENSIONS

from . import data as D
from .errors import UserError
from .io import file_digest

IMAGENET_URL = "https://image-net.org/download.php"

# Images per ID split (the OOD sets' counts live in ood.data.OOD_SETS). Tests may override any count,
# by key, through ``check(..., expected={key: n})`` or ``verify_data.py --expect KEY=N``.
ID_EXPECTED = {
    "cifar10/train": 50000, "cifar10/test": 10000,
    "cifar100/train": 50000, "cifar100/test": 10000,
    "fashionmnist/train": 60000, "fashionmnist/test": 10000,
    "imagenet/train": 1281167, "imagenet/val": 50000,
}
IMAGENET_CLASSES = 1000

# What each --for target needs: ID splits and OOD sets.
TARGETS = {
    "cifar10": (("cifar10/train", "cifar10/test"), D.CIFAR_OOD),
    "cifar100": (("cifar100/train", "cifar100/test"), D.CIFAR_OOD),
    "imagenet": (("imagenet/train", "imagenet/val"), D.IMAGENET_OOD),
    "fashionmnist": (("fashionmnist/train", "fashionmnist/test"), ()),
    # every set of the paper; Fashion-MNIST (the CPU demo's set) is listed but not needed
    "all": (("cifar10/train", "cifar10/test", "cifar100/train", "cifar100/test", "imagenet/train",
             "imagenet/val"), D.CIFAR_OOD),
}
# Scripts of the repository, and the data sets they read (``--for scripts/reproduce_cifar10.sh``).
SCRIPTS = {
    "reproduce_cifar10.sh": ("cifar10",), "reproduce_cifar100.sh": ("cifar100",),
    "reproduce_cifar.sh": ("cifar10", "cifar100"), "reproduce_imagenet.sh": ("imagenet",),
    "generate_stored_pattern_imagenet.py": ("imagenet",), "test_score_ood_detection_imagenet.py": ("imagenet",),
    "generate_SHEandHE_feature.sh": ("cifar10", "cifar100"), "demo.sh": ("fashionmnist",),
}


def target_names():
    return list(TARGETS) + list(SCRIPTS)


def resolve_target(name):
    """(ID keys, OOD names) needed by a target or a script (path, name or stem); UserError otherwise."""
    if name.lower() in TARGETS:
        return TARGETS[name.lower()]
    stem = Path(name).name.lower().rsplit(".", 1)[0] if Path(name).suffix in (".sh", ".py") else Path(name).name.lower()
    for script, targets in SCRIPTS.items():
        if stem == script.lower().rsplit(".", 1)[0]:
            ids, oods = [], []
            for t in targets:
                ids += TARGETS[t][0]
                oods += [o for o in TARGETS[t][1] if o not in oods]
            return tuple(ids), tuple(oods)
    raise UserError(f"unknown --for target {name!r}. Choose one of: {', '.join(target_names())} "
                    f"(a script's path works too).")


# ----------------------------------------------------------------------------------------------------
# One row of the report
# ----------------------------------------------------------------------------------------------------
@dataclass
class Entry:
    """One image set: how to count it, how to check its files, where to get it."""
    key: str                     # "cifar10/train", "SVHN", "LSUN_C", ...
    label: str                   # shown in the table
    kind: str                    # "id" or "ood"
    location: str                # relative to the root (or absolute)
    expected: int                # 0: unknown (any non-empty set passes)
    count: Callable              # root -> (n or None when missing, info, problem)
    files: Callable = None       # root -> list of (path, md5): files whose md5 torchvision checks
    archives: tuple = ()         # (file name in root, md5) of downloadable archives
    download: Optional[Callable] = None   # root -> None, fetches through torchvision
    howto: str = ""              # where to get it by hand


@dataclass
class Row:
    entry: Entry
    needed: bool
    count: Optional[int] = None
    expected: int = 0
    note: str = ""
    md5: str = ""                # summary of the md5 checks
    md5_ok: bool = True
    status: str = ""
    ok: bool = False


@dataclass
class Report:
    root: Path
    target: str
    rows: list = field(default_factory=list)

    @property
    def needed(self):
        return [r for r in self.rows if r.needed]

    @property
    def ok(self):
        return all(r.ok for r in self.needed)

    def table(self):
        head = ["set", "needed", "location", "images", "expected", "md5", "status", "notes"]
        body = [[r.entry.label, "yes" if r.needed else "-", r.entry.location,
                 "-" if r.count is None else f"{r.count:,}", f"{r.expected:,}" if r.expected else "any",
                 r.md5 or "-", r.status, r.note] for r in self.rows]
        widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
        line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
        return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body]) + "\n"

    def summary(self):
        bad = [r for r in self.needed if not r.ok]
        if not bad:
            return f"OK: all {len(self.needed)} sets needed by '{self.target}' are in place under {self.root}."
        lines = [f"NOT READY: {len(bad)} of the {len(self.needed)} sets needed by '{self.target}' are missing "
                 f"or incomplete under {self.root}:"]
        groups = {}  # one line per way of getting the data (e.g. CIFAR-10 train and test together)
        for r in bad:
            groups.setdefault(r.entry.howto, []).append(r)
        for howto, rs in groups.items():
            what = "; ".join(f"{r.entry.label}: {r.status}" for r in rs)
            lines.append(f"  - {what} (in {self.root / rs[0].entry.location}). {howto}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Counting without decoding
# ----------------------------------------------------------------------------------------------------
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


def _count_cifar(cls, folder, split):
    def count(root):
        base = Path(root) / folder
        names = [n for n, _ in (cls.train_list if split == "train" else cls.test_list)]
        if not base.is_dir() or not any((base / n).exists() for n in names):
            return None, "", ""
        total, missing = 0, []
        for n in names:
            if not (base / n).exists():
                missing.append(n)
                continue
            try:
                with open(base / n, "rb") as f:
                    entry = pickle.load(f, encoding="latin1")
                total += len(entry["labels"] if "labels" in entry else entry["fine_labels"])
            except Exception as e:  # truncated or foreign file
                return total, "", f"{n} unreadable ({type(e).__name__})"
        return total, "", (f"missing {', '.join(missing)}" if missing else "")
    return count


def _cifar_files(cls, folder, split):
    def files(root):
        base = Path(root) / folder
        lst = cls.train_list if split == "train" else cls.test_list
        return [(base / n, m) for n, m in lst] + [(base / cls.meta["filename"], cls.meta["md5"])]
    return files


def _count_svhn(root):
    import scipy.io
    path = Path(root) / "SVHN" / "test_32x32.mat"
    if not path.exists():
        return None, "", ""
    try:
        shapes = {name: shape for name, shape, _ in scipy.io.whosmat(str(path))}
        return int(shapes["y"][0] if "y" in shapes else shapes["X"][-1]), "", ""
    except Exception as e:
        return 0, "", f"unreadable .mat ({type(e).__name__})"


def _svhn_files(root):
    return [(Path(root) / "SVHN" / "test_32x32.mat", torchvision.datasets.SVHN.split_list["test"][2])]


_FMNIST = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}


def _count_fashion_mnist(split):
    def count(root):
        raw = Path(root) / "FashionMNIST" / "raw" / _FMNIST[split]
        for path, opener, note in ((raw, open, ""), (raw.with_name(raw.name + ".gz"), gzip.open, "from the .gz"),
                                   (D.DEBIAN_FASHION_MNIST / (raw.name + ".gz"), gzip.open,
                                    f"Debian's package in {D.DEBIAN_FASHION_MNIST}, unpacked on first use")):
            if path.exists():
                try:
                    with opener(path, "rb") as f:
                        header = f.read(8)
                    magic, n = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big")
                    return (n, note, "") if magic == 0x803 else (0, "", f"{path.name}: not an idx image file")
                except OSError as e:
                    return 0, "", f"{path.name} unreadable ({e})"
        return None, "", ""
    return count


def _fashion_archives(split):
    prefix = "train" if split == "train" else "t10k"
    return tuple((f"FashionMNIST/raw/{n}", m) for n, m in torchvision.datasets.FashionMNIST.resources
                 if n.startswith(prefix))


def _count_imagenet(split):
    def count(root):
        n, info, problem = count_image_folder(Path(root) / "imagenet" / split)
        if n is not None and not info.startswith(f"{IMAGENET_CLASSES} class"):
            info += f" (ImageNet-1k has {IMAGENET_CLASSES})"
        return n, info, problem
    return count


def _download_cifar(cls):
    return lambda root: cls(str(root), train=True, download=True)


def _download_svhn(root):
    torchvision.datasets.SVHN(str(Path(root) / "SVHN"), split="test", download=True)


def _download_fashion_mnist(root):
    torchvision.datasets.FashionMNIST(str(root), train=True, download=True)


def _ood_entry(spec):
    if spec.name == "SVHN":
        return Entry("SVHN", "SVHN (test)", "ood", "SVHN/test_32x32.mat", spec.expected, _count_svhn, _svhn_files,
                     (), _download_svhn, f"torchvision downloads it (--download) from {spec.url} into <root>/SVHN/.")
    if spec.folder.startswith("package:"):  # the demo's sets, made from arrays inside Python packages
        def count(root, s=spec):
            try:
                return len(s.build(root, None)), "inside Python packages", ""
            except ImportError as e:
                return None, "", f"cannot import {e.name}"
        return Entry(spec.name, spec.name, "ood", "(Python package)", spec.expected, count, None, (), None,
                     "Install the packages of requirements.txt (scikit-learn, scikit-image).")
    count = lambda root, s=spec: count_image_folder(Path(root) / s.folder)
    howto = (f"Download {spec.archive} from {spec.url} (md5 {spec.md5}) and {spec.note or 'extract it into <root>/'}."
             if spec.url else f"An ImageFolder tree of your own at {spec.folder}.")
    archives = ((spec.archive, spec.md5),) if spec.archive and spec.md5 else ()
    return Entry(spec.name, spec.name, "ood", spec.folder + "/", spec.expected, count, None, archives, None, howto)


def entries():
    """Every ID split and every OOD set of the data root, in table order (built at call time, so the
    expected sums and counts of torchvision and ood.data are the current ones)."""
    C10, C100 = torchvision.datasets.CIFAR10, torchvision.datasets.CIFAR100
    out = []
    for key, cls, folder, label in (("cifar10", C10, "cifar-10-batches-py", "CIFAR-10"),
                                    ("cifar100", C100, "cifar-100-python", "CIFAR-100")):
        for split in ("train", "test"):
            out.append(Entry(f"{key}/{split}", f"{label} {split}", "id", folder + "/", ID_EXPECTED[f"{key}/{split}"],
                             _count_cifar(cls, folder, split), _cifar_files(cls, folder, split),
                             ((cls.filename, cls.tgz_md5),), _download_cifar(cls),
                             f"torchvision downloads it (--download) from {cls.url} (md5 {cls.tgz_md5}) into "
                             f"<root>/{folder}/."))
    for split in ("train", "test"):
        out.append(Entry(f"fashionmnist/{split}", f"Fashion-MNIST {split}", "id", "FashionMNIST/raw/",
                         ID_EXPECTED[f"fashionmnist/{split}"], _count_fashion_mnist(split), None,
                         _fashion_archives(split), _download_fashion_mnist,
                         "torchvision downloads it (--download) into <root>/FashionMNIST/raw/, or install "
                         "Debian's dataset-fashion-mnist."))
    for split in ("train", "val"):
        out.append(Entry(f"imagenet/{split}", f"ImageNet-1k {split}", "id", f"imagenet/{split}/",
                         ID_EXPECTED[f"imagenet/{split}"], _count_imagenet(split), None, (), None,
                         f"Download ILSVRC2012 from {IMAGENET_URL} and lay out <root>/imagenet/{split}/ as an "
                         f"ImageFolder tree (one sub-folder per class, {IMAGENET_CLASSES} classes)."))
    out += [_ood_entry(D.OOD_SETS[n.lower()]) for n in D.CIFAR_OOD]
    return out


# ----------------------------------------------------------------------------------------------------
# The check
# ----------------------------------------------------------------------------------------------------
def md5sum(path):
    return file_digest(path, "md5")


def _check_row(entry, root, needed, expected, md5_cache):
    row = Row(entry, needed, expected=expected)
    try:
        row.count, row.note, problem = entry.count(root)
    except OSError as e:
        row.count, row.note, problem = 0, "", f"unreadable ({e})"
    problems = []
    # md5 of the files torchvision verifies, and of any archive lying in the root
    checks, present = [], row.count is not None
    if entry.files and present:
        for path, md5 in entry.files(root):
            if path.exists():
                checks.append((path.name, md5, path, "file"))
    for name, md5 in entry.archives:
        path = Path(root) / name
        if path.is_file():
            checks.append((path.name, md5, path, "archive"))
    bad = []
    for name, md5, path, _ in checks:
        if path not in md5_cache:
            md5_cache[path] = md5sum(path)
        if md5_cache[path] != md5:
            bad.append(name)
    files_checked = [c for c in checks if c[3] == "file"]
    archives_checked = [c for c in checks if c[3] == "archive"]
    parts = []
    if files_checked:
        nbad = sum(c[0] in bad for c in files_checked)
        parts.append(f"files ok ({len(files_checked)})" if not nbad else f"MISMATCH in {nbad} of {len(files_checked)} files")
    for name, *_ in archives_checked:
        parts.append(f"{name} {'MISMATCH' if name in bad else 'ok'}")
    row.md5 = "; ".join(parts) or ("(no archive)" if entry.archives else "")
    row.md5_ok = not bad
    if row.count is None:
        row.status = "missing"
    else:
        if row.count == 0:
            problems.append("empty")
        elif expected and row.count < expected:
            problems.append(f"too few images ({row.count:,} of {expected:,})")
        elif expected and row.count > expected:
            problems.append(f"too many images ({row.count:,}, expected {expected:,})")
        if problem:
            problems.append(problem)
        if bad:
            problems.append(f"md5 mismatch: {', '.join(bad)}")
        row.status = "; ".join(problems) if problems else "ok"
    row.ok = row.status == "ok"
    return row


def check(root, target="all", ood=None, expected=None, download=False, log=print):
    """Check every set under ``root``; ``target`` (see :data:`TARGETS`, or a script name) says which are
    needed, ``ood`` (names) replaces the target's OOD sets, ``expected`` ({key: count}) overrides the
    reference counts, ``download`` fetches the needed sets torchvision can fetch that are not ok."""
    root = Path(root)
    id_keys, ood_names = resolve_target(target)
    all_entries = entries()
    if ood is not None:
        specs = [D.resolve_ood(o) for o in ood]
        ood_names = tuple(s.name for s in specs)
        known = {e.key for e in all_entries}
        all_entries += [_ood_entry(s) for s in specs if s.name not in known]
    overrides = {k.lower(): v for k, v in (expected or {}).items()}
    by_key = {e.key.lower(): e for e in all_entries}
    for k in overrides:
        if k not in by_key:
            spec_name = D.resolve_ood(k).name.lower() if "/" not in k else k
            if spec_name not in by_key:
                raise UserError(f"--expect {k}: no such set. Known: {', '.join(e.key for e in all_entries)}.")
            overrides[spec_name] = overrides.pop(k)
    needed = {k.lower() for k in id_keys} | {o.lower() for o in ood_names}
    md5_cache = {}

    def run():
        return Report(root, target, [_check_row(e, root, e.key.lower() in needed,
                                                overrides.get(e.key.lower(), e.expected), md5_cache)
                                     for e in all_entries])

    report = run()
    if download:
        fetched = set()
        for r in report.needed:
            family = r.entry.key.split("/")[0]
            if r.ok or r.entry.download is None or family in fetched:
                continue
            fetched.add(family)
            log(f"downloading {r.entry.label} through torchvision into {root} ...")
            try:
                r.entry.download(root)
            except Exception as e:  # network, disk, checksum
                log(f"  failed: {type(e).__name__}: {e}")
        md5_cache.clear()
        report = run()
        for r in report.needed:
            if not r.ok and r.entry.download is None:
                log(f"{r.entry.label}: not downloadable automatically. {r.entry.howto} Target folder: "
                    f"{root / r.entry.location}")
    return report
