"""A benchmark's released checkpoints (OpenOOD v1.5's ``best.ckpt`` files, declared once as ``Released`` in
ood/data/openood.py): are they in place under the checkpoints' root, and ``verify_data.py --checkpoints
--download`` fetching what is missing through ood.data.download (a ``.part`` file resumed, a mirror,
--timeout, each zip member's CRC checked before anything is unpacked, the unpacked folder renamed into
place; a complete folder is never fetched again, an incomplete one never written into).

In place means: the archive's folder ``<root>/<dest>`` (``<root>/<run folder>`` for OpenOOD's ResNet-18
runs) holds every declared checkpoint file (``s0/best.ckpt``, ...), and each one reads with
``torch.load(weights_only=True)`` as a state dict whose keys and shapes are those of the declared backbone
(built from the model registry with the ID set's class count), loaded as ``--checkpoint`` loads it. An
archive of networks of several architectures (OpenOOD's ImageNet-1k ResNet-50s) needs one checkpoint file
at least. What differs is said precisely: which declared files are missing and which checkpoint files are
there instead, or the first key that does not fit.

``check(root, bench, target)`` returns a :class:`Report` (``table()``, ``summary()``, ``failures``, ``ok``),
as ood.data.verify's is for the data.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path

import models
from ood.data import download as DL
from ood.data.verify import bench_targets
from ood.errors import UserError
from ood.training.checkpoints import read_checkpoint, state_dict_mismatch, state_of

TORCH_FILES = (".ckpt", ".pth", ".pt", ".pth.tar")  # what a checkpoint file is named
DEFAULT_DIR = "checkpoints"  # the checkpoints' root of a benchmark, by default: ./checkpoints/<benchmark>


def default_root(bench):
    """Where ``bench``'s released checkpoints unpack unless ``--checkpoints_dir`` says otherwise."""
    return Path(DEFAULT_DIR) / bench.name


@dataclass
class Row:
    """One Released declaration under the root: what was found, and whether it is complete."""
    released: object
    id_set: object
    dest: Path
    present: bool = False        # its folder exists and is not empty (then --download never writes into it)
    found: list = field(default_factory=list)  # its checkpoint files, relative to dest
    loaded: int = 0              # declared files that load into the declared backbone
    status: str = ""
    ok: bool = False

    @property
    def files(self):
        contents = self.released.archive.contents
        if not self.present:
            return "-"
        return f"{self.loaded}/{len(contents)}" if contents else f"{len(self.found)}"


def _some(paths, n=4):
    more = f", ... ({len(paths):,} in all)" if len(paths) > n else ""
    return ", ".join(paths[:n]) + more


