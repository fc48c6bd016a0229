"""Backbones: shapes, phi >= 0, fc(phi) == logits, grayscale input, the registry and its errors."""
import pytest
import torch

import models
from ood.errors import UserError


# Every registered backbone, and members of each family (a new backbone is tested without editing a test)
CONTRACT = [s.name for s in models.registered()] + ["tv:mobilenet_v3_small", "timm:resnet10t", "timm:test_vit"]


@pytest.mark.parametrize("name", CONTRACT)
def test_backbone_contract(name):
    """forward_features -> phi (N x feature_dim), fc a linear layer whose input is phi, forward = fc(phi),
    the architecture options resolved from their declarations; phi >= 0 for this repository's ReLU nets."""
    torch.manual_seed(0)
    spec = models.get_spec(name)
    options = models.resolve_options(spec, {})
    m = models.build_model(name, 7, **options).eval()
    size = spec.input_size if name.startswith("timm:") else 32  # timm's ViTs take their configured size
    x = torch.randn(3, 3, size, size)
    seen = []
    hook = m.fc.register_forward_hook(lambda mod, inputs, out: seen.append(inputs[0]))
    with torch.no_grad():
        phi = m.forward_features(x)
        logits = m(x)
    hook.remove()
    assert isinstance(m.fc, torch.nn.Linear) and phi.shape == (3, m.feature_dim) == (3, m.fc.in_features)
    assert logits.shape == (3, 7)
    torch.testing.assert_close(seen[-1], phi)  # the feature is what the head reads
    torch.testing.assert_close(m.fc(phi), logits)
    if ":" not in name:
        assert (phi >= 0).all()  # after the last ReLU


def test_wrn_options_and_dims():
    m = models.build_model("wrn", 7, layers=16, widen_factor=4, droprate=0.0)
    assert m.feature_dim == 256 and models.build_model("wrn", 7).feature_dim == 128


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
    from models.registry import _REGISTRY
    from models.wrn import wrn
    from ood.params import Param
    try:
        models.register("tiny_test", lambda num_classes, in_channels=3, **_: wrn(num_classes, in_channels, 10, 1, 0.0),
                        16)
        assert models.build_model("tiny_test", 4).fc.out_features == 4
        # an option another backbone declares differently would be one flag for both: refused at registration
        with pytest.raises(ValueError, match="option 'layers' is declared differently by backbone wrn"):
            models.register("clash", wrn, 16, options=(Param("layers", int, 3, "another depth"),))
        assert "clash" not in _REGISTRY
    finally:
        _REGISTRY.pop("tiny_test", None)


def test_pretrained_without_network_is_a_clear_error(monkeypatch, tmp_path):
    import torchvision
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*a, **k):
        raise OSError("network unreachable")
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(UserError, match="resnet50-0676ba61.pth"):
        models.build_model("resnet50", 1000, pretrained=True)
