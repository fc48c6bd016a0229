"""A shortened demo (one epoch, few images) through scripts/demo.sh and the same three scripts."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import datagen
import scores

pytestmark = pytest.mark.slow  # see pytest.ini

ROOT = Path(__file__).resolve().parents[1]


def test_demo_script_shortened(tmp_path):
    datagen.write_fashion_mnist(tmp_path / "data", n_train=300, n_test=100)
    env = {**os.environ, "DATA": str(tmp_path / "data"), "OUT": str(tmp_path / "out"), "EPOCHS": "1",
           "SUBSET": "300", "PYTHON": sys.executable, "DEVICE": "cpu"}
    proc = subprocess.run(["bash", str(ROOT / "scripts/demo.sh"), "--quiet", "--amp", "off"],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "demo finished" in proc.stdout and "| RecLag |" in proc.stdout and "| ID Acc. |" in proc.stdout
    out = tmp_path / "out"
    # a shortened demo's checkpoint, caches and results are its own: never those of the full demo
    assert (out / "checkpoints/fashionmnist/cnn_epochs1_subset300.pt").exists()
    assert not (out / "checkpoints/fashionmnist/cnn.pt").exists() and not (out / "results/fashionmnist/cnn").exists()
    res = out / "results/fashionmnist/cnn_epochs1_subset300"
    rows = json.loads((res / "results.json").read_text())["rows"]
    assert {r["score"] for r in rows} == {c.name for c in scores.paper_scores()}
    assert {r["ood_dataset"] for r in rows} == {"Digits", "Photos", "Faces", "GaussianNoise", "UniformNoise"}
    assert all(r["n_id"] == 100 for r in rows)
    assert {r["ood_dataset"]: r["n_ood"] for r in rows}["Faces"] == 200
    assert (res / "plots/hist_RecLag.png").exists()
    assert (res / "scores.npz").exists()
    assert not (tmp_path / "checkpoints").exists()  # everything went under OUT
    extended = json.loads((res / "extended/results.json").read_text())["rows"]
    assert [r["score"] for r in extended if r["ood_dataset"] == "Digits"] == scores.names()
