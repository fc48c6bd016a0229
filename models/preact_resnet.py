"""Pre-activation ResNet-18 for small inputs (He et al., "Identity Mappings in Deep Residual Networks",
ECCV 2016): BatchNorm and ReLU before each convolution, the identity path untouched, as many OOD papers
train on CIFAR. Stem and stages as the CIFAR ResNet of models/resnet.py (3x3 stride-1 stem, no max-pool,
widths 64-128-256-512); the blocks end without a ReLU, so a final BatchNorm + ReLU precedes the pooling
and phi = avgpool(relu(bn(layer4))) >= 0, as for the other ResNets here.

This module is also the example of adding a backbone: the builder below with its ``@register_backbone``
line, and one import in models/__init__.py; the contract test picks it up from the registry.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_backbone


class PreActBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:  # the projection reads the pre-activated input too
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet(nn.Module):
    def __init__(self, num_blocks, num_classes=10, in_channels=3, widths=(64, 128, 256, 512)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages, planes = [], widths[0]
        for i, (width, n) in enumerate(zip(widths, num_blocks)):
            blocks = []
            for j in range(n):
                blocks.append(PreActBlock(planes, width, 2 if (j == 0 and i > 0) else 1))
                planes = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(widths[-1])
        self.feature_dim = widths[-1]
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x):
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return torch.flatten(F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1), 1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


@register_backbone("preact_resnet18", input_size=112)
def preact_resnet18(num_classes=10, in_channels=3, **_):
    return PreActResNet([2, 2, 2, 2], num_classes, in_channels)
