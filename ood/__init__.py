"""Shared code of the RecLag repository, as a small kernel and sub-packages whose imports point one way
(down this list; a test builds the import graph from the source and fails on a cycle):

- the kernel, which plug-ins import: ``errors`` (UserError), ``params`` (declared settings and their
  flags), ``plugins`` (``package.module:Class`` names), ``io`` (atomic writes, locks, checksums);
- ``system``: device, precision, progress lines, what a launched step read;
- ``data``: every ID and OOD set and benchmark declared once, their layouts on disk, download, verify;
- ``training``: the training loop, recipes, checkpoints;
- ``cache``: one backbone pass per image set, cached features and fitted patterns, their keys;
- ``evaluation``: metrics, intervals and tests, protocols, the result-row schema, comparisons, scoring,
  the sweep;
- ``reporting``: results folders, tables, figures, the transaction, aggregation over seeds;
- ``runtime``: the scripts' entry, options, setup, run opening, the launcher;
- ``commands``: one module per script, its command line and its work;
- ``api``: the scripts as Python calls, and scoring of features a user brings.

The scores live in the package ``scores`` (one file each), the backbones in ``models``; both import the
kernel only. Modules of the earlier flat layout (``ood.features``, ``ood.metrics``, ...) still import,
with a FutureWarning naming their new path (``ood._moved``).
"""
from ood import _moved

_moved.install()
