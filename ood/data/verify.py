"""Is the data in place? For every ID and OOD set under a data root: present or not, how many images it
holds against the count of the reference protocol (docs/method.md, "Data"), and the md5 sums of the files
torchvision verifies (CIFAR pickles, the SVHN .mat) and of any downloaded archive lying in the root
(e.g. ``<root>/LSUN.tar.gz``). Images are counted without decoding them: CIFAR from the pickles' label
lists (only of the pickles whose md5 is torchvision's: unpickling can run code), SVHN from the .mat
header, Fashion-MNIST from the idx headers, ImageFolder trees from the file listing (files with an image
extension in class sub-folders, as ImageFolder counts them).

Nothing here names a data set: the rows, their counts, archives and hints, and the ``--for`` targets
derive from the declarations in ood/data/ (each set's ``Layout`` counts, checks and fetches it).

For another benchmark than the paper's (``benchmark="openood"``) the rows are each of its ID sets'
three splits (train, test, val), each of its OOD sets (validation, near, far) and each of its
covariate-shifted ID sets (OpenOOD's full-spectrum setting), keyed ``<id set>/<split>`` and ``<id
set>/<set>``; its targets are its ID sets and "all". The covariate-shifted ID sets are needed, and their
archives fetched, only with ``fsood=True`` (``verify_data.py --fsood``): they are large, and only
``--fsood`` runs read them.

``download=True`` fetches what the target needs and is missing: the archives its declarations name (through
ood.data.download: checked, then unpacked) and, for the sets torchvision fetches, torchvision (a mirror serves
those of them with a declared archive too).

``check(root, target)`` returns a :class:`Report`; ``verify_data.py`` is its command line.
"""
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ood import data as D
from ood.data import download as DL
from ood.errors import UserError
from ood.io import file_digest
from ood.data.openood import ImageList, read_image_list
from ood.data.package_sets import PACKAGE_OOD


class _Targets(Mapping):
    """What each ``--for`` target needs, (ID split keys, OOD names), derived from the ID sets' declarations
    when read (so a set registered later is a target too): one target per ID set, its two splits and its
    default OOD sets; and "all": every set of the paper (``paper=True``; Fashion-MNIST, the CPU demo's set,
    is listed but not needed) and their OOD sets."""

    def _all(self):
        ids = [s for s in D.ID_SETS.values() if s.paper]
        oods = list(dict.fromkeys(o for s in ids for o in s.default_ood))
        return tuple(split_key(s, n) for s in ids for n in s.split_names), tuple(oods)

    def __getitem__(self, name):
        if name == "all":
            return self._all()
        s = D.ID_SETS[D.id_key(name)]
        return tuple(split_key(s, n) for n in s.split_names), tuple(s.default_ood)

    def __iter__(self):
        return iter([*D.ID_SETS, "all"])

    def __len__(self):
        return len(D.ID_SETS) + 1


def split_key(id_set, split):
    """The verifier's key of an ID split ("cifar10/train"): its row, --expect's name for it."""
    return f"{id_set.name}/{split}"


TARGETS = _Targets()

# Scripts of the repository, and the data sets they read (``--for scripts/reproduce_cifar10.sh``).
SCRIPTS = {
    "reproduce_cifar10.sh": ("cifar10",), "reproduce_cifar100.sh": ("cifar100",),
    "reproduce_cifar.sh": ("cifar10", "cifar100"), "reproduce_imagenet.sh": ("imagenet",),
    "generate_stored_pattern_imagenet.py": ("imagenet",), "test_score_ood_detection_imagenet.py": ("imagenet",),
    "generate_SHEandHE_feature.sh": ("cifar10", "cifar100"), "demo.sh": ("fashionmnist",),
}
# Scripts that pass their own --ood instead of their data sets' defaults: the sets they need.
SCRIPT_OOD = {"demo.sh": PACKAGE_OOD}


def downloadable():
    """Labels of the sets torchvision can fetch (verify_data.py --download)."""
    return [s.label for s in D.ID_SETS.values() if s.layout.downloadable] + \
           [s.name for s in D.OOD_SETS.values() if s.source.downloadable]


def target_names():
    return list(TARGETS) + list(SCRIPTS)


ROLES = ("train", "test", "val")  # the ID splits of a benchmark's ID set, in its rows' order


def bench_key(id_set, ood):
    """The verifier's key of a benchmark's OOD set ("cifar10/tin"): its OOD sets are per ID set."""
    return f"{id_set.name}/{ood.name}"


