"""CIFAR-style ResNet18 / ResNet34 (He et al., 2016), as used by the SHE and RecLag code.

Differences from torchvision's ImageNet ResNet: a 3x3 stride-1 stem and no max-pool, so the network keeps
the resolution of small inputs. Global average pooling makes it work at any input size (112x112 in the
paper's protocol). The penultimate feature phi(x) is the pooled output of the last block, after its ReLU,
so phi >= 0. Weights are initialised as in the reference code: Kaiming normal (fan-out) convolutions,
BatchNorm 1 / 0, the final linear layer N(0, 0.01) with zero bias.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_backbone


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, num_blocks, num_classes=10, in_channels=3, widths=(64, 128, 256, 512)):
        super().__init__()
        self.in_planes = widths[0]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = self._make_layer(widths[0], num_blocks[0], 1)
        self.layer2 = self._make_layer(widths[1], num_blocks[1], 2)
        self.layer3 = self._make_layer(widths[2], num_blocks[2], 2)
        self.layer4 = self._make_layer(widths[3], num_blocks[3], 2)
        self.feature_dim = widths[3]
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():  # the reference's initialisation (its models/ResNet.py)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward_features(self, x):
        """phi(x): globally average-pooled output of the last block (after its ReLU)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


@register_backbone("resnet18", input_size=112)
def resnet18(num_classes=10, in_channels=3, **_):
    return ResNet([2, 2, 2, 2], num_classes, in_channels)


@register_backbone("resnet34", input_size=112)
def resnet34(num_classes=10, in_channels=3, **_):
    return ResNet([3, 4, 6, 3], num_classes, in_channels)