def _listing(dest):
    """Every file under ``dest``, "/"-separated and relative to it, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(dest):
        dirnames.sort()
        rel = os.path.relpath(dirpath, dest)
        out += [name if rel == "." else os.path.join(rel, name).replace(os.sep, "/") for name in sorted(filenames)]
    return out


def _loads(model, model_name, num_classes, path):
    """"" when ``path`` loads into ``model`` (the backbone ``model_name``) as --checkpoint loads it, else
    what is wrong."""
    try:
        state = state_of(read_checkpoint(path), path)
    except UserError as e:
        return str(e).rstrip(".")
    if hasattr(model, "from_torchvision_names"):
        state = model.from_torchvision_names(state)
    mismatch = state_dict_mismatch(model.state_dict(), state)
    if mismatch:
        return f"does not fit {model_name} with {num_classes} classes ({mismatch})"
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        return f"does not load into {model_name} ({' '.join(str(e).split())[:300]})"
    return ""


def inspect(released, id_set, root):
    """The Row of ``released`` under ``root``."""
    archive = released.archive
    dest = DL.dest_path(archive, root)
    row = Row(released, id_set, dest)
    if not dest.exists() or DL.empty_dir(dest):
        row.status = "missing" if not dest.exists() else "empty folder"
        return row
    row.present = True
    if not dest.is_dir():
        row.status = "not a folder"
        return row
    listing = _listing(dest)
    row.found = [f for f in listing if f.lower().endswith(TORCH_FILES)]
    if not archive.contents:
        if not row.found:
            row.status = (f"no checkpoint file ({', '.join(TORCH_FILES)}) in it; it holds "
                          f"{_some(listing) or 'nothing but folders'}")
        row.ok = bool(row.found)
        row.status = row.status or "ok"
        return row
    missing = [c for c in archive.contents if not (dest / c).is_file()]
    if missing:
        there = f"its checkpoint files: {_some(row.found)}" if row.found else \
            f"it holds no checkpoint file ({_some(listing) or 'nothing but folders'})"
        row.status = f"{_some(missing)} missing; {there}"
        return row
    problems = []
    model = models.build_model(released.model, id_set.num_classes)
    for c in archive.contents:
        wrong = _loads(model, released.model, id_set.num_classes, dest / c)
        if wrong:
            problems.append(f"{c} {wrong}" if not wrong.startswith("checkpoint ") else wrong)
        else:
            row.loaded += 1
    row.status = "; ".join(problems) if problems else "ok"
    row.ok = not problems
    return row


@dataclass
class Report:
    """The released checkpoints a target needs, under ``root``; ``failures``: --download's lines."""
    root: Path
    target: str
    bench: object
    rows: list
    failures: list = field(default_factory=list)

    @property
    def needed(self):
        return self.rows

    @property
    def ok(self):
        return all(r.ok for r in self.rows) and not self.failures

    def table(self):
        head = ["checkpoints", "location", "files", "model", "status"]
        body = [[r.id_set.label, os.path.relpath(r.dest, self.root), r.files, r.released.model or "(not loaded)",
                 r.status] for r in self.rows]
        widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
        line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
        return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body]) + "\n"

    def command(self, row):
        """The command that fetches ``row``'s archive."""
        where = "" if Path(self.root) == default_root(self.bench) else f" --checkpoints_dir {self.root}"
        return (f"python verify_data.py --benchmark {self.bench.name} --checkpoints --for {row.id_set.name} "
                f"--download{where}")

    def summary(self):
        bad = [r for r in self.rows if not r.ok]
        if not bad:
            lines = [f"OK: the released checkpoints '{self.target}' needs are in place under {self.root}:"]
            for r in self.rows:
                contents, model = r.released.archive.contents, r.released.model
                if contents:
                    runs = ", ".join(str(r.dest / c) for c in contents)
                    lines.append(f"  - {r.id_set.label}: --model {model} --checkpoint {runs}")
                else:
                    lines.append(f"  - {r.id_set.label}: {len(r.found)} checkpoint files under {r.dest} "
                                 f"({r.released.note})")
            return "\n".join(lines)
        lines = [f"NOT READY: {len(bad)} of the {len(self.rows)} released checkpoint sets needed by '{self.target}' "
                 f"are missing or incomplete under {self.root}:"]
        for r in bad:
            a = r.released.archive
            by_hand = (f"(or fetch {a.file} by hand from {a.source} and put it at {DL.file_path(a, self.root)}: "
                       f"that command then checks and unpacks it)")
            if r.present:
                todo = f"Move it aside (mv {r.dest} {r.dest}.old) and fetch them again with: {self.command(r)} {by_hand}."
            else:
                todo = f"Fetch them with: {self.command(r)} {by_hand}."
            lines.append(f"  - {r.id_set.label}: {r.status} (in {r.dest}). {todo}")
        return "\n".join(lines)


def check(root, bench, target="all", download=False, mirror=None, log=print, quiet=True, timeout=DL.TIMEOUT):
    """The released checkpoints of ``bench`` that ``target`` (one of its ID sets, or "all") needs, under
    ``root``; with ``download``, each that is missing is fetched, checked and unpacked first (one failure
    line each in ``Report.failures``; a folder that is there but not complete is left alone)."""
    root = Path(root)
    pairs = [(r, s) for s in bench_targets(bench, target) for r in bench.checkpoints_of(s)]
    if not pairs:
        raise UserError(f"--checkpoints: {bench.label} declares no released checkpoints for --for {target}.")
    rows = [inspect(r, s, root) for r, s in pairs]
    failures = []
    if download:
        for row in rows:
            if row.ok:
                continue
            archive = row.released.archive
            if row.present:
                failures.append(DL.exists_message(archive, root, f"is not complete ({row.status})"))
                continue
            try:
                DL.install(archive, root, mirror, log, quiet, timeout)
            except DL.DownloadFailed as e:
                failures.append(str(e))
        rows = [inspect(r, s, root) for r, s in pairs]
    return Report(root, target, bench, rows, failures)
