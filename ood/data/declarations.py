"""The declarations every data set and benchmark is made of (``OODSet``, ``IDSet``, ``Archive``,
``Benchmark``), their registries and lookups, and the help texts derived from them. A set or benchmark
is one ``register_*`` call of a declaration (the paper's in ood.data.paper, OpenOOD v1.5's in
ood.data.openood); nothing else in the project lists them."""
import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

from ood.data.layouts import IMAGE_FOLDER, Layout
from ood.errors import UserError
from ood.io import safe_name

# The far-OOD sets of the paper's CIFAR protocol: an ID set's --ood default unless it declares its own.
CIFAR_OOD = ("SVHN", "LSUN_C", "LSUN_R", "iSUN", "Places", "Textures", "TinyImageNet", "SUN", "iNaturalist")


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
    group: str = ""                # a benchmark's group of it: "near", "far" or "val" (OpenOOD), or "csid" for a
    #                                covariate-shifted ID set (labelled ID images, Benchmark.csid); "" otherwise

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


OOD_SETS = {}


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
    benchmark: str = ""            # the benchmark declaring it, when not the paper's (ood/data/openood.py)
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


PAPER = "paper"
DRIVE = "https://drive.google.com/uc?id="  # a Google Drive file's download address, before its id


@dataclass(frozen=True)
class Archive:
    """One downloadable archive: the file, where it unpacks under the data root, and where it comes
    from (an http(s) URL, or a Google Drive id fetched with gdown). A lab mirror serves the same file
    names (``verify_data.py --mirror``). ``md5`` or ``size`` check it when known; a zip is also checked
    member by member (its CRCs) before it is unpacked. ``flatten``: a single top-level folder named like
    the archive or its destination is the archive's root (LSUN.tar.gz's ``LSUN/`` becomes ``LSUN_C/``);
    False unpacks the entries into the destination as they are, as OpenOOD's data_setup does.
    ``contents``: paths (relative, "/"-separated) the destination must hold; when declared, the folder of
    the unpacked tree that holds them all becomes the destination, however deep it lies (a release zip
    wraps its run folder in folders of its own), and an archive in which no one folder holds them is
    refused, naming what it holds, before anything is put in place."""
    name: str
    file: str
    dest: str
    url: str = ""
    drive_id: str = ""
    md5: str = ""
    size: int = 0
    flatten: bool = True
    contents: tuple = ()

    @property
    def source(self):
        return self.url or f"{DRIVE}{self.drive_id}"


@dataclass(frozen=True)
class Released:
    """Checkpoints a benchmark releases for one of its ID sets (OpenOOD v1.5's ``best.ckpt`` of each training
    run): the archive that holds them, whose ``dest`` is relative to the checkpoints' root
    (``verify_data.py --checkpoints --checkpoints_dir``) and whose ``contents`` are the checkpoint files
    its folder must hold, and the registered backbone (``model``) each of them must load into as a state
    dict, its keys and shapes checked; "" when the archive holds networks of several architectures, of
    which at least one checkpoint file must then be there. ``note`` says what they are and how to use them."""
    id_set: str
    archive: Archive
    model: str = ""
    note: str = ""


@dataclass(frozen=True)
class Benchmark:
    """A benchmark other than the paper's (whose sets are ID_SETS and OOD_SETS above): its own ID sets,
    each with its own OOD sets (``OODSet.group``: "val" for the validation set, then "near" and "far")
    and the archives that hold them, the FPR95 convention its tables use, the checkpoints it releases
    (``Released``) and, optionally, per ID set, its covariate-shifted ID sets (``csid``), which ``--fsood``
    counts as ID (OpenOOD's full-spectrum setting), and their archives. ``--benchmark NAME`` selects it;
    ood/data/openood.py declares OpenOOD v1.5."""
    name: str
    label: str
    id_sets: tuple                 # IDSet, each with benchmark=name
    oods: tuple                    # per ID set (same order): its OODSets, the validation set first
    archives: tuple                # per ID set: the Archive objects that hold its data
    fpr_variant: str = "standard"  # the FPR95 variant (ood.evaluation.metrics) of its tables: --fpr_variant's default
    source: str = ""               # where its facts come from
    checkpoints: tuple = ()        # Released: the checkpoints it publishes (verify_data.py --checkpoints)
    csid: tuple = ()               # per ID set (same order; () for none): its covariate-shifted ID sets, OODSets of
    #                                group "csid" whose images are labelled with the ID set's classes (--fsood)
    csid_archives: tuple = ()      # per ID set: the Archive objects that hold them (fetched with --fsood only)

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

    def checkpoints_of(self, id_set):
        """The Released checkpoints of ``id_set`` (none, one or more)."""
        return tuple(r for r in self.checkpoints if id_key(r.id_set) == id_key(id_set.name))

    def csid_sets(self, id_set):
        """The covariate-shifted ID sets of ``id_set`` (OpenOOD's full-spectrum setting counts them as ID, in
        this order after the ID test set); () when the benchmark declares none for it."""
        return self._of(self.csid, id_set)

    def csid_archives_of(self, id_set):
        """The archives that hold the covariate-shifted ID sets of ``id_set``; () when none."""
        return self._of(self.csid_archives, id_set)

    def _of(self, per_set, id_set):
        i = [s.name for s in self.id_sets].index(id_set.name)
        return tuple(per_set[i]) if i < len(per_set) else ()


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
