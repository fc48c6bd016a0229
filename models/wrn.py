"""Wide ResNet (Zagoruyko & Komodakis, 2016), WRN-40-2 by default, as in the energy-OOD and SHE code.

The penultimate feature is avgpool(relu(bn(block3))); adaptive pooling makes it work at any input size
(64x64 in the paper's protocol).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ood.params import Param

from .registry import register_backbone

WRN_OPTIONS = (
    Param("layers", int, 40, "wrn: depth", "WRN-40-2 of the energy-OOD and SHE code",
          check=lambda v: None if v >= 10 and (v - 4) % 6 == 0 else "WRN depth must be 6n+4 with n >= 1 "
                                                                    "(10, 16, 22, 28, 40, ...)"),
    Param("widen_factor", int, 2, "wrn: widen factor", bounds="[1, inf)", aliases=("--widen-factor",)),
    Param("droprate", float, 0.3, "wrn: dropout rate", bounds="[0, 1)"),
)


class BasicBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, drop_rate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes
        self.shortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = F.relu(self.bn2(y))
        if self.drop_rate > 0:
            y = F.dropout(y, p=self.drop_rate, training=self.training)
        y = self.conv2(y)
        return y + (x if self.equal_in_out else self.shortcut(o))


class WideResNet(nn.Module):
    def __init__(self, depth=40, num_classes=10, widen_factor=2, drop_rate=0.3, in_channels=3):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4 (e.g. 16, 22, 28, 40), got {depth}")
        n = (depth - 4) // 6
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False)
        self.block1 = self._group(ch[0], ch[1], n, 1, drop_rate)
        self.block2 = self._group(ch[1], ch[2], n, 2, drop_rate)
        self.block3 = self._group(ch[2], ch[3], n, 2, drop_rate)
        self.bn = nn.BatchNorm2d(ch[3])
        self.feature_dim = ch[3]
        self.fc = nn.Linear(ch[3], num_classes)
        for m in self.modules():  # initialisation of the original code
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.bias.data.zero_()

    @staticmethod
    def _group(in_planes, out_planes, n, stride, drop_rate):
        return nn.Sequential(*[BasicBlock(in_planes if i == 0 else out_planes, out_planes,
                                          stride if i == 0 else 1, drop_rate) for i in range(n)])

    def forward_features(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


@register_backbone("wrn", input_size=64, he_beta=0.2, options=WRN_OPTIONS)
def wrn(num_classes=10, in_channels=3, layers=40, widen_factor=2, droprate=0.3, **_):
    return WideResNet(layers, num_classes, widen_factor, droprate, in_channels)
