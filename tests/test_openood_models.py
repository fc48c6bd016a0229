"""OpenOOD v1.5's networks, side by side with this project's backbones (models/openood.py, tv:<name>).

tests/fixtures/openood_networks.npz holds what OpenOOD's own network classes compute on seeded weights
(tests/openood_weights.py) and a seeded input, and their state-dict key names and shapes (made by
tests/fixtures/make_openood_networks.py; see tests/fixtures/README.md). Here: the same keys, order and shapes,
so that OpenOOD's released best.ckpt files load unchanged; the same features and logits to float32
round-off; and load_backbone's handling of OpenOOD-style checkpoints and of mismatching ones.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

import models
from ood.training.checkpoints import load_backbone
from ood.errors import UserError
from openood_weights import seeded_input, seeded_state

FIXTURE = np.load(Path(__file__).parent / "fixtures" / "openood_networks.npz")
OURS = {"resnet18_32x32": "openood_resnet18_32x32", "resnet18_224x224": "openood_resnet18_224x224"}
TOL = {"rtol": 1e-4, "atol": 1e-4}


def fixture(name, part):
    return FIXTURE[f"{name}/{part}"]


def layout(state):
    """(key, "AxBxC") pairs of a state dict, in its order (the fixture's format)."""
    return [(k, "x".join(map(str, t.shape))) for k, t in state.items()]


def fixture_layout(name):
    return list(zip(fixture(name, "keys").tolist(), fixture(name, "shapes").tolist()))


def build(name):
    return models.build_model(OURS[name], int(fixture(name, "num_classes"))).eval()


def outputs(model, name):
    with torch.no_grad():
        x = seeded_input(tuple(fixture(name, "input_shape")), int(FIXTURE["input_seed"]))
        phi = model.forward_features(x)
        return phi, model.fc(phi)


def assert_matches_fixture(name, phi, logits):
    ref_phi, ref_logits = fixture(name, "features"), fixture(name, "logits")
    assert phi.dtype == logits.dtype == torch.float32
    torch.testing.assert_close(phi, torch.from_numpy(ref_phi), **TOL)
    torch.testing.assert_close(logits[:, :ref_logits.shape[1]], torch.from_numpy(ref_logits), **TOL)


@pytest.mark.parametrize("name", sorted(OURS))
def test_state_dict_layout_is_openoods(name):
    m = build(name)
    assert layout(m.state_dict()) == fixture_layout(name)
    assert m.feature_dim == 512 and m.fc.in_features == 512


@pytest.mark.parametrize("name", sorted(OURS))
def test_features_and_logits_match_openood(name):
    m = build(name)
    m.load_state_dict(seeded_state(m, int(FIXTURE["state_seed"])))
    phi, logits = outputs(m, name)
    assert_matches_fixture(name, phi, logits)
    with torch.no_grad():
        torch.testing.assert_close(m(seeded_input(tuple(fixture(name, "input_shape")))), logits)


@pytest.mark.parametrize("name,head", [("resnet50", "fc"), ("swin_t", "head"), ("vit_b_16", "heads.head")])
def test_torchvision_backbones_match_openood(name, head):
    """OpenOOD's ResNet50, ViT_B_16 and Swin_T are torchvision's models under torchvision's names; the
    TorchvisionBackbone keeps the model as ``body`` (its head an identity) and the head as ``fc``. In all
    three the head is the model's last module, so its keys come last."""
    m = models.build_model(f"tv:{name}", 1000).eval()
    own = m.state_dict()
    theirs = {**{k[len("body."):]: v for k, v in own.items() if k.startswith("body.")},
              **{head + k[len("fc"):]: v for k, v in own.items() if k.startswith("fc.")}}
    assert len(theirs) == len(own) and layout(theirs) == fixture_layout(name)
    state = seeded_state(theirs, int(FIXTURE["state_seed"]))
    m.load_state_dict(m.from_torchvision_names(state))
    phi, logits = outputs(m, name)
    assert_matches_fixture(name, phi, logits)


def test_torchvision_checkpoint_under_torchvision_names_loads(tmp_path):
    """A ResNet-50 state dict under torchvision's names (OpenOOD's ImageNet-1k checkpoints are such) loads
    through load_backbone into --model resnet50; a wrong one names its first differing key."""
    m = models.build_model("resnet50", 1000).eval()
    theirs = {(k[len("body."):] if k.startswith("body.") else k): v for k, v in m.state_dict().items()}
    state = seeded_state(theirs, 3)
    torch.save(state, tmp_path / "r50.ckpt")
    fresh = models.build_model("resnet50", 1000)
    load_backbone(fresh, tmp_path / "r50.ckpt")
    assert torch.equal(fresh.fc.weight, state["fc.weight"]) and torch.equal(fresh.body.conv1.weight,
                                                                              state["conv1.weight"])
    del state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "bad.ckpt")
    with pytest.raises(UserError, match="first difference: 'body.layer1.0.conv1.weight' is missing"):
        load_backbone(models.build_model("resnet50", 1000), tmp_path / "bad.ckpt")