def bench_targets(bench, name):
    """The ID sets of ``bench`` that ``--for name`` needs: one, or "all"."""
    if name.lower() == "all":
        return list(bench.id_sets)
    for s in bench.id_sets:
        if D.id_key(s.name) == D.id_key(name):
            return [s]
    raise UserError(f"unknown --for target {name!r} of --benchmark {bench.name}. Choose one of: "
                    f"{', '.join([*(s.name for s in bench.id_sets), 'all'])}.")


def csid_keys(bench, name):
    """The keys of the covariate-shifted ID sets that ``--for name --fsood`` needs under ``bench``; a
    UserError when the target has none (CIFAR-100: OpenOOD has no full-spectrum setting for it)."""
    if bench is None:
        raise UserError("--fsood checks OpenOOD v1.5's covariate-shifted ID sets (its full-spectrum setting); the "
                        "paper's benchmark has none: add --benchmark openood.")
    ids = bench_targets(bench, name)
    keys = tuple(bench_key(s, c) for s in ids for c in bench.csid_sets(s))
    if not keys:
        raise UserError(f"--fsood: {bench.label} declares no covariate-shifted ID sets for "
                        f"{' and '.join(s.label for s in ids)}, so there is nothing to check for its full-spectrum "
                        f"setting; leave --fsood out.")
    return keys


def resolve_target(name, benchmark=None):
    """(ID keys, OOD names) needed by a target or a script (path, name or stem); UserError otherwise. For
    another ``benchmark`` than the paper's: (ID keys, OOD keys) of its target (one ID set, or "all")."""
    bench = D.get_benchmark(benchmark)
    if bench is not None:
        ids = bench_targets(bench, name)
        return (tuple(split_key(s, s.split_name(r)) for s in ids for r in ROLES),
                tuple(bench_key(s, o) for s in ids for o in bench.ood_sets(s)))
    if name.lower() in TARGETS:
        return TARGETS[name.lower()]
    stem = Path(name).name.lower().rsplit(".", 1)[0] if Path(name).suffix in (".sh", ".py") else Path(name).name.lower()
    for script, targets in SCRIPTS.items():
        if stem == script.lower().rsplit(".", 1)[0]:
            ids, oods = [], []
            for t in targets:
                ids += TARGETS[t][0]
                oods += [o for o in SCRIPT_OOD.get(script, TARGETS[t][1]) if o not in oods]
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
    spec: object = None          # the declaration (IDSet or OODSet) it comes from
    layout: object = None        # its Layout
    by_hand: str = ""            # how to get it, when no declared archive holds it (OpenOOD's ImageNet train)


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
    failures: list = field(default_factory=list)   # --download: one line per archive that failed

    @property
    def needed(self):
        return [r for r in self.rows if r.needed]

    @property
    def ok(self):
        return all(r.ok for r in self.needed) and not self.failures

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


def _entry(spec, split=None, of=None):
    """The row of an ID split (``split``) or of an OOD set, from the set's declaration and its layout; ``of``:
    the ID set a benchmark's OOD set belongs to (keyed and labelled with it)."""
    lay = spec.layout if split else spec.source
    key, label = split_key(spec, split) if split else spec.name, lay.label(spec, split)
    if of is not None:
        key, label = bench_key(of, spec), f"{spec.name} ({of.label}{', ' + spec.group if spec.group else ''})"
    expected = dict(spec.splits)[split] if split else spec.expected
    return Entry(key, label, "ood" if split is None else "id", lay.location(spec, split), expected,
                 lambda root: lay.count(spec, root, split), lambda root: lay.files(spec, root, split),
                 lay.archives(spec, split), (lambda root: lay.fetch(spec, root)) if lay.downloadable else None,
                 lay.howto(spec, split), spec, lay, spec.fetched_by_hand(split) if split else "")


def entries(benchmark=None):
    """Every ID split and every OOD set under the data root, in declaration order (built at call time
    from ood.data's registries, so a set registered later and the current sums of torchvision are used);
    for another ``benchmark``, each of its ID sets' three splits followed by its OOD sets."""
    bench = D.get_benchmark(benchmark)
    if bench is not None:
        return [e for s in bench.id_sets
                for e in [_entry(s, s.split_name(r)) for r in ROLES] + [_entry(o, of=s) for o in bench.ood_sets(s)]
                + [_entry(c, of=s) for c in bench.csid_sets(s)]]
    out = [_entry(s, split) for s in D.ID_SETS.values() for split in s.split_names]
    return out + [_entry(s) for s in D.OOD_SETS.values() if s.source.under_root]


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
        if row.count == 0 and not problem:  # a problem that left nothing to count says what is wrong
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


