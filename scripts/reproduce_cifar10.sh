#!/usr/bin/env bash
# The paper's CIFAR-10 tables: ResNet18, ResNet34 and WRN-40-2, six scores, nine OOD sets, full and
# sampled protocols, optionally several seeds. Same options as reproduce_cifar.sh (--help).
#   bash scripts/reproduce_cifar10.sh --dataset_path ./data --seeds 1 2 3 --device cuda:0
exec bash "$(dirname "${BASH_SOURCE[0]}")/reproduce_cifar.sh" cifar10 "$@"
