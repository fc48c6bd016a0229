"""The ImageNet-1k entry points (generate_stored_pattern_imagenet.py, test_score_ood_detection_imagenet.py),
as the authors' scripts of those names: their defaults put in front of the user's arguments."""
import sys

IMAGENET_DEFAULTS = "--dataset imagenet --model resnet50 --pretrained"


def imagenet_argv(argv=None):
    """``argv`` with the ImageNet defaults put in front of it, for each one the user did not give."""
    argv = list(sys.argv[1:] if argv is None else argv)
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    pre = []
    if "--dataset" not in given:
        pre += ["--dataset", "imagenet"]
    if "--model" not in given:
        pre += ["--model", "resnet50"]
    if not given & {"--pretrained", "--checkpoint"}:
        pre += ["--pretrained"]
    return pre + argv
