"""Backbones: shapes, phi >= 0, fc(phi) == logits, grayscale input, the registry and its errors."""
import pytest
import torch

import models
from ood.errors import UserError


@pytest.mark.parametrize("name,kwargs,dim", [
    ("resnet18", {}, 512), ("resnet34", {}, 512), ("wrn", {}, 128),
    ("wrn", {"layers": 16, "widen_factor": 4, "droprate": 0.0}, 256), ("resnet50", {}, 2048),
    ("tv:mobilenet_v3_small", {}, 1024)])
def test_backbone_contract(name, kwargs, dim):
    torch.manual_seed(0)
    m = models.build_model(name, 7, **kwargs).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        phi = m.forward_features(x)
        logits = m(x)
    assert phi.shape == (3, dim) == (3, m.feature_dim)
    assert logits.shape == (3, 7)
    torch.testing.assert_close(m.fc(phi), logits)
    if not name.startswith("tv:"):
        assert (phi >= 0).all()  # after the last ReLU


def test_cifar_resnet_structure():
    m = models.build_model("resnet18", 10)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert not any(isinstance(x, torch.nn.MaxPool2d) for x in m.modules())
    assert [len(getattr(m, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    assert [len(getattr(models.build_model("resnet34", 10), f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    n18 = sum(p.numel() for p in m.parameters())
    assert 11.1e6 < n18 < 11.3e6  # the CIFAR ResNet18's 11.17M parameters


def test_wrn_40_2_size():
    m = models.build_model("wrn", 10)
    assert abs(sum(p.numel() for p in m.parameters()) - 2.24e6) < 0.02e6  # WRN-40-2: 2.2M parameters
    with pytest.raises(ValueError, match="6n\\+4"):
        models.build_model("wrn", 10, layers=41)


@pytest.mark.parametrize("name", ["resnet18", "wrn", "tv:resnet18"])
def test_grayscale_in_channels(name):
    m = models.build_model(name, 10, in_channels=1).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_default_sizes_and_betas():
    assert models.get_spec("resnet18").input_size == 112 and models.get_spec("resnet34").input_size == 112
    assert models.get_spec("wrn").input_size == 64 and models.get_spec("resnet50").input_size == 224
    assert models.get_spec("resnet18").he_beta == 0.01 and models.get_spec("wrn").he_beta == 0.2


def test_registry_errors_and_register():
    with pytest.raises(UserError, match="unknown model"):
        models.get_spec("resnet19")
    with pytest.raises(UserError, match="no classification model"):
        models.build_model("tv:not_a_model", 10)
    with pytest.raises(UserError, match="--pretrained"):
        models.build_model("wrn", 10, pretrained=True)
    models.register("tiny_test", lambda num_classes, in_channels=3, **_: models.wrn(num_classes, in_channels, 10, 1, 0.0), 16)
    assert models.build_model("tiny_test", 4).fc.out_features == 4


def test_pretrained_without_network_is_a_clear_error(monkeypatch, tmp_path):
    import torchvision
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*a, **k):
        raise OSError("network unreachable")
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(UserError, match="resnet50-0676ba61.pth"):
        models.build_model("resnet50", 1000, pretrained=True)
