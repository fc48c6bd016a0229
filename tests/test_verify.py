"""verify_data.py / ood.data.verify on generated data roots: complete, partial and corrupted trees, the
targets, --expect, --download (torchvision's download replaced by a copy) and the usage errors.

The CIFAR pickles and the SVHN .mat are copies of the session data root, whose md5 sums the ``data``
fixture puts into torchvision's classes (as in the other data tests); the production expected counts
are overridden only through ``--expect`` / ``check(expected=...)``."""
import hashlib
import shutil
from dataclasses import replace

import pytest
import torchvision

import datagen
import verify_data
from ood import data as D
from ood.data import verify as V
from ood.errors import UserError

EXTRA_OOD = ("LSUN_resize", "Places", "Imagenet_resize", "SUN", "iNaturalist")  # not in the session root


def complete_cifar10_tree(src, dst):
    """CIFAR-10, SVHN and the nine OOD sets: the session root's files plus five small ImageFolder trees."""
    for folder in ("cifar-10-batches-py", "SVHN", "LSUN_C", "iSUN", "dtd"):
        shutil.copytree(src / folder, dst / folder)
    for i, folder in enumerate(EXTRA_OOD):
        datagen.write_image_folder(dst / folder, n=5, seed=40 + i, size=8)
    return dst


# counts of the generated tree, by --expect key
COUNTS = {"cifar10/train": 100, "cifar10/test": 40, "SVHN": 30, "LSUN_C": 12, "iSUN": 12, "Textures": 24,
          "LSUN_R": 5, "Places": 5, "TinyImageNet": 5, "SUN": 5, "iNaturalist": 5}
EXPECT = [f"--expect={k}={n}" for k, n in COUNTS.items()]


def rows_by_key(report):
    return {r.entry.key: r for r in report.rows}


def test_complete_tree_passes_and_reference_counts_stay(data, tmp_path, capsys):
    root = complete_cifar10_tree(data, tmp_path / "root")
    assert verify_data.main(["--dataset_path", str(root), "--for", "cifar10", *EXPECT]) == 0
    out = capsys.readouterr().out
    assert "OK: all 11 sets needed by 'cifar10'" in out
    assert "files ok (6)" in out  # torchvision's md5 list of CIFAR-10's train split: 5 batches + meta

    report = V.check(root, "cifar10", expected=COUNTS)
    rows = rows_by_key(report)
    assert report.ok and len(report.needed) == 11
    assert {k: rows[k].count for k in COUNTS} == COUNTS
    assert rows["Textures"].note == "2 class folders"
    assert not rows["cifar100/train"].needed and rows["cifar100/train"].status == "missing"

    # the production counts are untouched: the same tree is far too small for the paper
    assert verify_data.main(["--dataset_path", str(root), "--for", "cifar10"]) == 1
    out = capsys.readouterr().out
    assert "too few images (100 of 50,000)" in out and "too few images (30 of 26,032)" in out
    assert "too few images (24 of 5,640)" in out and "NOT READY: 11 of the 11 sets" in out


def test_partial_tree_missing_set_and_too_few_images(data, tmp_path, capsys):
    root = complete_cifar10_tree(data, tmp_path / "root")
    shutil.rmtree(root / "SUN")
    for p in sorted((root / "iSUN").rglob("*.png"))[:2]:
        p.unlink()
    (root / "cifar-10-batches-py" / "data_batch_5").unlink()
    assert verify_data.main(["--dataset_path", str(root), "--for", "cifar10", *EXPECT]) == 1
    out = capsys.readouterr().out
    rows = rows_by_key(V.check(root, "cifar10", expected=COUNTS))
    assert rows["SUN"].status == "missing" and rows["SUN"].count is None
    assert rows["iSUN"].status == "too few images (10 of 12)"
    assert rows["cifar10/train"].count == 80 and "missing data_batch_5" in rows["cifar10/train"].status
    assert rows["cifar10/test"].ok and rows["Places"].ok
    assert "NOT READY: 3 of the 11 sets" in out
    sun = D.OOD_SETS["sun"]
    assert f"{sun.url} (md5 {sun.md5})" in out and str(root / "SUN") in out  # where to get it, and where to put it


