#!/usr/bin/env python3
"""Score the ID test set and the OOD sets with MSP, Energy, ReAct, HE, SHE and RecLag, from the cached features
(the backbone runs only for an image set whose cache is missing or stale), and report AUROC, AUPR and
FPR95 (ID positive) as results.json / .csv / .md / .tex, optional per-sample scores and plots.

Example:  python test_score_ood_detection.py --dataset cifar10 --model resnet18 --score all
"""
import sys
import time
import warnings

import numpy as np

import scores
from ood import cli
from ood import reports
from ood.data import resolve_ood
from ood.errors import UserError, cli_main
from ood.evaluation import PROTOCOLS, evaluate
from ood.metrics import FPR_VARIANTS
from ood.pipeline import Run


def build_parser():
    p = cli.parser(__doc__)
    cli.add_common(p)
    g = p.add_argument_group("evaluation")
    g.add_argument("--score", nargs="+", default=["all"], help=f"{', '.join(scores.ORDER)} or all")
    g.add_argument("--ood", nargs="+", default=None,
                   help="OOD sets (default: the nine of the CIFAR protocol, or the four of ImageNet): "
                        "SVHN LSUN_C LSUN_R iSUN Places Textures TinyImageNet SUN iNaturalist "
                        "(case-insensitive), or NAME=PATH for an ImageFolder tree of your own")
    g.add_argument("--protocol", choices=PROTOCOLS, default="full",
                   help="full: every OOD image once (RecLag code); sampled: --repeats draws of N_ID/5 "
                        "OOD images, mean and std (SHE / energy code)")
    g.add_argument("--repeats", type=int, default=10, help="draws of the sampled protocol")
    g.add_argument("--fpr_variant", choices=FPR_VARIANTS, default="standard",
                   help="standard: FPR at the largest threshold with TPR >= 95%%; closest: the energy/SHE "
                        "code's ROC point with recall closest to 95%%; strict: the RecLag code's first "
                        "ROC point with TPR > 95%%")
    g.add_argument("--results_dir", default=None, help="default results/<dataset>/<model>/")
    g.add_argument("--save_scores", action="store_true", help="also write the per-sample scores.npz")
    g.add_argument("--plot", action="store_true", help="also write score histograms and ROC curves")
    g.add_argument("--stored_pattern_dir", default="stored_pattern")
    scores.add_score_args(p)
    return p


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    t0 = time.time()
    run = Run(args, args.stored_pattern_dir)
    names = scores.resolve_names(args.score)
    ood_names = [resolve_ood(o).name for o in (args.ood or run.id_set.default_ood)]
    if args.repeats < 1:
        raise UserError("--repeats must be at least 1.")
    id_feats = run.features("test")
    ood_feats = {o: run.features(o) for o in ood_names}
    head = run.head()
    opts = scores.options(args, run.spec, run.device)

    rows, per_score = [], {}
    for name in names:
        score = scores.make_score(name, opts)
        state = run.pattern(score) if score.needs_fit else {}
        values = {k: _score_set(score, f, state, head, k) for k, f in [("id", id_feats), *ood_feats.items()]}
        per_score[name] = values
        for o in ood_names:
            try:
                m = evaluate(values["id"], values[o], o, args.protocol, args.repeats, args.seed, args.fpr_variant)
            except ValueError as e:
                raise UserError(f"score {name} against {o}: {e}") from None
            rows.append({"id_dataset": run.id_set.name, "model": args.model, "score": name, "ood_dataset": o,
                         **m, "fpr_variant": args.fpr_variant, "input_size": run.size,
                         "feature_precision": "fp32" if run.amp == "off" else run.amp})

    out = args.results_dir or f"results/{run.id_set.name}/{cli.safe_model_name(args.model)}"
    caption = (f"{run.id_set.name}, {args.model} @ {run.size}px, {args.protocol} protocol"
               + (f" ({args.repeats} draws, seed {args.seed})" if args.protocol == "sampled" else "")
               + f", FPR95 variant {args.fpr_variant}; FPR95 and AUROC in %")
    md = reports.write_results(rows, out, caption)
    if args.save_scores:
        reports.save_scores(per_score, out)
    if args.plot:
        reports.plot(per_score, out)
    print(caption)
    print(md, end="")
    print(f"results in {out}/ ({time.time() - t0:.1f} s)")
    return rows


def _score_set(score, feats, state, head, set_name):
    """Scores of one image set; warnings (e.g. inputs routed to a class without stored patterns) are
    printed once, naming the set."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = score.score(feats, state, head).numpy()
    for w in caught:
        print(f"warning: {'ID test' if set_name == 'id' else set_name}: {w.message}", file=sys.stderr)
    return values


if __name__ == "__main__":
    main()
