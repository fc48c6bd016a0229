"""OpenOOD v1.5's ResNet18 backbones, with OpenOOD's state-dict layout, so its released checkpoints load.

OpenOOD v1.5 (github.com/Jingkang50/OpenOOD) publishes one ``best.ckpt`` per benchmark and training run: a
plain state dict of the network (its recorders save ``net.state_dict()``, of ``net.module`` under
DataParallel). Loading one needs a module whose parameter and buffer names and shapes are exactly those of
OpenOOD's network; this module provides the two that its CIFAR and ImageNet-200 benchmarks use:

- ``openood_resnet18_32x32`` mirrors ``ResNet18_32x32`` of OpenOOD's ``openood/networks/resnet18_32x32.py``
  (CIFAR-10/100): a 3x3 stride-1 stem, no max-pool, BasicBlocks whose ``shortcut`` holds a 1x1 conv and a
  BatchNorm when the shape changes, global average pooling and ``fc``. That is exactly the CIFAR ResNet18
  of ``models/resnet.py`` (same names, same order; the pooling layer has no parameters), so it is built from
  it, but initialised as OpenOOD's network is: with PyTorch's default initialisation (OpenOOD's file sets
  none), which matters only when one trains it here.
- ``openood_resnet18_224x224`` mirrors ``ResNet18_224x224`` of ``openood/networks/resnet18_224x224.py``
  (ImageNet-200): torchvision's ResNet with BasicBlocks [2, 2, 2, 2], i.e. ``torchvision.models.resnet18``,
  whose layers this backbone adopts under their own names (a wrapper would prefix them).

In both, ``forward_features`` is the feature that OpenOOD's ``forward(x, return_feature=True)`` returns, the
flattened global average of layer4's output, and ``fc`` its last layer; the logits are ``fc(phi)``.
OpenOOD's ImageNet-1k backbones (ResNet-50, ViT-B/16, Swin-T) are torchvision's models with torchvision's
names and weights: use ``resnet50`` or ``tv:<name>`` for them. ``tests/test_openood_models.py`` checks key
names, shapes and outputs against OpenOOD's own network files (``tests/fixtures/openood_networks.npz``).
"""
import torch
import torch.nn as nn
import torchvision

from ood.errors import UserError

from .registry import register_backbone
from .resnet import ResNet


def _check(name, in_channels, pretrained):
    if in_channels != 3:
        raise UserError(f"{name} takes 3-channel (RGB) input, as OpenOOD's checkpoints do, not "
                        f"in_channels={in_channels}; use resnet18 or wrn for grayscale data sets.")
    if pretrained:
        raise UserError(f"{name} has no --pretrained weights: pass OpenOOD's best.ckpt with --checkpoint.")


@register_backbone("openood_resnet18_32x32", input_size=32)
def openood_resnet18_32x32(num_classes=10, in_channels=3, pretrained=False, **_):
    """OpenOOD's ResNet18_32x32 (CIFAR-10/100 benchmarks), with PyTorch's default initialisation."""
    _check("openood_resnet18_32x32", in_channels, pretrained)
    model = ResNet([2, 2, 2, 2], num_classes, 3)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            m.reset_parameters()
    return model


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet under torchvision's own parameter names (``conv1.weight``, ``layer1.0...``,
    ``fc.bias``): it adopts the model's layers as its own, rather than wrapping the model."""

    def __init__(self, model):
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        self.feature_dim = self.fc.in_features

    def forward_features(self, x):
        """phi(x): the flattened global average of layer4's output (after its ReLU)."""
        out = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(self.avgpool(out), 1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


@register_backbone("openood_resnet18_224x224", input_size=224)
def openood_resnet18_224x224(num_classes=200, in_channels=3, pretrained=False, **_):
    """OpenOOD's ResNet18_224x224 (ImageNet-200 benchmark): torchvision's resnet18, initialised as it is."""
    _check("openood_resnet18_224x224", in_channels, pretrained)
    return TorchvisionResNet(torchvision.models.resnet18(num_classes=num_classes))