def test_corrupted_archive_and_files(data, tmp_path, monkeypatch, capsys):
    root = complete_cifar10_tree(data, tmp_path / "root")
    junk = b"not the LSUN archive"
    (root / "LSUN.tar.gz").write_bytes(junk)
    rows = rows_by_key(V.check(root, "cifar10", expected=COUNTS))
    assert rows["LSUN_C"].status == "md5 mismatch: LSUN.tar.gz" and rows["LSUN_C"].md5 == "LSUN.tar.gz MISMATCH"
    assert rows["LSUN_R"].md5 == "(no archive)" and rows["LSUN_R"].ok
    assert verify_data.main(["--dataset_path", str(root), "--for", "cifar10", *EXPECT]) == 1
    assert "NOT READY: 1 of the 11 sets" in capsys.readouterr().out

    # the same archive with a matching expected sum passes: it is the sum that is checked
    spec = D.OOD_SETS["lsun_c"]
    monkeypatch.setitem(D.OOD_SETS, "lsun_c", replace(spec, md5=hashlib.md5(junk).hexdigest()))
    assert verify_data.main(["--dataset_path", str(root), "--for", "cifar10", *EXPECT]) == 0
    capsys.readouterr()

    # a CIFAR batch with one byte more fails torchvision's md5: it is not read (a pickle can run code), so
    # not counted either
    with open(root / "cifar-10-batches-py" / "data_batch_2", "ab") as f:
        f.write(b"\0")
    svhn = root / "SVHN" / "test_32x32.mat"
    svhn.write_bytes(svhn.read_bytes()[:200])
    rows = rows_by_key(V.check(root, "cifar10", expected=COUNTS))
    assert rows["cifar10/train"].count == 80
    assert rows["cifar10/train"].status == "too few images (80 of 100); md5 mismatch: data_batch_2"
    assert rows["cifar10/train"].note == "not counted (md5 mismatch, not read): data_batch_2"
    assert rows["cifar10/train"].md5 == "MISMATCH in 1 of 6 files"
    assert rows["cifar10/test"].ok  # its own files are intact
    assert not rows["SVHN"].ok and "md5 mismatch: test_32x32.mat" in rows["SVHN"].status
    assert verify_data.main(["--dataset_path", str(root), "--for", "cifar10", *EXPECT]) == 1


def test_image_folder_counting(tmp_path):
    root = tmp_path / "set"
    datagen.write_image_folder(root, n=3, size=8, subdirs=("a", "b/deeper"))
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / "UPPER.PNG").write_bytes((root / "a" / "00000.png").read_bytes())
    (root / "loose.png").write_bytes((root / "a" / "00000.png").read_bytes())
    n, info, problem = D.count_image_folder(root)
    assert n == 7 and problem == ""  # a: 3 + UPPER.PNG, b/deeper: 3; loose.png and notes.txt not counted
    assert info == "2 class folders; 1 images directly in the folder, ignored (ImageFolder reads sub-folders only)"
    (root / "empty").mkdir()
    n, _, problem = D.count_image_folder(root)
    assert n == 7 and problem.startswith("1 class folder without images (empty)")
    assert D.count_image_folder(tmp_path / "nothing") == (None, "", "")


def test_imagenet_and_fashion_mnist_targets(tmp_path, capsys):
    root = tmp_path / "root"
    for split, n in (("train", 4), ("val", 2)):
        datagen.write_image_folder(root / "imagenet" / split, n=n, size=8, subdirs=("n01", "n02", "n03"))
    for i, folder in enumerate(("iNaturalist", "SUN", "Places", "dtd/images")):
        datagen.write_image_folder(root / folder, n=3, seed=i, size=8)
    datagen.write_fashion_mnist(root)
    expect = ["--expect", "imagenet/train=12", "--expect", "imagenet/val=6", "--expect", "iNaturalist=3",
              "--expect", "SUN=3", "--expect", "Places=3", "--expect", "Textures=3"]
    assert verify_data.main(["--dataset_path", str(root), "--for", "scripts/reproduce_imagenet.sh", *expect]) == 0
    out = capsys.readouterr().out
    assert "OK: all 6 sets needed by 'scripts/reproduce_imagenet.sh'" in out
    assert "3 class folders (ImageNet-1k has 1000)" in out
    rows = rows_by_key(V.check(root, "imagenet"))
    assert rows["imagenet/train"].status == "too few images (12 of 1,281,167)"
    assert not rows["cifar10/train"].needed and not rows["SVHN"].needed
    # Fashion-MNIST counted from the idx headers (60 / 20 images written by datagen)
    rows = rows_by_key(V.check(root, "fashionmnist", expected={"fashionmnist/train": 60, "fashionmnist/test": 20}))
    assert rows["fashionmnist/train"].count == 60 and rows["fashionmnist/test"].count == 20
    assert rows["fashionmnist/train"].ok and rows["fashionmnist/test"].ok


