"""Small backbones for tests, loaded through ``--model tiny_models:<builder>``."""
import torch
import torch.nn as nn


class NoNormNet(nn.Module):
    """Two convolutions without BatchNorm: its training under DDP equals single-process training with
    the same global batches (BatchNorm statistics would be per process on CPU, where SyncBatchNorm is
    not available)."""

    def __init__(self, num_classes=10, in_channels=3, width=8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.feature_dim = 2 * width
        self.fc = nn.Linear(2 * width, num_classes)

    def forward_features(self, x):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.body(x), 1), 1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


def no_norm_net(num_classes=10, in_channels=3, **_):
    return NoNormNet(num_classes, in_channels)


no_norm_net.input_size = 16


SEEN_SIZES = []  # the input sizes a recording_net has been given, in order


class RecordingNet(NoNormNet):
    """NoNormNet that records the spatial size of every batch it sees (training, validation, extraction)."""

    def forward_features(self, x):
        SEEN_SIZES.append(tuple(x.shape[-2:]))
        return super().forward_features(x)


def recording_net(num_classes=10, in_channels=3, **_):
    return RecordingNet(num_classes, in_channels)


recording_net.input_size = 16
