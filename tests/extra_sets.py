"""Two data sets declared outside ood/, each by one registration: the proof (tests/test_extra_sets.py)
that a new set needs no other edit. Importing this module registers them, as a user's own module would
before a script builds its parser:

- ``kmnist``: Kuzushiji-MNIST, an ID set laid out as torchvision's KMNIST reads it (Fashion-MNIST's
  sibling: uncompressed idx files in <root>/KMNIST/raw/), scored by default against Glyphs;
- ``Glyphs``: an OOD set, an ImageFolder tree at <root>/glyphs/.

Glyphs is a test set: its URL is a placeholder and its md5 is that of ``GLYPHS_ARCHIVE``, the bytes the
tests lay in the root as its archive, so that the verifier's archive check can be seen to pass.
"""
import hashlib

import torchvision

from ood.data import IDSet, IdxFiles, OODSet, register_id, register_ood

GLYPHS_ARCHIVE = b"stand-in for glyphs.tar.gz"

KMNIST = register_id(IDSet(
    "kmnist", 10, (0.1918,), (0.3483,), "cifar", default_ood=("Glyphs",), channels=1, label="KMNIST",
    layout=IdxFiles("KMNIST"), splits=(("train", 60000), ("test", 10000)),
    url=torchvision.datasets.KMNIST.mirrors[0],
    hint="gunzip its four idx files (train-images-idx3-ubyte.gz, ...) there by hand"))

GLYPHS = register_ood(OODSet(
    "Glyphs", "glyphs", 24, url="https://example.invalid/glyphs.tar.gz", archive="glyphs.tar.gz",
    md5=hashlib.md5(GLYPHS_ARCHIVE).hexdigest(), note="extract it into <root>/ (it creates glyphs/)",
    aliases=("kuzushiji-ood",)))
