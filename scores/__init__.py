"""Score registry. ``make_scores(names, options)`` builds the requested scores from the CLI options.

Every score is "higher = more in-distribution" and returns its values in input order.
"""
from ood.errors import UserError

from .base import Score
from .hopfield import HE, SHE
from .logits import MSP, Energy
from .react import ReAct
from .reclag import RecLag

SCORES = {cls.name.lower(): cls for cls in (MSP, Energy, ReAct, HE, SHE, RecLag)}
ORDER = ["MSP", "Energy", "ReAct", "HE", "SHE", "RecLag"]


def resolve_names(names):
    """Map user-given names (case-insensitive, ``all``) to canonical score names, in table order."""
    wanted = []
    for n in names:
        if n.lower() == "all":
            wanted += ORDER
        elif n.lower() in SCORES:
            wanted.append(SCORES[n.lower()].name)
        else:
            raise UserError(f"unknown score {n!r}. Choose from {', '.join(ORDER)} or 'all'.")
    return [n for n in ORDER if n in wanted]


def make_score(name, opts):
    """Instantiate score ``name`` with the hyper-parameters in ``opts`` (a dict of CLI values)."""
    key = name.lower()
    if key == "msp":
        return MSP()
    if key == "energy":
        return Energy(T=opts["T"])
    if key == "react":
        return ReAct(percentile=opts["react_percentile"], T=opts["T"])
    if key == "he":
        return HE(beta=opts["he_beta"])
    if key == "she":
        return SHE()
    if key == "reclag":
        return RecLag(hidden=opts["hidden"], beta=opts["beta"], n_samples=opts["n_samples"],
                      batch_size=opts["reclag_batch"], epochs=opts["reclag_epochs"], lr=opts["reclag_lr"],
                      init=opts["init"], sampler=opts["sampler"], seed=opts["seed"], device=opts.get("learner_device"))
    raise UserError(f"unknown score {name!r}.")


def options(args, model_spec, device=None):
    """The score hyper-parameters of parsed CLI ``args``, with the model-dependent defaults filled in;
    ``device`` is where RecLag learns its memories."""
    opts = vars(args).copy()
    opts["learner_device"] = device
    if opts.get("he_beta") is None:
        opts["he_beta"] = model_spec.he_beta
    return opts


def add_score_args(parser):
    g = parser.add_argument_group("score hyper-parameters")
    g.add_argument("--T", type=float, default=1.0, help="temperature of Energy and ReAct (default 1)")
    g.add_argument("--react_percentile", type=float, default=90.0,
                   help="ReAct clips phi at this percentile of the training features (SHE code: 90; the "
                        "RecLag code used 98)")
    g.add_argument("--he_beta", type=float, default=None,
                   help="beta of HE (default: 0.01 for ResNets, 0.2 for WRN, as in the SHE code)")
    g = parser.add_argument_group("RecLag (defaults: the reference learner, learn_RecLag.py)")
    g.add_argument("--hidden", type=int, default=10, help="memory neurons H per class")
    g.add_argument("--beta", type=float, default=5.0, help="inverse temperature of RecLag (learning and score)")
    g.add_argument("--n_samples", type=int, default=5, help="memory samples S per input and step")
    g.add_argument("--reclag_batch", type=int, default=50, help="batch size B (the remainder is dropped)")
    g.add_argument("--reclag_epochs", type=int, default=50)
    g.add_argument("--reclag_lr", type=float, default=1e-3, help="Adam learning rate (betas 0.9/0.98, eps 1e-9)")
    g.add_argument("--init", choices=["random", "kmeans"], default="random",
                   help="initial memories: distinct random rows of X_c, or k-means++ centres; rescaled to norm 10")
    g.add_argument("--sampler", choices=["reference", "posterior"], default="reference",
                   help="reference: samples from softmax(z) as the published code (tf.random.categorical on "
                        "probabilities); posterior: samples from z, the paper's intent")
    return g