@pytest.mark.parametrize("name", sorted(OURS))
def test_openood_checkpoints_load(name, tmp_path):
    """OpenOOD's recorders save best.ckpt as torch.save(net.state_dict()) (of net.module under
    DataParallel): a plain state dict. With a "module." prefix or a {"state_dict": ...} wrapper it loads too."""
    state = seeded_state(build(name), int(FIXTURE["state_seed"]))
    assert layout(state) == fixture_layout(name)
    for i, ckpt in enumerate([state, {"module." + k: v for k, v in state.items()}, {"state_dict": state}]):
        torch.save(ckpt, tmp_path / f"best{i}.ckpt")
        m = build(name)
        load_backbone(m, tmp_path / f"best{i}.ckpt", {"model": OURS[name], "in_channels": 3,
                                                      "num_classes": m.fc.out_features})
        loaded = m.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in state.items())
    if name == "resnet18_32x32":  # the loaded model computes OpenOOD's outputs
        assert_matches_fixture(name, *outputs(m, name))


def _mismatch_message(model, state, path):
    torch.save(state, path)
    with pytest.raises(UserError, match="does not fit the requested model") as e:
        load_backbone(model, path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("name", sorted(OURS))
def test_mismatching_checkpoint_names_the_first_differing_key(name, tmp_path):
    m = build(name)
    state = seeded_state(m)
    keys = list(state)
    renamed = "layer2.0.shortcut.0.weight" if name == "resnet18_32x32" else "layer2.0.downsample.0.weight"
    assert renamed in keys
    bad = {(k.replace("layer2.0.", "layer2.0.x") if k == renamed else k): v for k, v in state.items()}
    bad["fc.weight"] = torch.zeros(7, 512)
    msg = _mismatch_message(m, bad, tmp_path / "bad.ckpt")
    assert f"first difference: {renamed!r} is missing from the checkpoint" in msg
    assert "1 missing keys" in msg and "1 unexpected keys" in msg and "1 keys of another shape" in msg
    # only a shape differs: that key, with both shapes
    msg = _mismatch_message(m, {**state, "fc.weight": torch.zeros(7, 512)}, tmp_path / "shape.ckpt")
    assert "first difference: 'fc.weight' has shape (7, 512) in the checkpoint but" in msg
    # every model key fits, the checkpoint has one more
    msg = _mismatch_message(m, {**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.ckpt")
    assert "first difference: 'extra.weight' is in the checkpoint but not in the model" in msg
    # a checkpoint of the other variant: the stems differ first (3x3 vs 7x7 conv1)
    other = build("resnet18_224x224" if name == "resnet18_32x32" else "resnet18_32x32")
    msg = _mismatch_message(other, state, tmp_path / "other.ckpt")
    assert "first difference: 'conv1.weight' has shape" in msg


def test_registry_entries_and_errors():
    for name, size in (("openood_resnet18_32x32", 32), ("openood_resnet18_224x224", 224)):
        spec = models.get_spec(name)
        assert spec.input_size == size and spec.he_beta == 0.01
        with pytest.raises(UserError, match="in_channels=1"):
            models.build_model(name, 10, in_channels=1)
        with pytest.raises(UserError, match="--pretrained"):
            models.build_model(name, 10, pretrained=True)
    m = models.build_model("openood_resnet18_224x224", 200)
    assert isinstance(m.maxpool, torch.nn.MaxPool2d) and m.conv1.kernel_size == (7, 7)
    assert m.fc.out_features == 200
