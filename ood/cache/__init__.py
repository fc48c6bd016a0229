"""The feature store: one backbone pass per image set, cached and keyed on what it was computed from
(``features``: extraction, the store, the fitted patterns), and those keys (``fingerprint``). Imports the
kernel, ``ood.system``, ``ood.data`` and ``ood.training.checkpoints``."""
