"""From scores to numbers: the metrics (``metrics``), intervals and paired tests (``uncertainty``), the
evaluation protocols (``protocols``), a result row's schema (``rows``, a leaf), comparisons between the
rows of one table (``comparisons``), the fit -> score -> rows step of every score (``scoring``) and a
sweep's grid and selection (``sweep``). Imports the kernel, the score registry, ``ood.data`` and, for a
sweep's cost, ``ood.cache``; never the reports."""
from ood._moved import forward

__getattr__ = forward("ood.evaluation")  # the names of the earlier module ood/evaluation.py, now .protocols