def check(root, target="all", ood=None, expected=None, download=False, log=print, benchmark=None, mirror=None,
          quiet=True, timeout=DL.TIMEOUT, fsood=False):
    """Check every set under ``root``; ``target`` (see :data:`TARGETS`, or a script name; for another
    ``benchmark``, one of its ID sets or "all") says which are needed, ``ood`` (names) replaces the
    target's OOD sets, ``expected`` ({key: count}) overrides the reference counts, ``download`` fetches
    what the needed sets that are not ok lack (``mirror``: the base URL serving every archive by its file
    name; ``quiet``: no progress output; ``timeout``: seconds without a byte before a URL is given up).
    ``fsood``: the target's covariate-shifted ID sets are needed too (and their archives fetched)."""
    root = Path(root)
    bench = D.get_benchmark(benchmark)
    id_keys, ood_names = resolve_target(target, benchmark)
    shifted = csid_keys(bench, target) if fsood else ()
    all_entries = entries(benchmark)
    if bench is None:
        specs = [D.resolve_ood(o) for o in (ood_names if ood is None else ood)]
        ood_names = tuple(s.name for s in specs)
        known = {e.key for e in all_entries}  # sets not under the root (package sets) get a row when needed
        all_entries += [_entry(s) for s in specs if s.name not in known]
    elif ood is not None:  # the named sets of each target ID set instead of all of its own
        pairs = [(s, D.resolve_ood(o, s)) for s in bench_targets(bench, target) for o in ood]
        ood_names = tuple(bench_key(s, o) for s, o in pairs)
        known = {e.key for e in all_entries}
        all_entries += [_entry(o, of=s) for s, o in pairs if bench_key(s, o) not in known]
    overrides = {k.lower(): v for k, v in (expected or {}).items()}
    by_key = {e.key.lower(): e for e in all_entries}
    for k in list(overrides):
        if k not in by_key:
            spec_name = D.resolve_ood(k).name.lower() if "/" not in k and bench is None else k
            if spec_name not in by_key:
                raise UserError(f"--expect {k}: no such set. Known: {', '.join(e.key for e in all_entries)}.")
            overrides[spec_name] = overrides.pop(k)
    needed = {k.lower() for k in id_keys} | {o.lower() for o in ood_names} | {c.lower() for c in shifted}
    md5_cache = {}

    def run():
        return Report(root, target, [_check_row(e, root, e.key.lower() in needed,
                                                overrides.get(e.key.lower(), e.expected), md5_cache)
                                     for e in all_entries])

    report = run()
    if download:
        targets = bench_targets(bench, target) if bench is not None else ()
        failures, covered = fetch_archives(report, root, bench, targets, mirror, log, quiet, timeout, fsood)
        fetched = set()
        for r in report.needed:
            family = r.entry.key.split("/")[0]
            if r.ok or r.entry.download is None or family in fetched or r.entry.key in covered:
                continue
            fetched.add(family)
            log(f"downloading {r.entry.label} through torchvision into {root} ...")
            try:
                r.entry.download(root)
            except Exception as e:  # network, disk, checksum
                log(f"  failed: {type(e).__name__}: {e}")
        md5_cache.clear()
        report = run()
        report.failures = failures
        for r in report.needed:
            if not r.ok and r.entry.download is None and r.entry.key not in covered:
                hint = getattr(r.entry.spec, "hint", "")
                hint = f" Hint: {hint}." if hint and hint not in r.entry.howto else ""
                log(f"{r.entry.label}: not downloadable automatically. {r.entry.howto}{hint} Target folder: "
                    f"{root / r.entry.location}")
    return report


