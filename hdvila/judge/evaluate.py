"""Judge accuracy on held-out renders (test split: attribute combinations unseen in training).

    hdvila eval-judge --n 2000
"""

from __future__ import annotations

import torch

from hdvila.demo.dataset import DemoImageDataset
from hdvila.judge.model import ATTRIBUTE_NAMES, AttributeJudge


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


@torch.no_grad()
def judge_images(judge: AttributeJudge, images: torch.Tensor,
                 batch: int = 200) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The judge's reading of ``images`` [N, 3, H, W] in [-1, 1]: attribute -> (class index [N],
    confidence [N]), in batches of ``batch``."""
    preds = [judge.predict(images[i: i + batch]) for i in range(0, len(images), batch)]
    return {k: (torch.cat([p[k][0] for p in preds]), torch.cat([p[k][1] for p in preds])) for k in ATTRIBUTE_NAMES}


@torch.no_grad()
def read_attributes(judge: AttributeJudge, image: torch.Tensor) -> dict[str, tuple[str, float]]:
    """The judge's reading of one image [3, H, W] in [-1, 1] (any size: the judge resizes it to its
    input size): attribute -> (class name, confidence in [0, 1])."""
    from hdvila.demo.attributes import ATTRIBUTES

    pred = judge.predict(image.unsqueeze(0))
    return {k: (ATTRIBUTES[k][int(pred[k][0][0])], float(pred[k][1][0])) for k in ATTRIBUTE_NAMES}


def confident_on_every_attribute(preds: dict[str, tuple[torch.Tensor, torch.Tensor]],
                                 threshold: float = 0.9) -> torch.Tensor:
    """bool [N]: which images :func:`judge_images` read with confidence > ``threshold`` on every attribute."""
    return torch.stack([preds[k][1] > threshold for k in ATTRIBUTE_NAMES]).all(0)


def total_variation(a: torch.Tensor, b: torch.Tensor, classes: int) -> float:
    """Total-variation distance between the class histograms of index tensors ``a`` and ``b``."""
    pa = torch.bincount(a, minlength=classes).float() / len(a)
    pb = torch.bincount(b, minlength=classes).float() / len(b)
    return 0.5 * float((pa - pb).abs().sum())


def sample_report(judge: AttributeJudge, fake: torch.Tensor, real: torch.Tensor, threshold: float = 0.9) -> dict:
    """How the judge reads generated images ``fake`` against real renders ``real`` (both
    [N, 3, H, W] in [-1, 1]): ``confident_all_attributes`` (share of ``fake`` read with confidence
    > ``threshold`` on every attribute), ``confident_per_attribute``, ``real_confident_all_attributes``
    and ``real_confident_per_attribute`` (the same for ``real``: the ceiling a perfect generator
    reaches), ``tv_distance`` per attribute between the two judged class distributions, and
    ``class_shares``: attribute -> class -> [generated share, real share]."""
    from hdvila.demo.attributes import ATTRIBUTES

    pf, pr = judge_images(judge, fake), judge_images(judge, real)

    def all_confident(preds) -> float:
        return float(confident_on_every_attribute(preds, threshold).float().mean())

    def per_attribute(preds) -> dict[str, float]:
        return {k: float((preds[k][1] > threshold).float().mean()) for k in ATTRIBUTE_NAMES}

    return {
        "confident_all_attributes": all_confident(pf),
        "confident_per_attribute": per_attribute(pf),
        "real_confident_all_attributes": all_confident(pr),
        "real_confident_per_attribute": per_attribute(pr),
        "tv_distance": {k: total_variation(pf[k][0], pr[k][0], len(ATTRIBUTES[k])) for k in ATTRIBUTE_NAMES},
        "class_shares": {k: {name: [float((pf[k][0] == i).float().mean()), float((pr[k][0] == i).float().mean())]
                             for i, name in enumerate(ATTRIBUTES[k])} for k in ATTRIBUTE_NAMES},
    }
