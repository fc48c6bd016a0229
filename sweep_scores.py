#!/usr/bin/env python3
"""Sweep the declared settings of any registered score from the cached features: the backbone never runs
again (an image set whose cache is missing or stale is extracted once, as in the scoring script).

A grid is given as SCORE:SETTING=v1,v2,... (settings of one score combine, different scores are swept
independently); every setting a score declares can be an axis, and a fit is reused by every grid point
whose fit settings are equal (stored patterns are keyed on them). A seed axis (RecLag's ``seed``) pools:
each grid point is fitted once per seed and reported as mean ± std with the seeds' own metrics, as
``test_score_ood_detection.py --reclag_seed 1 2 3`` does; its rows equal single runs of that script.

Writes into --results_dir (default results/<dataset>/<model>/sweep/): sweep.json (the rows, with the
results.json schema and each grid point's settings; the grid; the costs), sweep.md (a table per score),
and per score a heat map (two swept settings, mean AUROC over the test OOD sets) or a line plot (one
setting, one line per OOD set): sweep_<score>.png. At the end it prints its table: selected.md's with
--select_on (below), else sweep.md's.

--select_on NAME... picks each score's setting on those validation OOD sets only (best mean AUROC, then
lower mean FPR95) and writes the test table with the chosen settings over the other sets: selected.md
and selected.json (the validation sets are left out of the test average; the caption names the choice).
Under --benchmark openood, --select_on val is OpenOOD v1.5's automatic search: each setting is chosen on
the benchmark's validation pair (the ID val split against the validation OOD set, AUROC), and the table
reports the near and far OOD sets against the ID test split.
--operating_point draws RecLag's binary decision: the share of the ID test set and of each OOD set that
the rectified dynamics keep (not sent to the OOD attractor) against the inverse memory strength lambda,
with the lambda that keeps 95 % of ID inputs marked (reclag_operating_point.png and .csv).

A folder holds one sweep: the files an earlier sweep wrote there (ood.reporting.results.SWEEP_FILES) are moved to
previous/<time>/, the user's own files stay, and a sweep's files land as a unit (ood.reporting.commit): all of them
or, after a full disk, an error or a kill before the commit point, none.

Example:
  python sweep_scores.py --dataset fashionmnist --model cnn --ood Digits Photos Faces GaussianNoise UniformNoise \\
      --grid RecLag:hidden=1,2,5,10,20,50 RecLag:beta=0.5,1,2,5,10,20 HE:beta=0.001,0.01,0.1,1 \\
      --select_on GaussianNoise UniformNoise --operating_point
"""
import sys

from ood import api
from ood.runtime.entry import cli_main


def build_parser(argv=None):
    return api.parser("sweep", argv, __doc__)


@cli_main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    swept = api.sweep(api.parse("sweep", argv, __doc__))
    print(swept.table, end="")
    if swept.moved:
        print(f"note: {swept.folder} held an earlier sweep; it was moved to {swept.moved}/")
    print(f"{len(swept.rows)} rows, {swept.points} grid points; "
          f"mean {swept.cost['seconds_per_point']:.2f} s per point; results in {swept.folder}/")
    return swept.rows


if __name__ == "__main__":
    main()
