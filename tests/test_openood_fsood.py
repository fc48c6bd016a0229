"""--fsood: OpenOOD v1.5's full-spectrum setting (``eval_ood(fsood=True)``) under --benchmark openood.

On OpenOOD's layout in small (tests/datagen.py write_openood, which writes the covariate-shifted ID lists
test_<csid>.txt and their images in the real format): the ID side of every row is the ID test set followed
by every csid set, as OpenOOD concatenates them, so the rows' metrics are ``compute_metrics(..., "openood")``
on that concatenation against each OOD set; the rows say fsood, the csid sets and the pooled accuracy
OpenOOD reports as ACC, and never replace (nor share a table with) the rows of the ID test set alone;
ImageNet-C is read without resize or crop; a benchmark or ID set without csid sets is one line. Against
OpenOOD's own evaluator: its ``fsood_metrics`` of tests/fixtures/openood_postprocessors.npz, recomputed by
our rows from its stored confidences."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import transforms as T

import datagen
import models
import sweep_scores
import test_score_ood_detection
from ood import data as D
from ood.evaluation.metrics import compute_metrics
from ood.evaluation.protocols import Evaluation
from ood.evaluation.scoring import RowSource, score_all
from ood.params import Context
from scores.base import Score
from test_openood import RUN, _checkpoint, _fails

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "openood_postprocessors.npz"
N_CSID = 6


@pytest.fixture(scope="module")
def fs(tmp_path_factory):
    base = tmp_path_factory.mktemp("fsood")
    datagen.write_openood(base / "data", "cifar10", n_csid=N_CSID)
    datagen.write_openood(base / "data", "imagenet200", n_id=(12, 8, 6), n_ood=4, n_csid=3)
    _checkpoint(base / "c10.ckpt", "openood_resnet18_32x32", "cifar10", base / "data")
    _checkpoint(base / "i200.ckpt", "openood_resnet18_224x224", "imagenet200", base / "data")
    return base


@pytest.fixture
def cifar(fs, monkeypatch):
    monkeypatch.chdir(fs)
    return ["--benchmark", "openood", "--dataset", "cifar10", "--model", "openood_resnet18_32x32", "--checkpoint",
            str(fs / "c10.ckpt"), "--dataset_path", str(fs / "data"), *RUN]


def _features(fs, dataset, model, name):
    return torch.load(fs / "stored_pattern" / f"openood-{dataset}" / model / "features" / f"{name}.pt",
                      weights_only=True)


def _accuracy(*parts):
    logits, labels = torch.cat([p["logits"] for p in parts]), torch.cat([p["labels"] for p in parts])
    return float((logits.argmax(1) == labels).double().mean())


def test_declared_csid_sets_are_openoods():
    """DATA_INFO's csid 'datasets' per ID set, their lists in benchmark_imglist, their images and archives
    (Drive ids of download_id_dict, cifar10c's of scripts/download/download.py), labelled with the ID
    classes; only ImageNet-C is read without resizing."""
    bench = D.get_benchmark("openood")
    want = {"cifar10": ["cifar10c"], "cifar100": [], "imagenet200": ["imagenet_v2", "imagenet_c", "imagenet_r"],
            "imagenet": ["imagenet_v2", "imagenet_c", "imagenet_r", "imagenet_es"]}
    lists = {"cifar10": ["test_cifar10c.txt"],
             "imagenet200": ["test_imagenet200_v2.txt", "test_imagenet200_c.txt", "test_imagenet200_r.txt"],
             "imagenet": ["test_imagenet_v2.txt", "test_imagenet_c.txt", "test_imagenet_r.txt", "test_imagenet_es.txt"]}
    drive = {"cifar10c": "170DU_ficWWmbh6O2wqELxK9jxRiGhlJH", "imagenet_v2": "1akg2IiE22HcbvTBpwXQoD7tgfPCdkoho",
             "imagenet_r": "1EzjMN2gq-bVV7lg-MEAdeuBuz-7jbGYU", "imagenet_c": "1JeXL9YH4BO8gCJ631c5BHbaSsl-lekHt",
             "imagenet_es": "1ATz11vKmPqyzfEaEDRaPTF9TXiC244sw"}
    for s in bench.id_sets:
        csid = bench.csid_sets(s)
        assert [c.name for c in csid] == want[s.name]
        assert [c.folder for c in csid] == [f"benchmark_imglist/{s.name}/{f}" for f in lists.get(s.name, [])]
        assert all(c.group == "csid" and c.layout.rule.classes == s.num_classes for c in csid)
        assert all(c.layout.resized == (c.name != "imagenet_c") for c in csid)
        folder = "images_classic" if s.name.startswith("cifar") else "images_largescale"
        assert all(c.layout.image_dir == folder for c in csid)
        assert [(a.file, a.dest, a.drive_id) for a in bench.csid_archives_of(s)] == \
            [(f"{n}.zip", f"{folder}/{n}", drive[n]) for n in want[s.name]]
        # not OOD sets of the ID set: --ood cannot name them, and its archives stay out of the plain target
        assert not {c.name for c in csid} & {o.name for o in bench.ood_sets(s)}
        assert not set(bench.csid_archives_of(s)) & set(bench.archives_of(s))


def test_imagenet_c_is_read_without_resize():
    """OpenOOD's ImageNetCPreProcessor: ToTensor and the run's Normalize, nothing else (a torchvision
    preset's mean and std too, as OpenOOD reads them)."""
    from ood.data.openood import unresized
    id_set = D.get_id_set("imagenet200", None, "openood")
    plain = unresized(D.test_transform(id_set, 224))
    assert [type(t) for t in plain.transforms] == [T.ToTensor, T.Normalize]
    assert plain.transforms[1].mean == (0.485, 0.456, 0.406) and plain.transforms[1].std == (0.229, 0.224, 0.225)
    import torchvision
    preset = unresized(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.transforms())
    assert [type(t) for t in preset.transforms] == [T.ToTensor, T.Normalize]
    assert list(preset.transforms[1].mean) == [0.485, 0.456, 0.406]


def test_cifar10_fsood_rows_are_openoods(cifar, fs, monkeypatch):
    """The rows of --fsood: every OOD set against the ID test set followed by cifar10c (OpenOOD's order),
    under OpenOOD's metric convention; ACC pooled over both from the plain logits; the rows of the ID test
    set alone in the same folder are kept, each setting in a table of its own, captioned."""
    folder = fs / "c10"
    args = ["--score", "MSP", "Energy", "KNN", "--knn_k", "3", "--results_dir", str(folder), "--save_scores"]
    plain = test_score_ood_detection.main(cifar + args)
    rows = test_score_ood_detection.main(cifar + args + ["--fsood"])
    test = _features(fs, "cifar10", "openood_resnet18_32x32", "test")
    csid = _features(fs, "cifar10", "openood_resnet18_32x32", "cifar10c")  # cached like any image set
    listed = (fs / "data" / "benchmark_imglist" / "cifar10" / "test_cifar10c.txt").read_text().split("\n")
    assert csid["labels"].tolist() == [int(line.split()[1]) for line in listed if line]  # labelled ID images
    pooled = _accuracy(test, csid)
    assert pooled != _accuracy(test)  # the shifted images are misclassified more often: the ACC tells them apart
    saved = np.load(folder / "scores.npz")
    assert len(rows) == 3 * 6
    for r in rows:
        assert r["fsood"] is True and r["csid_sets"] == ["cifar10c"] and r["n_csid"] == {"cifar10c": N_CSID}
        assert r["n_id"] == 16 + N_CSID and r["fpr_variant"] == "openood"
        assert len(saved[f"{r['score']}/id"]) == 16  # the per-sample scores keep each set apart
        ids = np.concatenate([saved[f"{r['score']}/id"], saved[f"{r['score']}/cifar10c"]])
        ref = compute_metrics(ids, saved[f"{r['score']}/{r['ood_dataset']}"], "openood")
        assert {k: r[k] for k in ref} == pytest.approx(ref, abs=1e-12)
        assert r["fsood_accuracy"] == pytest.approx(pooled, abs=1e-12)
        assert r["id_accuracy"] == pytest.approx(_accuracy(test), abs=1e-12)
        assert r.get("auroc_ci") and r.get("auroc_delong_ci")  # intervals on the full-spectrum ID side
    # the plain rows are neither replaced nor changed; fsood rows are keyed apart
    stored = json.loads((folder / "results.json").read_text())["rows"]
    assert len(stored) == 2 * len(rows) and sum(bool(r.get("fsood")) for r in stored) == len(rows)
    before = {(r["score"], r["ood_dataset"]): r["auroc"] for r in plain}
    assert {(r["score"], r["ood_dataset"]): r["auroc"] for r in stored if not r.get("fsood")} == before
    assert all("fsood" not in r for r in plain)
    md = (folder / "results.md").read_text()
    captions = [line for line in md.splitlines() if line.startswith("cifar10 (OpenOOD v1.5)")]
    assert len(captions) == 2 and sum("full-spectrum setting" in c for c in captions) == 1
    full = md[md.index(next(c for c in captions if "full-spectrum" in c)):]
    assert "the covariate-shifted ID set cifar10c" in full and "OpenOOD's ACC in the full-spectrum setting" in full
    msp = next(line for line in full.splitlines() if line.startswith("| MSP"))
    assert msp.rstrip(" |").endswith(f"{100 * pooled:.2f}")
    # and again: the same fsood rows replace themselves, nothing is added; the histograms and ROC curves of
    # --plot show the OOD sets against the ID test set, not the csid sets as if they were OOD
    from ood.reporting import reports
    plotted = []
    monkeypatch.setattr(reports, "plot", lambda per_score, out: plotted.append(per_score) or [])
    test_score_ood_detection.main(cifar + args + ["--fsood", "--score", "MSP", "--plot"])
    assert len(json.loads((folder / "results.json").read_text())["rows"]) == 2 * len(rows)
    assert plotted and all(set(d) == {"id", "cifar100", "tin", "mnist", "svhn", "texture", "places365"}
                           for d in plotted[0].values())
    # aggregate_results.py keeps the two settings apart (never averaging a full-spectrum row with a plain one)
    import aggregate_results
    aggregate_results.main([str(folder), "--out", str(fs / "agg"), "--no_plot", "--quiet"])
    agg = json.loads((fs / "agg" / "aggregate.json").read_text())
    assert sorted(g["id_dataset"] for g in agg["groups"]) == ["openood-cifar10", "openood-cifar10-fsood"]
    near = {r["id_dataset"]: r for r in agg["rows"] if r["score"] == "MSP" and r["ood_dataset"] == "Near-OOD"}
    assert near["openood-cifar10-fsood"]["id_accuracy"] == pytest.approx(pooled, abs=1e-12)
    assert near["openood-cifar10"]["id_accuracy"] == pytest.approx(_accuracy(test), abs=1e-12)
    fsood = {r["ood_dataset"]: r["auroc"] for r in rows if r["score"] == "MSP"}
    assert near["openood-cifar10-fsood"]["auroc"] == pytest.approx((fsood["cifar100"] + fsood["tin"]) / 2)


def test_imagenet200_fsood_three_sets_imagenet_c_unresized(fs, monkeypatch):
    """ImageNet-200: the ID side is the test list, then ImageNet-V2, -C and -R in DATA_INFO's order; ImageNet-C's
    images (input-size crops) go through ToTensor and Normalize only, the others through the ID preprocessing."""
    monkeypatch.chdir(fs)
    args = ["--benchmark", "openood", "--dataset", "imagenet200", "--model", "openood_resnet18_224x224",
            "--checkpoint", str(fs / "i200.ckpt"), "--dataset_path", str(fs / "data"), *RUN]
    rows = test_score_ood_detection.main(args + ["--score", "MSP", "--fsood", "--results_dir", "i200f",
                                                 "--save_scores", "--bootstrap", "0"])
    order = ["imagenet_v2", "imagenet_c", "imagenet_r"]
    saved = np.load(fs / "i200f" / "scores.npz")
    ids = np.concatenate([saved["MSP/id"], *(saved[f"MSP/{c}"] for c in order)])
    for r in rows:
        assert r["csid_sets"] == order and r["n_id"] == 8 + 3 * 3
        ref = compute_metrics(ids, saved[f"MSP/{r['ood_dataset']}"], "openood")
        assert {k: r[k] for k in ref} == pytest.approx(ref, abs=1e-12)
    cached = {n: _features(fs, "imagenet200", "openood_resnet18_224x224", n) for n in ("test", *order)}
    assert rows[0]["fsood_accuracy"] == pytest.approx(_accuracy(*cached.values()), abs=1e-12)
    # what each set's images went through: the backbone's features of the images transformed by hand
    model = models.build_model("openood_resnet18_224x224", 200).eval()
    model.load_state_dict(torch.load(fs / "i200.ckpt", weights_only=True))
    id_set = D.get_id_set("imagenet200", None, "openood")
    bench = D.get_benchmark("openood")
    resized = D.test_transform(id_set, 224)
    as_is = T.Compose([T.ToTensor(), T.Normalize(id_set.mean, id_set.std)])
    for c in bench.csid_sets(id_set):
        paths = [p for p, _ in c.layout.read(c, fs / "data")]
        with torch.no_grad():
            def phi(tf):
                return model.forward_features(torch.stack([tf(D.load_image(p)) for p in paths]))
            own, other = (as_is, resized) if c.name == "imagenet_c" else (resized, as_is)
            assert torch.allclose(cached[c.name]["features"], phi(own), atol=1e-4), c.name
            if c.name == "imagenet_c":  # the check tells the two apart
                assert not torch.allclose(cached[c.name]["features"], phi(other), atol=1e-2)


def test_sweep_fsood(cifar, fs):
    """sweep_scores.py --fsood --select_on val: the settings are chosen on the validation pair as without it
    (OpenOOD's search uses no csid set), the test rows are full-spectrum."""
    sweep_scores.main(cifar + ["--grid", "ReAct:percentile=60,90", "--select_on", "val", "--fsood",
                               "--results_dir", "swf"])
    sweep = json.loads((fs / "swf" / "sweep.json").read_text())
    assert all(r["fsood"] and r["n_id"] == 16 + N_CSID for r in sweep["rows"])
    assert all("fsood" not in r and r["n_id"] == 12 for r in sweep["validation_rows"])
    selected = json.loads((fs / "swf" / "selected.json").read_text())
    assert len(selected["rows"]) == 6 and all(r["fsood"] and r["csid_sets"] == ["cifar10c"] for r in selected["rows"])
    assert "full-spectrum setting" in (fs / "swf" / "selected.md").read_text()


def test_fsood_errors(cifar, fs, capsys, tmp_path):
    """One line, exit status 2, before any work: no benchmark with csid sets (the paper's; CIFAR-100 under
    OpenOOD), an OOD folder named like a csid set, a missing csid list (naming verify_data.py --fsood)."""
    nothing = ["--checkpoint", str(tmp_path / "none.pt"), "--dataset_path", str(tmp_path / "none"), *RUN]
    line = _fails(["--dataset", "cifar10", "--fsood", *nothing], capsys)
    assert "--fsood is OpenOOD v1.5's full-spectrum setting" in line and "add --benchmark openood" in line
    line = _fails(["--benchmark", "openood", "--dataset", "cifar100", "--fsood", *nothing], capsys)
    assert "declares no covariate-shifted ID sets for CIFAR-100" in line
    line = _fails(["--dataset", "cifar10", "--fsood", "--grid", "MSP", *nothing], capsys, sweep_scores)
    assert "add --benchmark openood" in line
    # --compare_to a score whose rows in the folder are of the ID test set alone: not paired with fsood rows
    test_score_ood_detection.main(cifar + ["--score", "MSP", "--results_dir", str(tmp_path / "cmp")])
    line = _fails(cifar + ["--score", "Energy", "--fsood", "--compare_to", "MSP", "--results_dir",
                           str(tmp_path / "cmp")], capsys)
    assert "were evaluated with fsood off, this run with fsood on" in line
    line = _fails(cifar + ["--fsood", "--ood", f"cifar10c={tmp_path}"], capsys)
    assert "names a covariate-shifted ID set of CIFAR-10, which --fsood counts as ID" in line
    data = tmp_path / "data"
    datagen.write_openood(data, "cifar10", n_id=(8, 4, 4), n_ood=2, n_csid=2)
    (data / "benchmark_imglist" / "cifar10" / "test_cifar10c.txt").unlink()
    moved = [a if a != str(fs / "data") else str(data) for a in cifar]
    line = _fails(moved + ["--fsood", "--results_dir", str(tmp_path / "r")], capsys)
    assert "covariate-shifted ID set cifar10c of OpenOOD v1.5 was not found" in line and "--fsood" in line
    assert not (tmp_path / "r").exists()


class Stored(Score):
    """A stand-in score: the confidences OpenOOD's postprocessor gave each sample (``conf`` of a set)."""
    name = "Stored"

    def score(self, data, state, head):
        return data["conf"]


def _our_rows(z, run, csid):
    """Our rows of one fixture run from OpenOOD's stored confidences: each OOD set against the ID test set
    (followed by the csid set under fsood), through the scripts' score_all."""
    logits = "logits_sat" if run.endswith("@sat") else "logits"
    sets = {("id" if s == "test" else s): {"conf": z[f"{run}/conf/{s}"], "features": z[f"inputs/{s}/features"],
                                           "logits": torch.from_numpy(z[f"inputs/{s}/{logits}"]),
                                           "labels": torch.from_numpy(z[f"inputs/{s}/labels"]), "digest": "fixture"}
            for s in ("test", "csid", "near", "far_sparse", "far_dense")}
    source = RowSource(id_dataset="cifar10", model="stand-in", num_classes=10)
    objs = [Stored(ctx=Context(dataset="cifar10", num_classes=10))]
    runs = score_all([objs], lambda s: {}, sets, None, source, ["near", "far_sparse", "far_dense"],
                     Evaluation(fpr_variant="openood", fsood=bool(csid)), csid=csid)
    return {r["ood_dataset"]: r for r in next(runs)[2]}


def test_fsood_metrics_are_openoods_own():
    """OpenOOD's Evaluator, eval_ood(fsood=True) (fixture: every postprocessor run): our rows on its stored
    confidences, with the csid set joining the ID side, give its table: each set's FPR@95, AUROC, AUPR_IN,
    AUPR_OUT, the near and far averages, and ACC pooled over test and csid; without fsood, its eval_ood() table
    and the ID test accuracy."""
    z = np.load(FIXTURE)
    groups = {"near": ["near"], "nearood": ["near"], "far_sparse": ["far_sparse"], "far_dense": ["far_dense"],
              "farood": ["far_sparse", "far_dense"]}
    for run in map(str, z["runs"]):
        names = [str(x) for x in z[f"{run}/metric_rows"]]
        for csid, key in ((["csid"], "fsood_metrics"), ([], "ood_metrics")):
            rows = _our_rows(z, run, csid)
            theirs = z[f"{run}/{key}"]
            for i, name in enumerate(names):
                ours = [100 * np.mean([rows[s][m] for s in groups[name]]) for m in ("fpr95", "auroc", "aupr_in",
                                                                                     "aupr_out")]
                assert ours == pytest.approx(theirs[i, :4].tolist(), abs=1e-9), (run, key, name)
                acc = rows[groups[name][0]]["fsood_accuracy" if csid else "id_accuracy"]
                assert 100 * acc == pytest.approx(theirs[i, 4], abs=1e-9), (run, key, name)
            assert all(r.get("fsood") is (True if csid else None) for r in rows.values())
            assert {r["n_id"] for r in rows.values()} == {100 + 60 if csid else 100}
    assert z["msp/fsood_metrics"][0, 4] == 86.25 and z["msp/ood_metrics"][0, 4] == 88.0  # the two ACCs differ