# ----------------------------------------------------------------------------------------------------
# --download: the declared archives a target needs
# ----------------------------------------------------------------------------------------------------
def target_archives(report, bench, targets, mirror=None, fsood=False):
    """(archives, keys of the rows they provide) for the needed rows of ``report``, derived from the
    declarations: for the paper's sets, each needed set whose declaration names an archive with its md5
    (``download.declared_archive``; the sets torchvision fetches only with a mirror); for a benchmark,
    the archives of each target ID set (``Benchmark.archives_of``), and with ``fsood`` those of its
    covariate-shifted ID sets (``Benchmark.csid_archives_of``), each once."""
    if bench is not None:
        archives = list(dict.fromkeys([*(a for s in targets for a in bench.archives_of(s)),
                                       *(a for s in targets if fsood for a in bench.csid_archives_of(s))]))
        return archives, {r.entry.key for r in report.needed
                          if not getattr(r.entry.spec, "custom", False) and not r.entry.by_hand}
    archives, covered = {}, set()
    for r in report.needed:
        a = r.entry.spec is not None and DL.declared_archive(r.entry.spec, mirror)
        if a:
            archives.setdefault(a.file, a)
            covered.add(r.entry.key)
    return list(archives.values()), covered


def _under(path, folder):
    path, folder = os.path.normpath(path), os.path.normpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class _Listed:
    """The images the needed image-list rows name (OpenOOD): which lists are unreadable and which images are
    missing (paths relative to the root), read from disk when first asked and again after ``reset`` (once
    the lists are unpacked)."""

    def __init__(self, root, rows):
        self.root = Path(root)
        # a split fetched by hand (OpenOOD's ImageNet train list) does not make an archive incomplete
        self.rows = [r for r in rows if isinstance(r.entry.layout, ImageList) and not r.entry.by_hand]
        self._scan = None

    def reset(self):
        self._scan = None

    def scan(self):
        if self._scan is None:
            unreadable, missing = [], {}
            base = len(str(self.root)) + 1
            for r in self.rows:
                try:
                    samples = read_image_list(self.root / r.entry.location, self.root / r.entry.layout.image_dir)
                except (UserError, OSError, UnicodeDecodeError):
                    samples = []
                if not samples:
                    unreadable.append(r)
                missing.update((p[base:], None) for p, _ in samples if not os.path.isfile(p))
            self._scan = unreadable, list(missing)
        return self._scan

    def is_list(self, row):
        return row in self.rows


def _state(archive, root, rows, listed):
    """("complete" | "absent" | "incomplete", why) of the archive's destination for the needed rows: what
    lies under it that they need and is missing (a set's folder or file, an image list, listed images)."""
    dest = DL.dest_path(archive, root)
    there = dest.exists() and not DL.empty_dir(dest)
    unreadable, missing = listed.scan() if listed.rows else ([], [])
    problems = []
    for r in rows:
        if r.entry.by_hand or not _under(Path(root) / r.entry.location, dest):
            continue
        if listed.is_list(r):
            if r in unreadable:
                problems.append(f"{r.entry.label}: image list missing or unreadable")
        elif not r.ok:
            problems.append(f"{r.entry.label}: {r.status}")
    if not there and (problems or unreadable):  # needed, or what is needed cannot be told yet: fetch it
        return "absent", ""
    prefix = os.path.relpath(dest, root).replace(os.sep, "/") + "/"
    inside = [p for p in missing if p.replace(os.sep, "/").startswith(prefix)]
    if inside:
        problems.append(f"{len(inside):,} listed images missing, e.g. {inside[0]}")
    if there:
        return ("incomplete", "; ".join(problems)) if problems else ("complete", "")
    return ("absent", "") if problems else ("complete", "")


def fetch_archives(report, root, bench=None, targets=(), mirror=None, log=print, quiet=True, timeout=DL.TIMEOUT,
                   fsood=False):
    """Fetch, check and unpack the declared archives the needed rows of ``report`` lack (``fsood``: the
    covariate-shifted ID sets' archives among them). An archive whose
    destination is complete is not fetched; one whose destination exists but is incomplete is left alone
    (a failure line asks to move it aside). Returns (failure lines, keys of the rows the archives cover);
    a failed archive does not stop the others."""
    root = Path(root)
    archives, covered = target_archives(report, bench, targets, mirror, fsood)
    rows = report.needed
    if all(r.ok for r in rows):
        return [], covered
    listed = _Listed(root, rows)
    failures = []
    for a in archives:
        state, why = _state(a, root, rows, listed)
        if state == "complete":
            continue
        if state == "incomplete":
            failures.append(DL.exists_message(a, root, f"is not complete ({why})"))
            continue
        try:
            DL.install(a, root, mirror, log, quiet, timeout)
        except DL.DownloadFailed as e:
            failures.append(str(e))
            continue
        if any(_under(root / r.entry.location, DL.dest_path(a, root)) for r in listed.rows):
            listed.reset()  # it held image lists: read them now
    return failures, covered
