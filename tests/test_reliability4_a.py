"""Reliability, round 4 (a): bad input a careful user can give, through the scripts.

- A data file is never unpickled before its checksum is verified: a CIFAR batch that would run code when
  unpickled is refused by md5 in verify_data.py and in the training script, and never runs; torchvision's
  pretrained weights found in torch's hub cache are read with torch's restricted unpickler.
- OpenOOD image lists: an ID list's labels must be classes of the ID set (an OOD list's may be anything),
  a list must be UTF-8 (a byte order mark is read past), and the verifier counts the listed images
  present; the scripts and the verifier apply the same rule and name the file and the line.
- The scoring and generating scripts name every missing OOD set in their one line, as the verifier does.
"""
import os
import pickle
import re
import shutil

import pytest
import torch
import torchvision

import datagen
from checks import exits_2
import generate_stored_pattern
import models
import test_score_ood_detection
import train_model
import verify_data
from ood import data as D
from ood.data import verify as V
from ood.errors import UserError
from ood.data.openood import ImageList, ListRule, read_image_list

CIFAR_TINY = ["--dataset", "cifar10", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
              "--resize_val", "16", "--batch_size", "25", "--workers", "0", "--device", "cpu", "--amp", "off",
              "--quiet"]
FMNIST = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
          "--batch_size", "20", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]


class _Creates:
    """Unpickled, it creates the file ``path`` (builtins.open in write mode): the harmless stand-in of a
    pickle that runs code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def malicious_pickle(marker):
    """A pickle shaped like a CIFAR batch that creates ``marker`` when unpickled."""
    return pickle.dumps({"labels": [0, 1], "data": _Creates(marker), "filenames": ["a.png", "b.png"]})


# ----------------------------------------------------------------------------------------------------
# 1. No data file is unpickled before its checksum is verified
# ----------------------------------------------------------------------------------------------------
def test_a_malicious_cifar_batch_is_never_unpickled(data, workdir, capsys):
    """verify_data.py counts CIFAR images from the batches' label lists: only of files whose md5 is
    torchvision's, and without running anything; the training script's data check (torchvision's, which
    hashes before it unpickles) names the file that fails it."""
    root, marker = workdir / "root", workdir / "pwned"
    shutil.copytree(data / "cifar-10-batches-py", root / "cifar-10-batches-py")
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(malicious_pickle(marker))
    rc = verify_data.main(["--dataset_path", str(root), "--for", "cifar10", "--ood", "SVHN",
                           "--expect", "cifar10/train=100", "--expect", "cifar10/test=40"])
    out = capsys.readouterr().out
    assert not marker.exists()
    assert rc == 1
    train = next(line for line in out.splitlines() if line.startswith("CIFAR-10 train"))
    assert "md5 mismatch: data_batch_1" in train and "not counted (md5 mismatch, not read): data_batch_1" in train
    assert "too few images (80 of 100)" in train  # the four intact batches are counted
    assert "CIFAR-10 train: too few images (80 of 100); md5 mismatch: data_batch_1" in out  # the summary

    exits_2(train_model.main, CIFAR_TINY + ["--dataset_path", str(root), "--epochs", "1"], capsys,
            "md5 mismatch (not read): data_batch_1", str(root / "cifar-10-batches-py"))
    assert not marker.exists()
    assert not (workdir / "checkpoints").exists()


def test_cached_torchvision_weights_are_read_weights_only(tmp_path, monkeypatch):
    """torchvision reads its weights with torch.load(weights_only=False) and checks a file's hash only when
    it downloads it: a file copied into torch's hub cache (as an offline user is told to) is read with
    torch's restricted unpickler instead, and a file that would run code is refused in one line."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", raising=False)
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = tmp_path / "hub" / "checkpoints" / os.path.basename(weights.url)
    cached.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    cached.write_bytes(pickle.dumps({"fc.weight": _Creates(marker)}, protocol=2))
    with pytest.raises(UserError) as e:
        models.build_model("tv:resnet18", 1000, pretrained=True)
    assert not marker.exists()
    assert str(cached) in str(e.value) and "not a plain weights file" in str(e.value)
    assert len(str(e.value).splitlines()) == 1
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # the process's environment is as it was
    # a plain state dict there is read as before
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, cached)
    model = models.build_model("tv:resnet18", 1000, pretrained=True)
    assert torch.equal(model.fc.weight, state["fc.weight"])


# ----------------------------------------------------------------------------------------------------
# 3. OpenOOD image lists: labels, encodings and counts, checked where a list is read and verified
# ----------------------------------------------------------------------------------------------------
OPENOOD = ["--benchmark", "openood", "--dataset", "cifar10", "--model", "openood_resnet18_32x32", "--workers", "0",
           "--device", "cpu", "--amp", "off", "--quiet", "--batch_size", "16"]


