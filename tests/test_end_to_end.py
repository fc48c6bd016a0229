"""The three scripts end to end on generated data in the real formats, with a tiny WRN."""
import json

import numpy as np
import pytest
import torch

import generate_stored_pattern
import scores
import test_score_ood_detection
import train_model

TINY = ["--dataset", "cifar10", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
        "--resize_val", "16", "--batch_size", "32", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet"]
# a few epochs without augmentation: enough for every class to have correctly classified images
QUICK_TRAIN = ["--epochs", "3", "--lr", "0.05", "--augment", "none"]
OODS = ["SVHN", "LSUN_C", "iSUN", "Textures"]


def test_train_generate_score(data, workdir):
    common = TINY + ["--dataset_path", str(data)]
    log = train_model.main(common + QUICK_TRAIN)
    assert len(log) == 3 and (workdir / "checkpoints/cifar10/wrn.log.csv").exists()
    ckpt = torch.load(workdir / "checkpoints/cifar10/wrn.pt", weights_only=True)
    assert ckpt["finished"] and ckpt["epoch"] == 3 and ckpt["meta"]["input_size"] == 16

    generate_stored_pattern.main(common + ["--ood"] + OODS)
    store = workdir / "stored_pattern/cifar10/wrn"
    train = torch.load(store / "features/train.pt", weights_only=True)
    assert train["features"].shape == (100, 64) and train["logits"].shape == (100, 10)
    assert (train["features"] >= 0).all()  # phi after the last ReLU
    assert train["labels"].tolist() == _cifar_labels(data)
    for name in ["test", "SVHN", "LSUN_C", "iSUN", "Textures"]:
        f = torch.load(store / f"features/{name}.pt", weights_only=True)
        assert set(f) >= {"features", "logits", "labels", "fingerprint"}
    fitted = {p.name.split("-")[0] for p in (store / "patterns").glob("*.pt")}
    assert fitted == {c.key() for c in scores.registered() if c.needs_fit()}  # default: every score that fits

    rows = test_score_ood_detection.main(common + ["--score", "all", "--ood"] + OODS +
                                         ["--save_scores", "--plot"])
    out = workdir / "results/cifar10/wrn"
    got = json.loads((out / "results.json").read_text())["rows"]
    paper = [c.name for c in scores.paper_scores()]
    assert len(got) == len(paper) * 4 == len(rows)
    keys = {"id_dataset", "model", "score", "ood_dataset", "protocol", "repeats", "seed", "n_id", "n_ood",
            "auroc", "aupr_in", "aupr_out", "fpr95", "auroc_std", "fpr95_std", "fpr_variant", "input_size",
            "feature_precision", "train_precision", "environment", "train_environment", "subset", "recipe", "settings",
            "checkpoint", "id_features", "label", "preprocessing", "bootstrap", "auroc_ci_mc_error",
            "auroc_delong_se", "auroc_delong_ci", "id_accuracy", "num_classes"} | {f"{m}_{k}" for m in ("fpr95", "auroc", "aupr_in", "aupr_out")
                                                   for k in ("ci", "se")}
    for r in got:
        replicated = any(p.replicate for p in scores.get(r["score"]).params)
        # every score but the reference (RecLag, in the paper's six) is compared with it
        # the marks of approximate intervals come where they apply: 40 ID images place FPR95's threshold
        notes = {"fpr95_ci_note", "auroc_ci_note", "intervals_note"}
        assert "fpr95_ci_note" in r
        assert set(r) - notes == keys | ({"replicates"} if replicated else set()) | ({"vs"} if r["score"] != "RecLag" else set())
        assert r["auroc_ci"][0] <= r["auroc"] <= r["auroc_ci"][1] and r["bootstrap"]["resamples"] == 1000
        assert (r["fpr_variant"], r["input_size"], r["feature_precision"], r["train_precision"], r["recipe"]) == \
            ("standard", 16, "fp32", "fp32", "fixed")
        assert 0 <= r["auroc"] <= 1 and 0 <= r["fpr95"] <= 1 and r["auroc_std"] == 0 and r["n_id"] == 40
    assert {r["ood_dataset"]: r["n_ood"] for r in got} == {"SVHN": 30, "LSUN_C": 12, "iSUN": 12, "Textures": 24}
    md = (out / "results.md").read_text()
    assert "| MSP |" in md and "Average FPR95↓" in md
    assert r"\begin{tabular}" in (out / "results.tex").read_text()
    assert (out / "results.csv").read_text().startswith("score,SVHN FPR95")
    npz = np.load(out / "scores.npz")
    assert set(npz.files) == {f"{s}/{k}" for s in paper for k in ["id"] + OODS} | {"__index__"}
    assert npz["MSP/id"].shape == (40,)
    for s in ["MSP", "HE", "RecLag"]:
        assert (out / f"plots/hist_{s}.png").stat().st_size > 1000
        assert (out / f"plots/roc_{s}.png").stat().st_size > 1000

    # Scores in input order: recompute MSP from the cached logits.
    test = torch.load(store / "features/test.pt", weights_only=True)
    np.testing.assert_allclose(npz["MSP/id"], torch.softmax(test["logits"].double(), 1).max(1).values, rtol=1e-6)

    # Sampled protocol: draws of N_ID / 5 = 8 images, mean and std over repeats; no backbone run needed.
    mtimes = {p: p.stat().st_mtime_ns for p in (store / "features").iterdir()}
    rows = test_score_ood_detection.main(common + ["--score", "MSP", "HE", "--ood"] + OODS +
                                         ["--protocol", "sampled", "--repeats", "4", "--results_dir", "res2"])
    assert all(r["n_ood"] == 8 and r["repeats"] == 4 and r["seed"] == 1 for r in rows)
    assert any(r["auroc_std"] > 0 for r in rows)
    assert mtimes == {p: p.stat().st_mtime_ns for p in (store / "features").iterdir()}


def _cifar_labels(root):
    import pickle
    labels = []
    for b in range(1, 6):
        with open(root / "cifar-10-batches-py" / f"data_batch_{b}", "rb") as f:
            labels += pickle.load(f)["labels"]
    return labels


@pytest.mark.slow
def test_reference_generate_script_on_grayscale_set(tmp_path, monkeypatch):
    """scripts/generate_SHEandHE_feature.sh drives generate_stored_pattern.py for each data set and
    model; here on Fashion-MNIST idx files (grayscale, in_channels 1) with a tiny WRN."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import datagen
    root = Path(__file__).resolve().parents[1]
    datagen.write_fashion_mnist(tmp_path / "data")
    datagen.write_image_folder(tmp_path / "data" / "iSUN", n=6)
    monkeypatch.chdir(tmp_path)
    tiny = ["--dataset", "fashionmnist", "--model", "wrn", "--layers", "10", "--widen_factor", "1",
            "--resize_val", "16", "--batch_size", "20", "--workers", "0", "--device", "cpu", "--amp", "off", "--quiet",
            "--dataset_path", str(tmp_path / "data")]
    train_model.main(tiny + ["--epochs", "2", "--lr", "0.05", "--augment", "none"])
    env = {**os.environ, "DATASETS": "fashionmnist", "MODELS": "wrn", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(root / "scripts/generate_SHEandHE_feature.sh"), *tiny[4:], "--ood", "iSUN",
                           "--stored_pattern_dir", str(tmp_path / "sp")],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    store = tmp_path / "sp/fashionmnist/wrn"
    for f in ["features/train.pt", "features/test.pt", "features/iSUN.pt", "patterns/he-*.pt", "patterns/she-*.pt",
              "patterns/react-*.pt"]:
        assert list(store.glob(f)), f
    she = torch.load(next(store.glob("patterns/she-*.pt")), weights_only=True)["state"]["means"]
    assert she.shape == (10, 64)


def test_near_ood_split_with_id_classes(tmp_path, monkeypatch):
    """--id_classes keeps five Fashion-MNIST classes as ID; the test images of the other five are the
    OOD set HeldOut; every output goes under fashionmnist_classes<...>/."""
    import datagen
    datagen.write_fashion_mnist(tmp_path / "data", n_train=100, n_test=40)
    monkeypatch.chdir(tmp_path)
    common = ["--dataset", "fashionmnist", "--id_classes", "0", "2", "4", "6", "8", "--model", "wrn", "--layers",
              "10", "--widen_factor", "1", "--resize_val", "16", "--batch_size", "25", "--workers", "0",
              "--device", "cpu", "--amp", "off", "--quiet", "--dataset_path", str(tmp_path / "data")]
    train_model.main(common + QUICK_TRAIN)
    ckpt = torch.load("checkpoints/fashionmnist_classes0-2-4-6-8/wrn.pt", weights_only=True)
    assert ckpt["meta"]["num_classes"] == 5 and ckpt["model"]["fc.weight"].shape[0] == 5
    generate_stored_pattern.main(common + ["--ood", "HeldOut", "--score", "ReAct"])
    store = tmp_path / "stored_pattern/fashionmnist_classes0-2-4-6-8/wrn/features"
    train = torch.load(store / "train.pt", weights_only=True)
    assert len(train["labels"]) == 50 and sorted(set(train["labels"].tolist())) == [0, 1, 2, 3, 4]
    held = torch.load(store / "HeldOut.pt", weights_only=True)
    assert len(held["labels"]) == 20 and set(held["labels"].tolist()) == {1, 3, 5, 7, 9}
    rows = test_score_ood_detection.main(common + ["--ood", "HeldOut", "--score", "MSP", "Energy"])
    assert [r["ood_dataset"] for r in rows] == ["HeldOut", "HeldOut"] and rows[0]["n_id"] == 20
    assert (tmp_path / "results/fashionmnist_classes0-2-4-6-8/wrn/results.json").exists()
