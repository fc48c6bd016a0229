"""Training a backbone: the training loop, checkpoints and resumption (``trainer``), the fixed recipe and
the authors' literal one (``recipes``, ``reference_autoaugment``), reading, checking and cleaning
checkpoints (``checkpoints``), and a benchmark's released checkpoints (``released``: fetched, unpacked
and checked by verify_data.py --checkpoints). Imports the kernel, ``models``, ``ood.system`` and ``ood.data``."""
from ood._moved import forward

__getattr__ = forward("ood.training")  # the names of the earlier module ood/training.py, now ood.training.trainer
