"""One run's outputs land in a folder as a unit: all of them, or none.

A results folder also holds earlier results and, often, the user's own files; a run is stopped by a
full disk, a permission error, Ctrl-C or a kill at any moment. Writing each file atomically is not
enough: a run stopped between two files leaves tables of the new run beside a ``results.json`` of the
old one, or plots of one checkpoint beside results of another. Hence a small transaction:

1. Every file of the run is written into a hidden staging folder inside the target folder
   (``.staging-<pid>-<random>/``; on the same file system, so that placing a file later is a rename,
   which needs no space). A full disk or any other error while staging changes nothing visible: the
   staging folder is removed and the error reported.
2. A plan (which of the tool's earlier files go to ``previous/<time>/``, which staged files go where)
   is written into the staging folder by one atomic rename. That rename is the commit point; before it
   the targets are checked to be writable, so that the plan can be carried out.
3. The plan is carried out with moves that may be repeated (a file already moved is skipped), and the
   staging folder is removed.

Every writer holds the folder's lock for its whole transaction and, holding it, first finishes what an
earlier writer left: a staging folder with a plan is rolled forward (the plan carried out), one without
is removed. Because of the lock, a staging folder seen by its holder belongs to a writer that was
killed or interrupted, whatever its pid (recorded in the name for the messages) has become since.

Only the tool's own files are ever archived: the caller declares them once, as patterns relative to the
folder (``ood.reporting.results.RESULTS_FILES``, ``SWEEP_FILES``), the archive is every existing file matching
them, and a staged file outside them stops the commit (a bug), so that what a run writes and what a
later run moves aside cannot drift apart. The user's files and folders, and the lock, never move.
"""
import contextlib
import errno
import fnmatch
import json
import os
import shutil
import tempfile
import time
from pathlib import Path, PurePosixPath

from ood.errors import UserError
from ood.io import DiskFull, atomic_path, check_writable_dir, locked

ARCHIVE = "previous"
STAGING = ".staging-"
PLAN = ".plan.json"


def matches(rel, patterns):
    """Whether the relative path ``rel`` matches one of ``patterns`` part by part (``*`` never crosses a
    ``/``, so ``sweep_*.png`` does not match ``mine/sweep_x.png``)."""
    parts = PurePosixPath(rel).parts
    for p in patterns:
        q = PurePosixPath(p).parts
        if len(q) == len(parts) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, q)):
            return True
    return False


def own_files(folder, patterns):
    """The tool's files now in ``folder``: the relative paths of plain files matching ``patterns``."""
    folder = Path(folder)
    found = {f.relative_to(folder).as_posix() for p in patterns for f in folder.glob(p) if f.is_file()}
    return sorted(r for r in found if matches(r, patterns))


def check_targets(folder, patterns, flag):
    """Fail early (before any long work) when a run could not write its files into ``folder``: the
    folder, each subfolder its files go to (``plots/``) and the archive must be writable folders."""
    folder = Path(folder)
    subs = {PurePosixPath(p).parent for p in patterns} - {PurePosixPath(".")}
    for d in [folder, *(folder / s for s in sorted(subs)), folder / ARCHIVE]:
        check_writable_dir(d, flag)


