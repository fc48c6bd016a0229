"""--benchmark openood's tables as OpenOOD prints them, through the scripts on OpenOOD's layout in small (the
bench of tests/test_openood.py): each near and far set and the near and far averages with OpenOOD's four
metrics (its evaluator's DataFrame: FPR@95, AUROC, AUPR_IN, AUPR_OUT, ACC), the AUPRs those of the rows and
of OpenOOD's convention on the stored per-sample scores, the averages the mean of their sets (OpenOOD's
nearood / farood); aggregate_results.py over three checkpoints gives them as mean ± np.std (ddof 0) and
names each score with the settings it ran at or each run chose ("ReAct (percentile=90, ...)")."""
import csv
import io
import json

import numpy as np
import pytest
import torch

import aggregate_results
import models
import sweep_scores
import test_openood
import test_score_ood_detection
from ood.evaluation.metrics import compute_metrics

# tests/test_openood.py's fixtures: OpenOOD's layout in small with its checkpoints, the CIFAR-10 arguments
bench, cifar = test_openood.bench, test_openood.cifar

NEAR, FAR = ["cifar100", "tin"], ["mnist", "svhn", "texture", "places365"]
COLUMNS = NEAR + ["Near-OOD"] + FAR + ["Far-OOD"]
HEADS = {"fpr95": "FPR95↓", "auroc": "AUROC↑", "aupr_in": "AUPR-In↑", "aupr_out": "AUPR-Out↑"}
CSV = {"fpr95": "FPR95", "auroc": "AUROC", "aupr_in": "AUPR_In", "aupr_out": "AUPR_Out"}


def _table(md):
    """(header, {label: {column: cell}}) of the first table of a Markdown text."""
    lines = md.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith("| Score |"))
    head = [c.strip() for c in lines[start].strip().strip("|").split("|")]
    body = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        body[cells[0]] = dict(zip(head, cells))
    return head, body


def _cell(text):
    """(value, ±) of a cell such as "**57.18±15.59**†"; ± 0 where none is printed."""
    text = text.replace("*", "").rstrip("†‡")
    value, _, pm = text.partition("±")
    return float(value), float(pm or 0.0)


def _close(text, value, pm=None):
    """A cell printed to two decimals shows ``value`` (and ``pm``), both in percent."""
    v, p = _cell(text)
    assert v == pytest.approx(value, abs=0.005 + 1e-9), (text, value)
    if pm is not None:
        assert p == pytest.approx(pm, abs=0.005 + 1e-9), (text, pm)


def test_results_tables_have_openoods_four_metrics(cifar, bench, capsys):
    rows = test_score_ood_detection.main(cifar + ["--score", "MSP", "Energy", "KNN", "--knn_k", "3", "--save_scores",
                                                  "--results_dir", "four"])
    printed = capsys.readouterr().out
    out = bench / "four"
    md = (out / "results.md").read_text()
    head, body = _table(md)
    assert head == ["Score"] + [f"{c} {HEADS[m]}" for c in COLUMNS for m in HEADS] + ["ID Acc."]
    assert md.split("\n| Score")[1].split("\n")[0] in printed  # the table the script prints is results.md's
    assert "AUPR-In (ID positive) and AUPR-Out (OOD positive) in %" in md and "trapezoid AUPRs" in md
    # every cell: the row's value, which is OpenOOD's convention on the stored per-sample scores
    saved = np.load(out / "scores.npz")
    by = {(r["score"], r["ood_dataset"]): r for r in rows}  # one variant each: labelled by its name
    reference = {}
    for (label, o), r in by.items():
        reference[(label, o)] = compute_metrics(saved[f"{label}/id"], saved[f"{label}/{o}"], "openood")
        assert {k: r[k] for k in HEADS} == pytest.approx(reference[(label, o)], abs=1e-12)
        for m in HEADS:
            _close(body[label][f"{o} {HEADS[m]}"], 100 * r[m])
        assert body[label]["ID Acc."] == f"{100 * r['id_accuracy']:.2f}"
    # the averages, as OpenOOD's nearood / farood rows: the mean over the group's sets of each metric
    for label in {r["score"] for r in rows}:
        for title, sets in (("Near-OOD", NEAR), ("Far-OOD", FAR)):
            for m in HEADS:
                _close(body[label][f"{title} {HEADS[m]}"], 100 * np.mean([reference[(label, o)][m] for o in sets]))
    # results.csv: the values to four decimals, and the AUPRs' interval ends (the rows' percentile intervals)
    table = {r["score"]: r for r in csv.DictReader(io.StringIO((out / "results.csv").read_text()))}
    for (label, o), r in by.items():
        for m in ("aupr_in", "aupr_out"):
            assert float(table[label][f"{o} {CSV[m]}"]) == pytest.approx(100 * r[m], abs=1e-4)
            assert [float(table[label][f"{o} {CSV[m]}_{e}"]) for e in ("low", "high")] == \
                pytest.approx([100 * x for x in r[f"{m}_ci"]], abs=1e-4)
    for label in {r["score"] for r in rows}:
        assert float(table[label]["Near-OOD AUPR_Out"]) == pytest.approx(
            100 * np.mean([by[(label, o)]["aupr_out"] for o in NEAR]), abs=1e-4)
    tex = (out / "results.tex").read_text()
    assert r"\multicolumn{4}{c}{Near-OOD}" in tex
    assert r"FPR95$\downarrow$ & AUROC$\uparrow$ & AUPR-In$\uparrow$ & AUPR-Out$\uparrow$" in tex