@pytest.fixture
def openood(tmp_path, monkeypatch):
    """OpenOOD's layout in small for CIFAR-10 (8 train, 4 test, 4 val ID images, 2 per OOD set), a seeded
    openood_resnet18_32x32 state dict, and tmp_path as the working directory; returns (root, checkpoint)."""
    datagen.write_openood(tmp_path / "data", "cifar10", n_id=(8, 4, 4), n_ood=2)
    torch.manual_seed(0)
    torch.save(models.build_model("openood_resnet18_32x32", 10).state_dict(), tmp_path / "c10.ckpt")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data", tmp_path / "c10.ckpt"


def id_list(root, split="test"):
    return root / "benchmark_imglist" / "cifar10" / f"{split}_cifar10.txt"


def verify_openood(root, capsys):
    """(exit status, the summary's lines naming a set) of verify_data.py --benchmark openood --for cifar10."""
    rc = verify_data.main(["--dataset_path", str(root), "--benchmark", "openood", "--for", "cifar10"])
    out = capsys.readouterr().out
    return rc, out


def with_label(path, number, label):
    """Rewrite line ``number`` (1-based) of list ``path`` with ``label`` after its image path (None: none)."""
    lines = path.read_text().splitlines()
    name = lines[number - 1].split(" ", 1)[0]
    lines[number - 1] = name if label is None else f"{name} {label}"
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("label, says", [(None, "no label"), ("10", "label 10 is out of range"),
                                         ("-5", "label -5 is out of range"), ("0.0", "label '0.0' is not an integer"),
                                         ('{"label": 0}', """label '{"label": 0}' is not an integer""")])
def test_a_bad_id_label_is_refused_by_the_verifier_and_the_scripts(openood, capsys, label, says):
    """An ID list's label is the image's class: a line without one, or one that is not an integer class of
    the ID set, is named (file and line) by the verifier, which reports the root as not ready, and stops
    the scoring script before any extraction (it used to be read as -1 or as the bogus class, and the ID
    accuracy came out silently wrong)."""
    root, ckpt = openood
    with_label(id_list(root), 2, label)
    rc, out = verify_openood(root, capsys)
    where = f"image list {id_list(root)}, line 2: {says}"
    assert rc == 1 and where in out and "NOT READY: 1 of the 10 sets" in out, out
    exits_2(test_score_ood_detection.main, OPENOOD + ["--checkpoint", str(ckpt), "--dataset_path", str(root),
                                                      "--score", "MSP", "--results_dir", "r"], capsys, where)
    assert not (root.parent / "r").exists() and not (root.parent / "stored_pattern").exists()


def test_a_training_label_out_of_range_is_refused_before_fitting(openood, capsys):
    """generate_stored_pattern.py fits class-conditional patterns on the ID training list: a label that is
    not a class stops it before any extraction, naming the list and the line."""
    root, ckpt = openood
    with_label(id_list(root, "train"), 5, "10")
    exits_2(generate_stored_pattern.main, OPENOOD + ["--checkpoint", str(ckpt), "--dataset_path", str(root),
                                                     "--score", "HE"], capsys,
            f"image list {id_list(root, 'train')}, line 5: label 10 is out of range", "0..9")
    assert not (root.parent / "stored_pattern").exists()


def test_ood_lists_take_any_label(openood, capsys):
    """An OOD list's label is not used (OpenOOD writes -1, or a dict of extras): none, or any text, is fine."""
    root, _ = openood
    for name, label in (("test_svhn.txt", None), ("test_mnist.txt", '{"sc_label": 3}'), ("test_tin.txt", "0.5")):
        with_label(root / "benchmark_imglist" / "cifar10" / name, 1, label)
    rc, out = verify_openood(root, capsys)
    assert rc == 0, out