class Transaction:
    """The staging folder of one run; see ``transaction``."""

    def __init__(self, folder, patterns, flag):
        self.folder, self.patterns, self.flag = Path(folder), tuple(patterns), flag
        self.archived, self.dest, self.committed = [], None, False
        try:
            self.stage = Path(tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}-", dir=self.folder))
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise DiskFull(f"the disk is full: could not write into {self.folder}. Free some space and "
                               f"run again.") from None
            raise UserError(f"cannot write into {self.folder} ({e.strerror}); {flag} must be a writable "
                            f"folder.") from None

    def archive(self):
        """Plan to move the tool's files now in the folder to previous/<date-time>/ at the commit; the
        folder they will be in, or None when there are none."""
        self.archived = own_files(self.folder, self.patterns)
        if not self.archived:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name, n = stamp, 1
        while (self.folder / ARCHIVE / name).exists():
            name, n = f"{stamp}_{n}", n + 1
        self.dest = f"{ARCHIVE}/{name}"
        return self.folder / self.dest

    def will_remain(self, rel):
        """Whether ``rel`` (a file or folder of the folder) still exists after the commit's archiving:
        a folder does when it holds anything that is not archived (e.g. the user's own plot)."""
        p = self.folder / rel
        if not p.exists():
            return False
        if not p.is_dir():
            return rel not in self.archived
        return any(f.relative_to(self.folder).as_posix() not in self.archived for f in p.iterdir())

    def commit(self):
        """Check that the plan can be carried out, write it (the commit point), carry it out."""
        staged = sorted(f.relative_to(self.stage).as_posix() for f in self.stage.rglob("*")
                        if f.is_file() and f.name != PLAN)
        stray = [r for r in staged if not matches(r, self.patterns)]
        if stray:
            raise RuntimeError(f"{', '.join(stray)}: written but not declared among the tool's files "
                               f"{self.patterns}; a later run would not archive them.")
        plan = {"pid": os.getpid(), "archive_to": self.dest, "archive": self.archived, "files": staged}
        dirs = {(self.folder / r).parent for r in self.archived + staged}
        if self.dest:
            dirs.add(self.folder / self.dest)
        for d in sorted(dirs):  # the plan must be possible before it is committed
            check_writable_dir(d, self.flag)
        for r in staged:
            if (self.folder / r).is_dir():
                raise UserError(f"cannot write {self.folder / r}: a folder of that name is in the way; move it "
                                f"away and run again.")
        with atomic_path(self.stage / PLAN) as tmp:
            Path(tmp).write_text(json.dumps(plan, indent=1))
        self.committed = True
        apply(self.folder, self.stage, plan)


def _archive(folder, plan):
    """Move the tool's earlier files to the plan's archive (a file already there is not moved again) and
    remove the subfolders this empties (``plots/``), so that outputs that follow a folder's content
    (plots/) follow the new run only."""
    if not plan["archive"]:
        return
    dest = folder / plan["archive_to"]
    for rel in plan["archive"]:
        src, dst = folder / rel, dest / rel
        if src.is_file() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    for sub in sorted({(folder / r).parent for r in plan["archive"]} - {folder}, reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()  # only when empty: the user's files keep it


def _place(folder, stage, plan):
    """Move the staged files into place (a file already placed is gone from the staging folder)."""
    for rel in plan["files"]:
        src, dst = stage / rel, folder / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)


def apply(folder, stage, plan):
    """Carry out a committed plan; repeating it after an interruption finishes it."""
    folder = Path(folder)
    try:
        _archive(folder, plan)
        _place(folder, stage, plan)
        shutil.rmtree(stage)
    except OSError as e:
        raise UserError(f"could not finish writing into {folder} ({e.strerror}: {e.filename}); what is "
                        f"left is finished by the next run into it.") from None


def recover(folder, log=print):
    """Finish or undo what an interrupted writer left in ``folder``; call it holding the folder's lock."""
    folder = Path(folder)
    stages = []
    with contextlib.suppress(OSError):
        stages = [s for s in folder.iterdir() if s.name.startswith(STAGING) and s.is_dir()]
    for stage in sorted(stages, key=lambda s: s.stat().st_mtime):
        try:
            plan = json.loads((stage / PLAN).read_text())
        except (OSError, ValueError):
            shutil.rmtree(stage, ignore_errors=True)  # never committed: nothing visible changed
            continue
        apply(folder, stage, plan)
        log(f"note: {folder}: finished writing the outputs of an interrupted earlier run (pid {plan['pid']}).")


@contextlib.contextmanager
def transaction(folder, patterns, flag="--results_dir", log=print):
    """Hold ``folder``'s lock, finish what an interrupted writer left, and yield a Transaction: write
    every output into ``t.stage`` (same relative paths as in the folder), call ``t.archive()`` to move
    the tool's earlier files aside. Leaving the block normally commits; an error before the commit
    point leaves the folder as it was."""
    folder = Path(folder)
    with locked(folder):
        recover(folder, log)
        t = Transaction(folder, patterns, flag)
        try:
            yield t
            t.commit()
        except BaseException as e:
            if t.committed:
                raise  # the plan is complete: the next writer rolls it forward
            shutil.rmtree(t.stage, ignore_errors=True)
            if isinstance(e, DiskFull) or (isinstance(e, OSError) and e.errno == errno.ENOSPC):
                raise DiskFull(f"the disk is full: could not write the outputs into {folder}; nothing in it "
                               f"was changed. Free some space and run again.") from None
            raise
