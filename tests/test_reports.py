"""Result tables in the paper's layout, and the evaluation protocols."""
import json

import numpy as np
import pytest

from ood.evaluation.protocols import evaluate, sample_indices
from ood.reporting.results import ResultsFolder


def row(score, ood, fpr, auroc, fpr_std=0.0, auroc_std=0.0):
    return {"id_dataset": "cifar10", "model": "wrn", "score": score, "ood_dataset": ood, "protocol": "sampled",
            "repeats": 10, "seed": 12, "n_id": 10, "n_ood": 2, "auroc": auroc, "aupr_in": 0.5, "aupr_out": 0.5,
            "fpr95": fpr, "auroc_std": auroc_std, "fpr95_std": fpr_std, "fpr_variant": "standard",
            "input_size": 64, "feature_precision": "fp32", "subset": 0, "settings": {}}


def test_tables(tmp_path):
    rows = [row("MSP", "SVHN", 0.5, 0.9, 0.01, 0.002), row("MSP", "iSUN", 0.3, 0.95),
            row("HE", "SVHN", 0.2, 0.8), row("HE", "iSUN", 0.4, 0.97)]
    md = ResultsFolder(tmp_path).write(rows, order={"MSP": 10, "HE": 40})
    lines = md.splitlines()[2:]  # below the caption
    assert lines[0].startswith("| Score | SVHN FPR95↓ | SVHN AUROC↑ | iSUN FPR95↓")
    assert lines[0].endswith("Average FPR95↓ | Average AUROC↑ |")
    assert lines[2] == "| MSP | 50.00±1.00 | **90.00±0.20** | **30.00** | 95.00 | 40.00 | **92.50** |"
    assert lines[3] == "| HE | **20.00** | 80.00 | 40.00 | **97.00** | **30.00** | 88.50 |"
    tex = (tmp_path / "results.tex").read_text()
    assert r"\multicolumn{2}{c}{SVHN}" in tex and r"50.00$\pm$1.00" in tex and r"\textbf{20.00}" in tex
    csv = (tmp_path / "results.csv").read_text().splitlines()
    assert csv[1].startswith("MSP,50.0000,1.0000,90.0000,0.2000,30.0000")
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == [{**r, "label": r["score"]} for r in rows]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".lock"]  # no temporaries left


def test_sampled_protocol_draws():
    a = sample_indices(100, 50, "SVHN", 3, 12)
    assert [len(x) for x in a] == [20, 20, 20] and all(len(set(x)) == 20 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, sample_indices(100, 50, "SVHN", 3, 12)))
    assert not np.array_equal(a[0], sample_indices(100, 50, "iSUN", 3, 12)[0])
    assert len(sample_indices(1000, 50, "x", 1, 0)[0]) == 50  # small OOD set: all of it
    rng = np.random.default_rng(0)
    r = evaluate(rng.normal(1, 1, 100), rng.normal(0, 1, 300), "x", "sampled", 5, 3)
    assert r["n_ood"] == 20 and r["repeats"] == 5 and r["auroc_std"] > 0 and r["seed"] == 3
    full = evaluate(rng.normal(1, 1, 100), rng.normal(0, 1, 300), "x")
    assert full["n_ood"] == 300 and full["auroc_std"] == 0 and full["seed"] is None
    with pytest.raises(ValueError, match="protocol"):
        evaluate([1.0], [0.0], "x", "bogus")


def test_latex_caption_escapes_percent(tmp_path):
    ResultsFolder(tmp_path).write([row("MSP", "SVHN", 0.5, 0.9)])
    tex = (tmp_path / "results.tex").read_text()
    assert r"FPR95 and AUROC in \%}" in tex