def test_encodings_of_an_image_list(openood, capsys):
    """A UTF-8 byte order mark (some editors write one) is read past, so the first image is found; bytes
    that are not UTF-8, or a list in UTF-16, are one clear line naming the list (and the line) in the
    verifier and in the scripts, instead of a traceback."""
    root, ckpt = openood
    path = id_list(root)
    text = path.read_bytes()
    path.write_bytes(b"\xef\xbb\xbf" + text)
    rc, out = verify_openood(root, capsys)
    assert rc == 0, out
    first = text.split(b" ", 1)[0].decode()
    assert ImageList("images_classic").read(D.get_id_set("cifar10", None, "openood"), root, "test")[0][0] == \
        str(root / "images_classic" / first)

    lines = text.split(b"\n")
    lines[2] = lines[2].replace(b".jpg", b"\xe9.jpg")  # latin-1 bytes
    path.write_bytes(b"\n".join(lines))
    rc, out = verify_openood(root, capsys)
    assert rc == 1 and f"image list {path}, line 3: byte 0xe9 at column" in out and "is not UTF-8" in out, out
    args = OPENOOD + ["--checkpoint", str(ckpt), "--dataset_path", str(root), "--score", "MSP", "--results_dir", "r"]
    exits_2(test_score_ood_detection.main, args, capsys, f"image list {path}, line 3: byte 0xe9")

    path.write_bytes(text.decode().encode("utf-16"))
    rc, out = verify_openood(root, capsys)
    assert rc == 1 and f"image list {path} is UTF-16 text" in out, out
    exits_2(test_score_ood_detection.main, args, capsys, f"image list {path} is UTF-16 text")


@pytest.mark.parametrize("data, read", [
    (b"a/x.png 3\r\nb/y.png +4\r\n\n", [("a/x.png", 3), ("b/y.png", 4)]),  # CRLF, a sign, a blank line
    (b"a/x.png 3\n\xef\xbb\xbfb/y.png 4\n", [("a/x.png", 3), ("b/y.png", 4)]),  # two lists concatenated
    (b"a/x.png 1_0\n", "line 1: label '1_0' is not an integer"),  # int() would read 10
    (b"a/x.png 3\nb/y.png\t4\n", "line 2: holds a tab"),
    ("a/x.png 3\n".encode("utf-16-le"), "line 1: holds NUL bytes (is the list UTF-16"),
    (b"a/x.png 3\n/etc/y.png 4\nc/z.png 12\n", "line 2: '/etc/y.png' must be a path relative to"),
    (b"a/x.png 3\nb/y.png 12\nc/z.png x\n", "line 2: label 12 is out of range (an ID list gives each image its "
                                          "class after a space, an integer in 0..9) (1 more bad line)."),
])
def test_image_list_lines(tmp_path, data, read):
    """Lines as OpenOOD's lists and an editor may leave them, read or refused by the one reader; a refusal
    names the first bad line (and counts the others)."""
    path = tmp_path / "list.txt"
    path.write_bytes(data)
    rule = ListRule(classes=10)
    if isinstance(read, list):
        assert read_image_list(path, tmp_path, rule) == [(str(tmp_path / p), y) for p, y in read]
    else:
        with pytest.raises(UserError, match=re.escape(f"image list {path}, {read}")):
            read_image_list(path, tmp_path, rule)


def test_the_verifier_counts_the_listed_images_present(openood, capsys):
    """A partial download (images missing that a list names) is too few images: the images column is the
    number present, the notes the number the list names, and the status how many are missing."""
    root, _ = openood
    names = [line.split(" ", 1)[0] for line in id_list(root).read_text().splitlines()]
    for name in names[:3]:
        (root / "images_classic" / name).unlink()
    report = V.check(root, "cifar10", benchmark="openood")
    row = next(r for r in report.rows if r.entry.key == "cifar10/test")
    assert (row.count, row.ok) == (1, False)
    assert row.note == "4 listed, under images_classic/"
    assert row.status == f"3 of the 4 listed images missing (e.g. images_classic/{names[0]})"
    rc, out = verify_openood(root, capsys)
    assert rc == 1 and "NOT READY: 1 of the 10 sets" in out


# ----------------------------------------------------------------------------------------------------
# 9a. The scripts name every missing OOD set at once
# ----------------------------------------------------------------------------------------------------
def test_every_missing_ood_set_is_named_in_one_line(fmnist_run, capsys):
    run_dir = fmnist_run
    """A user who fixes the one missing set a run names and runs again must not learn of the next one
    then: the scoring and generating scripts name all of them in their one line, before any extraction."""
    args = FMNIST + ["--dataset_path", str(run_dir / "data"), "--ood", "iSUN", "LSUN_C", "Places",
                     f"Mine={run_dir / 'nowhere'}"]
    for script in (test_score_ood_detection, generate_stored_pattern):
        line = exits_2(script.main, args + ["--score", "MSP" if script is test_score_ood_detection else "HE"],
                       capsys, "3 image sets this run needs are missing or unreadable (LSUN_C, Places, Mine)",
                       "OOD set LSUN_C was not found", str(run_dir / "data" / "Places"), str(run_dir / "nowhere"),
                       D.OOD_SETS["places"].md5)
        assert line.count("Pass --dataset_path for another data root") == 1  # said once, at the end
    assert not list(run_dir.glob("stored_pattern/**/features/*.pt")) and not (run_dir / "results").exists()
