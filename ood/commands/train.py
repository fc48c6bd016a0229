"""train_model.py: train a backbone on an ID set with the fixed recipe (or the authors' literal one)."""
from ood.runtime import options as cli
from ood.runtime.run import open_run
from ood.training.trainer import Trainer

HYPER = ("epochs", "lr", "momentum", "weight_decay", "augment", "resume", "overwrite")


def build_parser(argv=None, doc=__doc__):
    cli.load_data_plugins(argv)
    p = cli.parser(doc)
    cli.add_common(p)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=cli.positive_int, default=100, help="training epochs")
    g.add_argument("--lr", type=cli.positive_float, default=0.2, help="initial learning rate (RecLag code 0.2, SHE code 0.1)")
    g.add_argument("--momentum", type=cli.nonnegative_float, default=0.9, help="SGD momentum")
    g.add_argument("--weight_decay", type=cli.nonnegative_float, default=5e-4, help="SGD weight decay (L2)")
    g.add_argument("--augment", choices=["autoaugment", "flip", "none"], default="autoaugment",
                   help="autoaugment: AutoAugment (CIFAR-10 policy) + flip, as the reference")
    g.add_argument("--resume", action="store_true", help="continue the run saved in the checkpoint")
    g.add_argument("--overwrite", action="store_true", help="start again even if the checkpoint exists")
    return p


def run(args):
    """Train; returns what ``Trainer.run`` returns (the checkpoint's path and its last epoch's log)."""
    with open_run(args, training=True) as run:  # joins torchrun's process group, and leaves it at the end
        return Trainer(run.setup, {k: getattr(args, k) for k in HYPER}).run()
