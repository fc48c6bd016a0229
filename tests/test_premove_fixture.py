"""Caches, stored patterns and checkpoints written before ood/ moved into sub-packages still load.

tests/fixtures/premove/ holds what train_model.py, generate_stored_pattern.py and
test_score_ood_detection.py wrote at commit f89d43b (its README.md says how): the checkpoint, the feature
caches, the head, the stored patterns of ReAct, SHE and RecLag, and the results.json of five scores. Here
the same commands run on a copy: they must use every cache as it is (no image set extracted again, no
pattern fitted again, no file rewritten) and give the same metrics; and the old checkpoint must load
into the backbone and give the features it gave then.

The caches key an image set on its files' paths (as given: relative to the working directory here),
sizes and modification times, so the copy recreates exactly those: the Fashion-MNIST idx files from
tests/datagen.py (their sizes are fixed by the image counts), the iSUN PNGs from the fixture (a PNG's
size depends on the zlib that wrote it), every modification time from data_files.json.
"""
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import datagen
import generate_stored_pattern
import test_score_ood_detection

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "premove"
MODEL = "tiny_models:no_norm_net"
COMMON = ["--dataset", "fashionmnist", "--model", MODEL, "--dataset_path", "data", "--batch_size", "5",
          "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]
RECLAG = ["--reclag_hidden", "2", "--reclag_batch_size", "2", "--reclag_epochs", "20"]
SCORES = ["MSP", "Energy", "ReAct", "SHE", "RecLag"]
RUN = COMMON + RECLAG + ["--ood", "iSUN", "--score"] + SCORES  # generate_stored_pattern.py's and scoring's
STORE = Path("stored_pattern/fashionmnist/tiny_models_no_norm_net")
CHECKPOINT = Path("checkpoints/fashionmnist/tiny_models_no_norm_net.pt")
RESULTS = Path("results/fashionmnist/tiny_models_no_norm_net/results.json")
METRICS = ("fpr95", "auroc", "aupr_in", "aupr_out", "id_accuracy", "fpr95_ci", "auroc_ci", "aupr_in_ci",
           "aupr_out_ci", "auroc_delong_ci")


@pytest.fixture
def premove(tmp_path, monkeypatch):
    """A working directory as the fixture's run left it: data (same paths, sizes and mtimes),
    checkpoints/ and stored_pattern/, no results/."""
    files = json.loads((FIXTURE / "data_files.json").read_text())
    datagen.write_fashion_mnist(tmp_path / "data", n_train=60, n_test=20, seed=3)
    shutil.copytree(FIXTURE / "data", tmp_path / "data", dirs_exist_ok=True)
    shutil.copytree(FIXTURE / "checkpoints", tmp_path / "checkpoints")
    shutil.copytree(FIXTURE / "stored_pattern", tmp_path / "stored_pattern")
    listed = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert listed == sorted(files)
    for rel, (size, mtime_ns) in files.items():
        assert (tmp_path / rel).stat().st_size == size, f"{rel}: not the size the fixture's caches are keyed on"
        os.utime(tmp_path / rel, ns=(mtime_ns, mtime_ns))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _state(folder):
    """{relative path: (sha256, mtime_ns, inode)} of every file under ``folder``: a rewrite, even of the
    same bytes, changes the mtime (and the inode: files are written to a temporary name and renamed)."""
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns,
                                                p.stat().st_ino)
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _by_key(rows):
    return {(r["score"], r["ood_dataset"]): r for r in rows}


def test_premove_caches_patterns_and_checkpoint_still_load(premove):
    before = _state(premove / "stored_pattern")
    checkpoint_before = _state(premove / "checkpoints")
    assert {k.split("/")[-1].split("-")[0] for k in before if "/patterns/" in k} == {"react", "she", "reclag"}

    generate_stored_pattern.main(RUN)
    test_score_ood_detection.main(RUN)

    # (a) nothing extracted, fitted or written again: every cache file as it was, none added
    assert _state(premove / "stored_pattern") == before
    assert _state(premove / "checkpoints") == checkpoint_before

    # (c) the same rows, with the same metrics, as the old code's results.json
    old = _by_key(json.loads((FIXTURE / "results.json").read_text())["rows"])
    new = _by_key(json.loads(RESULTS.read_text())["rows"])
    assert set(new) == set(old) == {(s, "iSUN") for s in SCORES}
    for key, row in new.items():
        was = old[key]
        for m in METRICS:
            assert row[m] == pytest.approx(was[m], rel=1e-6, abs=1e-9), (key, m)
        for field in ("n_id", "n_ood", "input_size", "num_classes", "settings", "id_features", "checkpoint",
                      "train_precision", "train_environment", "preprocessing"):
            assert row[field] == was[field], (key, field)

    # (b) the checkpoint: the rows name it by its sha256 and took its training precision and environment
    # from its meta (checked above against the old rows); here it is also loaded into the backbone, which
    # extracts into a fresh folder the features and head the fixture's caches hold
    sha = hashlib.sha256(CHECKPOINT.read_bytes()).hexdigest()
    assert {r["checkpoint"] for r in new.values()} == {sha}
    generate_stored_pattern.main(COMMON + ["--ood", "iSUN", "--score", "MSP", "--stored_pattern_dir", "fresh"])
    fresh = Path("fresh") / STORE.relative_to("stored_pattern")
    head, old_head = (torch.load(d / "head.pt", weights_only=True) for d in (fresh, STORE))
    ckpt = torch.load(CHECKPOINT, weights_only=True)
    torch.testing.assert_close(head["weight"], ckpt["model"]["fc.weight"])
    torch.testing.assert_close(head["weight"], old_head["weight"])
    torch.testing.assert_close(head["bias"], old_head["bias"])
    # iSUN's images are the fixture's own files (the idx files are regenerated: same sizes, and their
    # pixels too as long as tests/datagen.py and numpy's generator do not change)
    got, was = (torch.load(d / "features/iSUN.pt", weights_only=True) for d in (fresh, STORE))
    assert got["fingerprint"] == was["fingerprint"]  # the key the old cache was written under, recomputed
    for k in ("features", "logits"):
        torch.testing.assert_close(got[k], was[k], rtol=1e-4, atol=1e-5)
    assert got["labels"].tolist() == was["labels"].tolist()
