"""Judge accuracy on held-out renders (test split: attribute combinations unseen in training).

    python -m hdvila.judge.evaluate --n 2000
"""

from __future__ import annotations

import argparse

import torch

from hdvila.demo.dataset import DemoImageDataset
from hdvila.judge.model import ATTRIBUTE_NAMES, AttributeJudge, load_judge


@torch.no_grad()
def judge_accuracy(judge: AttributeJudge, n: int = 2000, split: str = "test", seed: int = 1,
                   resolution: int = 64, batch_size: int = 200) -> dict[str, float]:
    """Share of ``n`` renders of ``split`` whose attribute the judge reads correctly, per attribute."""
    data = DemoImageDataset(split, n, resolution=resolution, seed=seed)
    correct = torch.zeros(len(ATTRIBUTE_NAMES))
    for start in range(0, n, batch_size):
        items = [data[i] for i in range(start, min(start + batch_size, n))]
        images = torch.stack([it["image"] for it in items])
        labels = torch.stack([it["labels"] for it in items])
        pred = judge.predict(images)
        for j, k in enumerate(ATTRIBUTE_NAMES):
            correct[j] += (pred[k][0] == labels[:, j]).sum()
    return {k: float(correct[j]) / n for j, k in enumerate(ATTRIBUTE_NAMES)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    acc = judge_accuracy(load_judge(a.model), a.n, a.split, a.seed)
    print(f"| attribute | accuracy ({a.n} {a.split} renders, 64 px) |\n|---|---|")
    for k, v in acc.items():
        print(f"| {k} | {100 * v:.2f}% |")


if __name__ == "__main__":
    main()
