"""``hdvila eval-judge [--model DIR] [--n 2000] [--split test]``: the attribute judge's accuracy on
fresh demo-domain renders (:func:`hdvila.judge.evaluate.judge_accuracy`), as a markdown table."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="judge folder (default: the bundled checkpoints/judge)")
    parser.add_argument("--n", type=int, default=2000, help="renders to score (default 2000)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--seed", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    from hdvila.errors import UserError
    from hdvila.judge.evaluate import judge_accuracy
    from hdvila.judge.model import load_judge

    if args.n < 1:
        raise UserError("--n must be >= 1")
    acc = judge_accuracy(load_judge(args.model), args.n, args.split, args.seed)
    print(f"| attribute | accuracy ({args.n} {args.split} renders, 64 px) |\n|---|---|")
    for k, v in acc.items():
        print(f"| {k} | {100 * v:.2f}% |")
    return 0
