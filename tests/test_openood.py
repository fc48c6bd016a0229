"""--benchmark openood end to end, on OpenOOD v1.5's layout in small (tests/datagen.py write_openood: image
lists in their format, a few images per set) and backbones with OpenOOD's key layout: the ID splits and the
validation, near and far OOD sets read from the lists, OpenOOD's preprocessing, one cached pass serving
every score, OpenOOD's FPR95 in the tables and their near / far layout with ID accuracy, the selection on
the validation pair (OpenOOD's automatic search), and one clear line for each thing a user can get wrong."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import datagen
import generate_stored_pattern
import models
import sweep_scores
import test_score_ood_detection
from ood import data as D
from ood.errors import UserError
from ood.evaluation.metrics import compute_metrics
from ood.runtime.setup import Setup

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--workers", "0", "--device", "cpu", "--amp", "off", "--quiet", "--batch_size", "16"]
CIFAR_COLUMNS = ["cifar100", "tin", "Near-OOD", "mnist", "svhn", "texture", "places365", "Far-OOD"]


def _checkpoint(path, name, id_name, root):
    """A plain state dict of ``name`` (OpenOOD's key layout, as their best.ckpt files are): a seeded body
    and a nearest-class-mean head on its features of the ID training list, so that it classifies the
    training images (the scores built on stored patterns need correctly classified ones)."""
    torch.manual_seed(0)
    id_set = D.get_id_set(id_name, None, "openood")
    model = models.build_model(name, id_set.num_classes).eval()
    train = D.build_id_dataset(id_set, root, "train", D.test_transform(id_set, id_set.input_size))
    with torch.no_grad():
        phi = model.forward_features(torch.stack([x for x, _ in train]))
        labels = torch.tensor(train.targets)
        means = torch.stack([phi[labels == c].mean(0) if (labels == c).any() else torch.zeros(phi.shape[1])
                             for c in range(id_set.num_classes)])
        model.fc.weight.copy_(means)
        model.fc.bias.copy_(-0.5 * (means ** 2).sum(1) - 1e6 * (means.abs().sum(1) == 0))
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    base = tmp_path_factory.mktemp("openood")
    datagen.write_openood(base / "data", "cifar10")
    datagen.write_openood(base / "data", "imagenet200", n_id=(12, 8, 6), n_ood=4)
    _checkpoint(base / "c10.ckpt", "openood_resnet18_32x32", "cifar10", base / "data")
    _checkpoint(base / "i200.ckpt", "openood_resnet18_224x224", "imagenet200", base / "data")
    return base


@pytest.fixture
def cifar(bench, monkeypatch):
    monkeypatch.chdir(bench)
    return ["--benchmark", "openood", "--dataset", "cifar10", "--model", "openood_resnet18_32x32", "--checkpoint",
            str(bench / "c10.ckpt"), "--dataset_path", str(bench / "data"), *RUN]


def _header(md):
    """The column names of a results.md table (each OOD column once)."""
    line = next(x for x in md.splitlines() if x.startswith("| Score"))
    cells = [c.strip() for c in line.strip("|").split("|")[1:]]
    return list(dict.fromkeys(c.replace(" FPR95↓", "").replace(" AUROC↑", "").replace(" AUPR-In↑", "")
                              .replace(" AUPR-Out↑", "") for c in cells))


def test_openood_preprocessing_is_theirs():
    """OpenOOD's test preprocessor (preprocessor.py): Resize(pre_size, bilinear) of the shorter side, centre
    crop, their normalisation statistics; rebuilt here from their numbers and compared on a non-square image."""
    from torchvision import transforms as T
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (41, 57, 3), dtype=np.uint8))
    theirs = {"cifar10": (32, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
              "cifar100": (32, 32, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
              "imagenet200": (256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
              "imagenet": (256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}
    for name, (pre, size, mean, std) in theirs.items():
        id_set = D.get_id_set(name, None, "openood")
        ref = T.Compose([T.Resize(pre, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(size),
                         T.ToTensor(), T.Normalize(mean, std)])
        ours = D.test_transform(id_set, id_set.input_size)
        assert torch.allclose(ours(img), ref(img), atol=1e-6), name


def test_pretrained_torchvision_models_use_their_own_transforms(tmp_path):
    """Under --benchmark openood, torchvision's weights are evaluated with ``weights.transforms()``, as
    OpenOOD's eval_ood_imagenet.py does (Swin-T: bicubic resize to 232); --preprocessing dataset keeps ours."""
    import torchvision
    p = test_score_ood_detection.build_parser([])
    common = ["--model", "tv:swin_t", "--pretrained", "--dataset", "imagenet", "--device", "cpu",
              "--dataset_path", str(tmp_path)]
    setup = Setup.from_args(p.parse_args(common + ["--benchmark", "openood"]), False)
    expected = torchvision.models.Swin_T_Weights.IMAGENET1K_V1.transforms()
    assert repr(setup.test_transform()) == repr(expected)
    assert "232" in repr(setup.test_transform()) and "bicubic" in repr(setup.test_transform()).lower()
    assert setup.input_size == 224  # the weights' crop, recorded in every row
    paper = Setup.from_args(p.parse_args(common + ["--preprocessing", "dataset"]), False)
    assert "CenterCrop" in repr(paper.test_transform()) and "232" not in repr(paper.test_transform())
    # what would silently not be what it says: another size than the weights' own, a 1000-way head on 200
    with pytest.raises(UserError, match="--resize_val 384: --preprocessing backbone evaluates tv:swin_t with "
                                        "its weights' own transform, at 224 px"):
        Setup.from_args(p.parse_args(common + ["--benchmark", "openood", "--resize_val", "384"]), False)
    with pytest.raises(UserError, match="has 1000 outputs .* but ImageNet-200 has 200 classes"):
        Setup.from_args(p.parse_args([*common, "--benchmark", "openood", "--dataset", "imagenet200"]), False)
    with pytest.raises(UserError, match="but CIFAR-10 has 10 classes"):
        Setup.from_args(p.parse_args([*common, "--dataset", "cifar10"]), False)


def test_a_backbone_trained_here_keeps_its_normalisation(bench, tmp_path):
    """A checkpoint of train_model.py (its meta names the paper's cifar10) is evaluated on OpenOOD's images
    with the statistics it was trained with; OpenOOD's own checkpoints (plain state dicts) with OpenOOD's."""
    state = torch.load(bench / "c10.ckpt", weights_only=True)
    meta = {"dataset": "cifar10", "model": "openood_resnet18_32x32", "num_classes": 10, "in_channels": 3,
            "input_size": 32}
    torch.save({"model": state, "meta": meta}, tmp_path / "here.pt")
    p = test_score_ood_detection.build_parser([])
    common = ["--benchmark", "openood", "--model", "openood_resnet18_32x32", "--device", "cpu",
              "--dataset_path", str(bench / "data")]
    here = Setup.from_args(p.parse_args(common + ["--checkpoint", str(tmp_path / "here.pt")]), False)
    theirs = Setup.from_args(p.parse_args(common + ["--checkpoint", str(bench / "c10.ckpt")]), False)
    assert "std=(0.2023, 0.1994, 0.201)" in repr(here.test_transform())
    assert "std=(0.247, 0.2435, 0.2616)" in repr(theirs.test_transform())


def test_cifar10_end_to_end(cifar, bench):
    """generate_stored_pattern.py then test_score_ood_detection.py: every near and far set of DATA_INFO,
    OpenOOD's FPR95 by default (named in the caption), tables in OpenOOD's layout with ID accuracy, and rows
    whose numbers are those of the per-sample scores under OpenOOD's metric convention."""
    generate_stored_pattern.main(cifar + ["--score", "HE", "KNN", "--knn_k", "3"])
    features = bench / "stored_pattern" / "openood-cifar10" / "openood_resnet18_32x32" / "features"
    assert sorted(p.stem for p in features.glob("*.pt")) == sorted(
        ["train", "test", "cifar100", "tin", "mnist", "svhn", "texture", "places365"])  # one pass per set
    rows = test_score_ood_detection.main(cifar + ["--score", "MSP", "Energy", "HE", "KNN", "--knn_k", "3",
                                                  "--save_scores"])
    out = bench / "results" / "openood-cifar10" / "openood_resnet18_32x32"
    assert {r["ood_dataset"] for r in rows} == {"cifar100", "tin", "mnist", "svhn", "texture", "places365"}
    assert {(r["ood_dataset"], r["ood_group"]) for r in rows} == {
        ("cifar100", "near"), ("tin", "near"), ("mnist", "far"), ("svhn", "far"), ("texture", "far"),
        ("places365", "far")}
    assert all(r["benchmark"] == "openood" and r["fpr_variant"] == "openood" and r["n_id"] == 16 and
               r["n_ood"] == 10 for r in rows)
    md = (out / "results.md").read_text()
    assert _header(md) == CIFAR_COLUMNS + ["ID Acc."]
    assert "cifar10 (OpenOOD v1.5)" in md and "FPR95 variant openood (OpenOOD's: OOD positive" in md
    # the numbers: the per-sample scores under OpenOOD's convention; the near average is the mean of its sets
    saved = np.load(out / "scores.npz")
    features = torch.load(features / "test.pt", weights_only=True)
    accuracy = float((features["logits"].argmax(1) == features["labels"]).float().mean())
    for r in rows:
        ref = compute_metrics(saved[f"{r['score']}/id"], saved[f"{r['score']}/{r['ood_dataset']}"], "openood")
        assert {k: r[k] for k in ref} == pytest.approx(ref, abs=1e-12)
        assert r["id_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    msp = {r["ood_dataset"]: r for r in rows if r["score"] == "MSP"}
    near = 100 * np.mean([msp["cifar100"]["auroc"], msp["tin"]["auroc"]])
    line = next(x for x in md.splitlines() if x.startswith("| MSP"))
    head = next(x for x in md.splitlines() if x.startswith("| Score")).split("|")
    assert f"{near:.2f}" in line.split("|")[head.index(" Near-OOD AUROC↑ ")]
    # the paper's CIFAR-10 never shares this benchmark's folders
    assert not (bench / "results" / "cifar10").exists() and not (bench / "stored_pattern" / "cifar10").exists()


def test_fpr_variant_can_be_overridden(cifar, bench):
    rows = test_score_ood_detection.main(cifar + ["--score", "MSP", "--fpr_variant", "standard", "--results_dir",
                                                  "std"])
    assert {r["fpr_variant"] for r in rows} == {"standard"}
    assert "FPR95 variant standard" in (bench / "std" / "results.md").read_text()


def test_select_on_val_is_openoods_search(cifar, bench):
    """sweep_scores.py --select_on val: each setting chosen on the ID val split against the validation OOD set
    (highest AUROC), the test table over the near and far sets with the chosen settings in its rows."""
    rows = sweep_scores.main(cifar + ["--grid", "ReAct:percentile=60,90", "KNN:k=1,5", "--select_on", "val",
                                      "--results_dir", "sw"])
    assert len(rows) == 4 * 6  # the test rows: every grid point against the six near and far sets
    sweep = json.loads((bench / "sw" / "sweep.json").read_text())
    val = sweep["validation_rows"]
    assert {r["ood_dataset"] for r in val} == {"val_tin"} and {r["n_id"] for r in val} == {12}  # the ID val list
    selected = json.loads((bench / "sw" / "selected.json").read_text())
    assert selected["validation"] == ["val_tin"] and selected["validation_id_split"] == "val"
    assert selected["test"] == ["cifar100", "tin", "mnist", "svhn", "texture", "places365"]
    for score in ("ReAct", "KNN"):
        mine = [r for r in val if r["score"] == score]
        best = max(mine, key=lambda r: (r["auroc"], -r["fpr95"]))  # first of the best, in grid order
        assert selected["selection"][score]["settings"] == best["settings"]
        picked = [r for r in selected["rows"] if r["score"] == score]
        assert len(picked) == 6 and all(r["settings"] == best["settings"] for r in picked)
    assert (bench / "stored_pattern" / "openood-cifar10" / "openood_resnet18_32x32" / "features" / "val.pt").exists()
    md = (bench / "sw" / "selected.md").read_text()
    assert "the ID validation split against val_tin" in md and _header(md)[:8] == CIFAR_COLUMNS


def test_declared_grid(cifar, bench):
    """--grid SCORE sweeps the score's declared grid (OpenOOD's sweep list for ReAct; GEN's M up to the class
    count; ViM's D below the feature size), and a score that declares none is one point, its defaults."""
    sweep_scores.main(cifar + ["--grid", "ReAct", "GEN", "ViM", "MSP", "--select_on", "val", "--results_dir", "dg"])
    sweep = json.loads((bench / "dg" / "sweep.json").read_text())
    assert sweep["grid"] == {"ReAct": {"percentile": [85.0, 90.0, 95.0, 99.0]},
                             "GEN": {"gamma": [0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0], "M": [10]},
                             "ViM": {"dim": [256]}, "MSP": {}}
    selected = json.loads((bench / "dg" / "selected.json").read_text())
    assert set(selected["selection"]) == {"ReAct", "GEN", "ViM", "MSP"}


def test_imagenet200_end_to_end(bench, monkeypatch):
    monkeypatch.chdir(bench)
    args = ["--benchmark", "openood", "--dataset", "imagenet200", "--model", "openood_resnet18_224x224",
            "--checkpoint", str(bench / "i200.ckpt"), "--dataset_path", str(bench / "data"), *RUN]
    rows = test_score_ood_detection.main(args + ["--score", "MSP", "Energy", "--results_dir", "i200"])
    assert {(r["ood_dataset"], r["ood_group"]) for r in rows} == {
        ("ssb_hard", "near"), ("ninco", "near"), ("inaturalist", "far"), ("textures", "far"), ("openimage_o", "far")}
    assert all(r["input_size"] == 224 and r["n_id"] == 8 for r in rows)
    md = (bench / "i200" / "results.md").read_text()
    assert _header(md)[:7] == ["ssb_hard", "ninco", "Near-OOD", "inaturalist", "textures", "openimage_o", "Far-OOD"]
    sweep_scores.main(args + ["--grid", "ReAct:percentile=70,90", "--select_on", "val", "--results_dir", "i200s"])
    selected = json.loads((bench / "i200s" / "selected.json").read_text())
    assert selected["validation"] == ["val_openimage_o"] and len(selected["rows"]) == 5


def _fails(args, capsys, script=test_score_ood_detection):
    with pytest.raises(SystemExit) as e:
        script.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_clear_errors(cifar, bench, capsys, tmp_path):
    assert "has no ID set 'fashionmnist'" in _fails(
        [a if a != "cifar10" else "fashionmnist" for a in cifar], capsys)
    assert "unknown OOD set 'LSUN_C' of CIFAR-10 in --benchmark openood" in _fails(cifar + ["--ood", "LSUN_C"], capsys)
    assert "--protocol paper" in _fails(cifar + ["--protocol", "paper"], capsys)
    assert "--id_classes" in _fails(cifar + ["--id_classes", "0", "1"], capsys)
    line = _fails(cifar + ["--grid", "ReAct", "ReAct:percentile=80", "--select_on", "val"], capsys, sweep_scores)
    assert "both its declared grid and values of its own" in line
    # a list that is missing, and a listed image that is missing: found before any extraction
    data = tmp_path / "data"
    datagen.write_openood(data, "cifar10", n_id=(8, 4, 4), n_ood=2)
    moved = [a if a != str(bench / "data") else str(data) for a in cifar]
    (data / "benchmark_imglist" / "cifar10" / "test_svhn.txt").unlink()
    assert "expected the image list" in _fails(moved + ["--results_dir", str(tmp_path / "r")], capsys)
    datagen.write_openood(data, "cifar10", n_id=(8, 4, 4), n_ood=2)
    first = (data / "benchmark_imglist" / "cifar10" / "test_mnist.txt").read_text().split()[0]
    (data / "images_classic" / first).unlink()
    line = _fails(moved + ["--results_dir", str(tmp_path / "r")], capsys)
    assert "image set mnist" in line and first in line
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_training_refuses_the_benchmark(tmp_path):
    """train_model.py trains on the paper's sets: one line, exit status 2, through the script."""
    done = subprocess.run([sys.executable, str(ROOT / "train_model.py"), "--benchmark", "openood", "--dataset",
                           "cifar10", "--dataset_path", str(tmp_path), *RUN], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--benchmark openood" in done.stderr


@pytest.mark.slow
def test_three_checkpoints_mean_and_std(bench, cifar, tmp_path):
    """OpenOOD's way of reporting a CIFAR benchmark: each training run chooses its own settings on the
    validation pair, then mean ± std over the runs; aggregate_results.py reads the sweeps' selected.json,
    averages the near and far columns per run, and the ID accuracy."""
    import aggregate_results
    checkpoints = [bench / "c10.ckpt"]
    for seed in (1, 2):  # two more "training runs": the same head on another seeded body
        state = torch.load(bench / "c10.ckpt", weights_only=True)
        torch.manual_seed(seed)
        body = models.build_model("openood_resnet18_32x32", 10).state_dict()
        state.update({k: v for k, v in body.items() if not k.startswith("fc.") and "num_batches" not in k})
        torch.save(state, tmp_path / f"s{seed}.ckpt")
        checkpoints.append(tmp_path / f"s{seed}.ckpt")
    for s, ckpt in enumerate(checkpoints):
        args = [a if a != str(bench / "c10.ckpt") else str(ckpt) for a in cifar]
        sweep_scores.main(args + ["--grid", "ReAct:percentile=60,90", "--select_on", "val", "--results_dir",
                                  str(tmp_path / f"s{s}"), "--stored_pattern_dir", str(tmp_path / f"cache{s}")])
    aggregate_results.main([str(tmp_path / f"s{s}") for s in range(3)] + ["--out", str(tmp_path / "agg"),
                                                                          "--no_plot", "--quiet"])
    agg = json.loads((tmp_path / "agg" / "aggregate.json").read_text())
    near = next(r for r in agg["rows"] if r["score"] == "ReAct" and r["ood_dataset"] == "Near-OOD")
    assert near["n_runs"] == 3 and len(near["settings"]["selected"]) == 3
    runs = [json.loads((tmp_path / f"s{s}" / "selected.json").read_text())["rows"] for s in range(3)]
    per_run = [np.mean([r["auroc"] for r in rows if r["ood_group"] == "near"]) for rows in runs]
    assert near["auroc"] == pytest.approx(np.mean(per_run), abs=1e-12)
    assert near["auroc_std"] == pytest.approx(np.std(per_run), abs=1e-12)
    md = (tmp_path / "agg" / "aggregate.md").read_text()
    assert "openood-cifar10" in md and "FPR95 variant openood (OpenOOD's" in md and "ID Acc." in md


def test_imagenet_training_images_are_fetched_by_hand(tmp_path, capsys):
    """OpenOOD does not distribute ImageNet's training images: with everything else in place, --download
    fetches nothing, does not call imagenet_1k's folder incomplete, and says where the training images go."""
    import socket

    import verify_data
    data = tmp_path / "data"
    datagen.write_openood(data, "imagenet200", n_id=(3, 2, 2), n_ood=2)
    train = data / "benchmark_imglist" / "imagenet200" / "train_imagenet200.txt"
    for line in train.read_text().split("\n"):
        if line:
            (data / "images_largescale" / line.split()[0]).unlink()
    with socket.socket() as s:  # a mirror nobody serves: nothing may be fetched
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    rc = verify_data.main(["--dataset_path", str(data), "--benchmark", "openood", "--for", "imagenet200",
                           "--download", "--mirror", dead])
    out, err = capsys.readouterr()
    assert rc == 1 and "download failed" not in err
    assert "ImageNet-200 train: not downloadable automatically. ImageNet-1k's training images (ILSVRC2012" in out
    assert "images_largescale/imagenet_1k/train/ as train_imagenet200.txt names them" in out


def test_a_sweep_inside_a_results_folder_is_not_another_run(cifar, bench, tmp_path):
    """aggregate_results.py on a results folder that also holds a sweep (results/<dataset>/<model>/sweep/)
    aggregates the results.json runs only: the sweep's selected.json is read where no results.json is."""
    from ood.reporting.aggregate import find_results
    folder = tmp_path / "r"
    test_score_ood_detection.main(cifar + ["--score", "MSP", "--results_dir", str(folder)])
    sweep_scores.main(cifar + ["--grid", "ReAct:percentile=60,90", "--select_on", "val", "--results_dir",
                               str(folder / "sweep")])
    assert find_results([folder]) == [folder / "results.json"]
    assert find_results([folder / "sweep"]) == [folder / "sweep" / "selected.json"]
