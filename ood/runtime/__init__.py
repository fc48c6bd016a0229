"""Running a script: its entry (``entry``: one-line errors, exit status 2), the shared options
(``options``), the immutable Setup built once from them (``setup``), opening a run (``run``: the
checkpoint, the feature store, the scores) and the cluster launcher (``launch``). It may import every
sub-package below it; only ``ood.commands`` and ``ood.api`` import it."""
