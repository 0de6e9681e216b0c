"""Train the attribute judge on rendered demo-domain images (resumable).

    python -m hdvila.judge.train --out checkpoints/judge --steps 1500

State is saved every ``--checkpoint-every`` steps to ``OUT/train_state.pt`` and training resumes
from it when rerun; the final model is written with ``save_pretrained`` to ``OUT``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from hdvila.atomic import atomic_path
from hdvila.demo.dataset import DemoImageDataset
from hdvila.judge.augment import degrade
from hdvila.judge.model import ATTRIBUTE_NAMES, AttributeJudge, JudgeConfig


def train_judge(out: Path, steps: int = 1500, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                checkpoint_every: int = 100, resolution: int = 64, init: Path | None = None) -> AttributeJudge:
    """Train (or resume) the judge; ``init`` warm-starts a fresh run from a judge model folder."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = AttributeJudge(JudgeConfig(resolution=resolution)) if init is None else AttributeJudge.from_pretrained(init)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    state_path = out / "train_state.pt"
    start = 0
    if state_path.exists():
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = int(state["step"])
        print(f"resuming from step {start}")
    data = DemoImageDataset("train", length=10**9, resolution=resolution, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.time()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="judge")
    for step in bar:
        gen.manual_seed(seed * 1_000_003 + step)  # resumed runs see the same augmentations
        items = [data[step * batch_size + j] for j in range(batch_size)]
        images = degrade(torch.stack([it["image"] for it in items]), gen)
        labels = torch.stack([it["labels"] for it in items])
        logits = model(images)
        loss = sum(F.cross_entropy(logits[k], labels[:, i], label_smoothing=0.05)
                   for i, k in enumerate(ATTRIBUTE_NAMES))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            with atomic_path(state_path) as tmp:
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "step": step + 1}, tmp)
    model.eval()
    model.save_pretrained(out)
    print(f"trained {steps - start} steps in {time.time() - t0:.0f} s; saved to {out}")
    return model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("checkpoints/judge"))
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--init", type=Path, default=None, help="warm-start from this judge model folder")
    a = p.parse_args(argv)
    train_judge(a.out, a.steps, a.batch_size, a.lr, a.seed, a.checkpoint_every, init=a.init)


if __name__ == "__main__":
    main()
