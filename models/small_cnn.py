"""A small VGG-style CNN for low-resolution inputs (Fashion-MNIST at 28x28): the backbone of the CPU
demo. Three stages of 3x3 conv-BN-ReLU, max-pooling between them, global average pooling; phi is the
pooled output of the last ReLU (d = 4 * width), so phi >= 0 as for the ResNets."""
import torch
import torch.nn as nn

from .registry import register_backbone


def _stage(cin, cout, n):
    layers = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                   nn.ReLU(inplace=True)]
    return layers


class SmallCNN(nn.Module):
    def __init__(self, num_classes=10, in_channels=1, width=32):
        super().__init__()
        w = width
        self.body = nn.Sequential(*_stage(in_channels, w, 1), *_stage(w, w, 1), nn.MaxPool2d(2),
                                  *_stage(w, 2 * w, 2), nn.MaxPool2d(2), *_stage(2 * w, 4 * w, 2))
        self.feature_dim = 4 * w
        self.fc = nn.Linear(4 * w, num_classes)

    def forward_features(self, x):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.body(x), 1), 1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


@register_backbone("cnn", input_size=28)  # the CPU demo's (Fashion-MNIST at 28x28)
def small_cnn(num_classes=10, in_channels=1, width=32, **_):
    return SmallCNN(num_classes, in_channels, width)