def test_targets_and_usage_errors(tmp_path, capsys):
    assert V.resolve_target("scripts/reproduce_cifar100.sh") == V.TARGETS["cifar100"]
    assert V.resolve_target("test_score_ood_detection_imagenet.py") == V.TARGETS["imagenet"]
    ids, oods = V.resolve_target("reproduce_cifar")
    assert ids == ("cifar10/train", "cifar10/test", "cifar100/train", "cifar100/test") and oods == D.CIFAR_OOD
    ids, oods = V.resolve_target("all")
    assert "imagenet/train" in ids and "fashionmnist/train" not in ids and len(oods) == 9
    with pytest.raises(UserError, match="unknown --for target"):
        V.resolve_target("svhn")
    root = tmp_path / "empty"
    root.mkdir()
    for argv in (["--for", "bogus"], ["--expect", "iSUN"], ["--expect", "nosuchset=3"], ["--ood", "NoSuchSet"],
                 ["--dataset_path", str(tmp_path / "absent")], ["--unknown-flag"]):
        args = argv if "--dataset_path" in argv else ["--dataset_path", str(root), *argv]
        with pytest.raises(SystemExit) as e:
            verify_data.main(args)
        assert e.value.code == 2, argv
    capsys.readouterr()
    assert verify_data.main(["--dataset_path", str(root), "--for", "cifar10", "--ood", "Textures"]) == 1
    out = capsys.readouterr().out
    assert "NOT READY: 3 of the 3 sets needed by 'cifar10'" in out  # --ood replaces the nine OOD sets


def test_download_fetches_torchvision_sets_and_explains_the_rest(data, tmp_path, monkeypatch, capsys):
    """--download calls torchvision's classes with download=True for the needed sets they can fetch
    (here replaced by a copy of the generated files), then checks again; a set with a public archive
    (LSUN_C) is fetched by ood.data.download, which cannot reach it here (every proxy at a closed local port:
    one line naming what to fetch by hand); for a set without one (ImageNet-1k) it prints the link and
    the target folder."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, dead)
    for var in ("no_proxy", "NO_PROXY", "RECLAG_DATA_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    calls = []

    class FakeCIFAR10(torchvision.datasets.CIFAR10):
        def __init__(self, root, train=True, download=False, **kw):
            calls.append(("CIFAR10", download))
            shutil.copytree(data / "cifar-10-batches-py", f"{root}/cifar-10-batches-py")

    class FakeSVHN(torchvision.datasets.SVHN):
        def __init__(self, root, split="train", download=False, **kw):
            calls.append(("SVHN", split, download))
            shutil.copytree(data / "SVHN", root)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    monkeypatch.setattr(torchvision.datasets, "SVHN", FakeSVHN)
    root = tmp_path / "new"
    rc = verify_data.main(["--dataset_path", str(root), "--for", "cifar10", "--ood", "SVHN", "LSUN_C", "--download",
                           "--expect", "cifar10/train=100", "--expect", "cifar10/test=40", "--expect", "SVHN=30"])
    out, err = capsys.readouterr()
    assert calls == [("CIFAR10", True), ("SVHN", "test", True)]  # one download per data set
    assert rc == 1  # LSUN_C cannot be fetched
    lsun = D.OOD_SETS["lsun_c"]
    assert f"download failed: LSUN.tar.gz: could not fetch {lsun.url}?dl=1 (" in err
    assert f"Fetch LSUN.tar.gz by hand from {lsun.url} (md5 {lsun.md5}) and put it at {root / 'LSUN.tar.gz'}" in err
    rc = verify_data.main(["--dataset_path", str(root), "--for", "imagenet", "--ood", "Textures", "--download",
                           "--mirror", dead])
    out = capsys.readouterr().out
    assert rc == 1 and "ImageNet-1k train: not downloadable automatically. Download ILSVRC2012 from " \
                       "https://image-net.org/download.php" in out
    assert f"Target folder: {root / 'imagenet' / 'train'}" in out
    rows = rows_by_key(V.check(root, "cifar10", ood=["SVHN", "LSUN_C"],
                               expected={"cifar10/train": 100, "cifar10/test": 40, "SVHN": 30}))
    assert rows["cifar10/train"].ok and rows["cifar10/test"].ok and rows["SVHN"].ok
    assert rows["LSUN_C"].status == "missing"