def _runs(bench, cifar, tmp_path):
    """Three "training runs" (the bench's checkpoint, and its head on two other seeded bodies), each swept
    (ReAct chosen on the validation pair: selected.json in s<k>/) and scored at fixed settings (r<k>/)."""
    checkpoints = [bench / "c10.ckpt"]
    for seed in (1, 2):
        state = torch.load(bench / "c10.ckpt", weights_only=True)
        torch.manual_seed(seed)
        body = models.build_model("openood_resnet18_32x32", 10).state_dict()
        state.update({k: v for k, v in body.items() if not k.startswith("fc.") and "num_batches" not in k})
        torch.save(state, tmp_path / f"c{seed}.ckpt")
        checkpoints.append(tmp_path / f"c{seed}.ckpt")
    for k, ckpt in enumerate(checkpoints):
        args = [a if a != str(bench / "c10.ckpt") else str(ckpt) for a in cifar]
        args += ["--stored_pattern_dir", str(tmp_path / f"cache{k}")]
        sweep_scores.main(args + ["--grid", "ReAct:percentile=60,90", "--select_on", "val", "--results_dir",
                                  str(tmp_path / f"s{k}")])
        test_score_ood_detection.main(args + ["--score", "MSP", "KNN", "--knn_k", "3", "--results_dir",
                                              str(tmp_path / f"r{k}")])


@pytest.mark.slow
def test_aggregated_table_has_auprs_and_settings(bench, cifar, tmp_path):
    _runs(bench, cifar, tmp_path)
    # the sweeps: each run's choice in the label, the four metrics as mean ± np.std over the runs
    aggregate_results.main([str(tmp_path / f"s{k}") for k in range(3)] + ["--out", str(tmp_path / "sel"),
                                                                          "--no_plot", "--quiet"])
    selected = [json.loads((tmp_path / f"s{k}" / "selected.json").read_text()) for k in range(3)]
    chosen = [s["selection"]["ReAct"]["settings"] for s in selected]
    picks = [f"{c['percentile']:g}" for c in chosen]
    md = (tmp_path / "sel" / "aggregate.md").read_text()
    head, body = _table(md)
    assert head == ["Score"] + [f"{c} {HEADS[m]}" for c in COLUMNS for m in HEADS] + ["ID Acc."]
    (label,) = body
    assert label.startswith("ReAct (") and f"percentile={picks[0] if len(set(picks)) == 1 else '/'.join(picks)}" \
        in label
    assert all(f"{k}=" in label for k in chosen[0])  # every setting, not only the swept one
    assert "ReAct: at the settings chosen in each run on the ID val split against val_tin" in md
    assert "(population std, ddof 0, as OpenOOD's np.std)" in md
    runs = [s["rows"] for s in selected]
    for m in HEADS:
        for o in NEAR + FAR:
            values = [100 * next(r[m] for r in rows if r["ood_dataset"] == o) for rows in runs]
            _close(body[label][f"{o} {HEADS[m]}"], np.mean(values), np.std(values))
        for title, sets in (("Near-OOD", NEAR), ("Far-OOD", FAR)):
            values = [100 * np.mean([r[m] for r in rows if r["ood_dataset"] in sets]) for rows in runs]
            _close(body[label][f"{title} {HEADS[m]}"], np.mean(values), np.std(values))
    accuracy = [100 * rows[0]["id_accuracy"] for rows in runs]
    _close(body[label]["ID Acc."], np.mean(accuracy), np.std(accuracy))
    agg = json.loads((tmp_path / "sel" / "aggregate.json").read_text())
    near = next(r for r in agg["rows"] if r["ood_dataset"] == "Near-OOD")
    assert near["label"] == label and near["selected_on"] == {"ood": ["val_tin"], "id_split": "val"}
    per_run = [np.mean([r["aupr_in"] for r in rows if r["ood_group"] == "near"]) for rows in runs]
    assert near["aupr_in_std"] == pytest.approx(np.std(per_run), abs=1e-12)
    wide = (tmp_path / "sel" / "tables" / "openood-cifar10_openood_resnet18_32x32_full.csv").read_text()
    assert "Near-OOD AUPR_In,Near-OOD AUPR_In_std,Near-OOD AUPR_Out,Near-OOD AUPR_Out_std" in wide
    tex = (tmp_path / "sel" / "aggregate.tex").read_text()
    assert r"AUPR-In$\uparrow$ & AUPR-Out$\uparrow$" in tex and "ReAct (percentile=" in tex
    # fixed settings (results.json of each run): the settings run at (MSP's float32 softmax, OpenOOD's)
    aggregate_results.main([str(tmp_path / f"r{k}") for k in range(3)] + ["--out", str(tmp_path / "fixed"),
                                                                          "--quiet"])
    md = (tmp_path / "fixed" / "aggregate.md").read_text()
    _, body = _table(md)
    knn = next(x for x in body if x.startswith("KNN"))
    assert set(body) == {"MSP (precision=float32)", knn} and "k=3" in knn
    assert "each score named with the settings it was run at" in md
    assert (tmp_path / "fixed" / "aggregate.png").exists()
