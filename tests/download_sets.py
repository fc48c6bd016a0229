"""Two data sets declared for the download tests (tests/test_download.py), each by one registration, as a
user's own module would (tests/extra_sets.py does the same for the verifier): importing this module
registers them.

- ``toyid``: an ID set, an ImageFolder tree per split at <root>/toyid/{train,test}/ that the tests lay
  out themselves (it has no archive: nothing to download);
- ``Pebbles``: an OOD set at <root>/pebbles/ whose archive ``PEB.tar.gz`` holds one top folder ``PEB/``
  (as LSUN.tar.gz holds LSUN/ for <root>/LSUN_C/) with two class folders of three PNGs. The archive's
  bytes are made here, the same in every process (fixed pixels, tar times and owners, gzip time), so
  that its declared md5 is theirs and a script started by a test knows the same set.

Its URL is a placeholder that no test contacts: the tests serve the archive from a local mirror.
"""
import gzip
import hashlib
import io
import tarfile

import numpy as np
from PIL import Image

from ood.data import IMAGE_FOLDER, IDSet, OODSet, register_id, register_ood

CLASSES = ("stones", "sand")
PER_CLASS = 3


def png(seed, size=8):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def tar_gz(members, top=""):
    """The bytes of a .tar.gz of ``members`` ({path: bytes}) under the folder ``top`` (none when "")."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        names = sorted(members)
        folders = sorted({"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)})
        for name in ([""] if top else []) + folders + names:
            path = "/".join(p for p in (top, name) if p)
            info = tarfile.TarInfo(path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 1_600_000_000, 0, 0, "", ""
            if name in members:
                info.size, info.mode = len(members[name]), 0o644
                tar.addfile(info, io.BytesIO(members[name]))
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


PEBBLES_FILES = {f"{c}/{i:05d}.png": png(10 * k + i) for k, c in enumerate(CLASSES) for i in range(PER_CLASS)}
PEBBLES_ARCHIVE = tar_gz(PEBBLES_FILES, top="PEB")

TOYID = register_id(IDSet(
    "toyid", 2, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "cifar", default_ood=("Pebbles",), label="Toy-ID",
    layout=IMAGE_FOLDER, folder="toyid", splits=(("train", 6), ("test", 4)),
    url="https://example.invalid/toyid"))

PEBBLES = register_ood(OODSet(
    "Pebbles", "pebbles", len(PEBBLES_FILES), url="https://example.invalid/PEB.tar.gz", archive="PEB.tar.gz",
    md5=hashlib.md5(PEBBLES_ARCHIVE).hexdigest(), note="extract it and rename the folder PEB/ to <root>/pebbles/"))
