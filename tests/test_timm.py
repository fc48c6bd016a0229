"""timm backbones (``--model timm:<name>``) through the scripts: the cached features are timm's own
pre-logits and the logits its output; a backbone's own preprocessing (timm's data config, torchvision's
``weights.transforms()``) is what ``--pretrained`` gets, what the cache records and what rows say, and
changing it recomputes the features; timm's weights offline and unknown names are one line."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import timm.data
import torch
import torchvision

import datagen
import models
import test_score_ood_detection
from ood import data as D
from ood.errors import UserError
from ood.runtime.setup import Setup

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--workers", "0", "--device", "cpu", "--amp", "off", "--quiet", "--batch_size", "16"]


def _checkpoint(path, name, classes, channels):
    torch.manual_seed(0)
    torch.save(models.build_model(name, classes, channels).state_dict(), path)
    return path


def _timm_reference(name, state, classes, channels):
    """timm's own model with the same weights (the backbone's state dict holds it under ``model.``)."""
    net = timm.create_model(name, pretrained=False, num_classes=classes, in_chans=channels).eval()
    net.load_state_dict({k[len("model."):]: v for k, v in state.items()})
    return net


@pytest.mark.parametrize("name,size", [("resnet10t", 32), ("test_vit", 160)])  # a CNN and a ViT
def test_cached_features_are_timms_pre_logits(name, size, small_fmnist, tmp_path):
    """Through test_score_ood_detection.py: phi of every ID test image equals timm's
    ``forward_head(forward_features(x), pre_logits=True)`` on the same preprocessed input, the logits its
    ``model(x)``; every registered score then runs on them."""
    ckpt = _checkpoint(tmp_path / f"{name}.pt", f"timm:{name}", 10, 1)
    rows = test_score_ood_detection.main(["--dataset", "fashionmnist", "--model", f"timm:{name}", "--checkpoint",
                                          str(ckpt), "--dataset_path", str(small_fmnist), "--resize_val",
                                          str(size), "--ood", "iSUN", "--score", "MSP", "Energy", "ViM", "KNN",
                                          "--knn_k", "3", "--vim_dim", "8", *RUN])
    assert {r["score"] for r in rows} == {"MSP", "Energy", "ViM", "KNN"}
    assert all(r["preprocessing"]["source"] == "dataset" for r in rows)
    cached = torch.load(next(Path("stored_pattern").glob("fashionmnist/*/features/test.pt")), weights_only=True)
    fm = D.get_id_set("fashionmnist")
    images = D.build_id_dataset(fm, small_fmnist, "test", D.test_transform(fm, size))
    x = torch.stack([img for img, _ in images])
    net = _timm_reference(name, torch.load(ckpt, weights_only=True), 10, 1)
    with torch.no_grad():
        torch.testing.assert_close(cached["features"], net.forward_head(net.forward_features(x), pre_logits=True),
                                   rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(cached["logits"], net(x), rtol=1e-4, atol=1e-4)


def _timm_transform(name):
    cfg = timm.models.get_pretrained_cfg(name)
    return timm.data.create_transform(**timm.data.resolve_data_config(pretrained_cfg=cfg.to_dict()))


def test_pretrained_backbones_get_their_weights_preprocessing(tmp_path):
    """--pretrained (weights used as they are) defaults to the weights' own transform, for torchvision and
    timm; --preprocessing dataset overrides it; a backbone without weights has none to offer."""
    p = test_score_ood_detection.build_parser([])
    base = ["--dataset", "imagenet", "--device", "cpu", "--dataset_path", str(tmp_path)]
    tv = Setup.from_args(p.parse_args(base + ["--model", "tv:resnet18", "--pretrained"]), False)
    assert tv.preprocessing == "backbone"
    assert repr(tv.test_transform()) == repr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms())
    tm = Setup.from_args(p.parse_args(base + ["--model", "timm:resnet10t", "--pretrained"]), False)
    assert tm.preprocessing == "backbone" and tm.input_size == 176  # the weights' crop
    assert repr(tm.test_transform()) == repr(_timm_transform("resnet10t"))
    own = Setup.from_args(p.parse_args(base + ["--model", "timm:resnet10t", "--pretrained", "--preprocessing",
                                               "dataset"]), False)
    assert own.preprocessing == "dataset"  # ImageNet's Resize + CenterCrop at the backbone's default size
    assert repr(own.test_transform()) == repr(D.test_transform(D.get_id_set("imagenet"), 176))
    with pytest.raises(UserError, match="--preprocessing backbone: resnet18 declares no preprocessing"):
        Setup.from_args(p.parse_args(base + ["--model", "resnet18", "--preprocessing", "backbone",
                                             "--checkpoint", str(tmp_path / "x.pt")]), False)


@pytest.mark.parametrize("name,weights_transform", [
    ("timm:resnet10t", lambda: _timm_transform("resnet10t")),
    ("tv:resnet18", lambda: torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms())])
def test_the_cache_records_the_preprocessing(name, weights_transform, data, tmp_path, monkeypatch):
    """--preprocessing backbone: the feature cache's fingerprint and every row hold the backbone's own
    transform; switching to --preprocessing dataset recomputes the features (never serves the old ones)."""
    monkeypatch.chdir(tmp_path)
    ckpt = _checkpoint(tmp_path / "net.pt", name, 10, 3)
    args = ["--dataset", "cifar10", "--model", name, "--checkpoint", str(ckpt), "--dataset_path", str(data),
            "--ood", "iSUN", "--score", "MSP", "--subset", "12", *RUN]
    rows = test_score_ood_detection.main(args + ["--preprocessing", "backbone", "--results_dir", "a"])
    cache = next(Path("stored_pattern").glob("cifar10/*/features/test.pt"))
    first = torch.load(cache, weights_only=True)
    assert first["fingerprint"]["transform"] == repr(weights_transform())
    assert all(r["preprocessing"]["source"] == "backbone" for r in rows)
    assert rows[0]["preprocessing"]["transform"] == " ".join(repr(weights_transform()).split())
    rows = test_score_ood_detection.main(args + ["--preprocessing", "dataset", "--results_dir", "b"])
    second = torch.load(cache, weights_only=True)
    assert second["fingerprint"]["transform"] != first["fingerprint"]["transform"]
    assert second["digest"] != first["digest"] and rows[0]["preprocessing"]["source"] == "dataset"


def test_unknown_timm_name_is_one_line():
    with pytest.raises(UserError, match="timm has no model named 'resnet10'; close: .*resnet10t"):
        models.get_spec("timm:resnet10")


@pytest.mark.slow  # a script run (see pytest.ini)
def test_timm_weights_offline_are_one_line(tmp_path):
    """--pretrained timm weights without the hub (HF_HUB_OFFLINE, an empty cache): one line naming the
    weights and what to do, exit status 2, before any image is extracted."""
    data = tmp_path / "data"
    for split in ("train", "val"):
        datagen.write_image_folder(data / "imagenet" / split, n=4, subdirs=("n01440764", "n01443537"))
    datagen.write_image_folder(data / "iSUN", n=4)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, str(ROOT / "test_score_ood_detection.py"), "--dataset", "imagenet",
                           "--model", "timm:resnet10t", "--pretrained", "--dataset_path", str(data), "--ood",
                           "iSUN", "--score", "MSP", *RUN], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "could not load timm's pretrained weights of resnet10t" in err[0]
    assert not (tmp_path / "stored_pattern").exists() or not list((tmp_path / "stored_pattern").rglob("test.pt"))
