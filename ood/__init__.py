"""Shared code of the RecLag repository. Its modules fall into five rooms; a change belongs in one:

- **running a script**: ``run`` (the one way every entry point opens a run: ``open_run``,
  ``script_parser``), ``setup`` (the immutable Setup built once from the arguments), ``cli`` (shared
  options), ``params`` (declared settings and their flags), ``plugins`` (``package.module:Class`` names),
  ``errors`` (one-line errors, exit status 2), ``progress`` (progress lines where no terminal shows
  a bar), ``device`` (which device, and what produced the numbers),
  ``accel`` (precision, memory layout, torchrun);
- **data sets and benchmarks**: ``data`` (every ID and OOD set declared once, with its layout on disk),
  ``package_sets`` (the offline sets shipped inside Python packages), ``verify`` (the data checker,
  derived from the declarations);
- **backbones and training**: ``training``, ``recipes`` (the fixed and the authors' literal recipe),
  ``reference_autoaugment``, ``checkpoints``;
- **the feature store and caches**: ``features`` (one backbone pass per image set, stored patterns),
  ``fingerprint`` (what a cache is keyed on), ``io`` (atomic writes, locks, early writability checks);
- **evaluation and reports**: ``scoring`` (scores to result rows), ``evaluation`` (the protocols),
  ``metrics``, ``results`` (a results folder), ``commit`` (a run's outputs as a unit), ``reports``
  (tables and figures), ``aggregate`` (mean and std over seeds).

The scores themselves live in the package ``scores`` (one file each, one registry line), the backbones
in ``models``.
"""
