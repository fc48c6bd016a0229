"""What a step of a launched job read, so that the launcher's marker of a finished step (ood.runtime.launch) is
keyed on it and not on the command alone.

The launcher runs each step with the environment variable ``OOD_STEP_INPUTS`` naming a file; while the
step runs, the scripts append to it, one JSON line each, what they read: the images of each image set
(the files the feature caches are keyed on, ood.data.sources), the checkpoint, the results files the
aggregation reads, and the project's code the script ran. Once the step has succeeded, the launcher
fingerprints each of them (``fingerprint``) into the step's marker: files and folders by name, size
and modification time, as the feature caches key images, a checkpoint by the sha256 of its contents, as
they key it. A later run skips the step only when its command and these fingerprints are unchanged.

Without the variable (a script run by hand) nothing is written. Standard library only: the launcher's
jobs import this module, and so does ood.errors, which every script imports.
"""
import hashlib
import json
import os
import site
import sys
from pathlib import Path

ENV = "OOD_STEP_INPUTS"
CODE = "the project's code"


def note(what, files, root=None, contents=False, folders=True):
    """Record that this step read ``files`` (``what``: how a message names them, e.g. "the images of
    image set iSUN"). With ``folders``, their folders are recorded too, so that an image added to or
    removed from a set's folder is noticed: each file's folder and, with ``root`` (an ImageFolder tree's
    top), every folder from there up to ``root``. ``contents``: fingerprint the files' contents (a
    checkpoint), not only their names, sizes and modification times. Only the first process of a
    torchrun writes."""
    target = os.environ.get(ENV)
    if not target or os.environ.get("RANK", "0") != "0":
        return
    files = [os.path.abspath(f) for f in files]
    seen = {}
    top = os.path.abspath(root) if root is not None else None
    for f in files if folders else ():
        d = os.path.dirname(f)
        seen[d] = None
        while top is not None and d != top and d.startswith(top + os.sep):
            d = os.path.dirname(d)
            seen[d] = None
    entry = {"what": what, "files": files, "folders": list(seen), "contents": contents}
    with open(target, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def note_code():
    """Record the source files of the modules this script imported that are not installed packages or
    the standard library: this project's code and any plug-in (``--score package.module:Class``). Not
    their folders: the repository's top folder also receives the outputs of a run started there."""
    if not os.environ.get(ENV):
        return
    installed = tuple(os.path.abspath(p) + os.sep for p in {sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                             *site.getsitepackages(), site.getusersitepackages()})
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)  # a name only, for the modules torch makes up (torch.classes)
        if isinstance(path, str) and path.endswith(".py") and os.path.isabs(path) and not path.startswith(installed) \
                and os.path.isfile(path):
            files.add(path)
    note(CODE, sorted(files), folders=False)


def read_notes(path):
    """The entries a step recorded in ``path``, each once, in the order first recorded."""
    entries = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        if line.strip():
            e = json.loads(line)
            entries.setdefault((e["what"], tuple(e["files"]), e["contents"]), e)
    return list(entries.values())


def stat_digest(paths):
    """(sha256 of the paths' names, sizes and modification times, total bytes, the empty ones); an
    OSError (its ``filename`` set) when one cannot be read. The feature caches' key of an image set
    (ood.data.sources.source_digest) and the launcher's fingerprint of what a step read."""
    h = hashlib.sha256()
    total, empty = 0, []
    for f in paths:
        st = os.stat(f)
        if st.st_size == 0:
            empty.append(f)
        total += st.st_size
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest(), total, empty


def _contents(path, chunk=1 << 22):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(entry):
    """The fingerprint of a recorded entry as its files are now; raises OSError (``filename``: the
    first file or folder that cannot be read)."""
    if entry["contents"]:
        return hashlib.sha256("".join(f"{f}\0{_contents(f)}\n" for f in entry["files"]).encode()).hexdigest()
    # a folder's size and modification time change when an entry is added, removed or renamed in it
    return stat_digest([*entry["files"], *entry["folders"]])[0]
