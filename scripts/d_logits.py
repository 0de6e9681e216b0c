"""Is the discriminator over-fitting the training set? D's logits on training images, on fresh
renders of the demo domain it never saw, and on EMA samples, for one checkpoint of a demo-domain run.

A D that has memorised its training images scores them clearly above fresh renders of the same
distribution (the ADA paper's over-fitting signal); equal scores mean more data would not help, and
the gap to the samples is what G still has to close. The widths come from the run's
``training_args.json``; ``--n`` of its training images (the first ``train_size`` renders of the train
split, read from the run's cache when present) are compared with the ``--n`` renders after them.

    .venv/bin/python scripts/d_logits.py runs/sg2-v7g2/checkpoint-38000 --n 1024
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint-N folder of a train_stylegan2.py --data demo run")
    p.add_argument("--n", type=int, default=1024, help="images of each kind (default 1024)")
    a = p.parse_args(argv)

    import numpy as np
    import torch

    from generation.data import render_demo_images
    from generation.train_stylegan2 import demo_cache_file
    from generation.stylegan2 import Discriminator, DiscriminatorConfig, Generator
    from hdvila.modeling_utils import load_weights

    ckpt = Path(a.checkpoint)
    args_file = ckpt.parent / "training_args.json"
    if not (ckpt / "model_1.safetensors").is_file() or not args_file.is_file():
        print(f"error: {ckpt} is not a checkpoint of a train_stylegan2.py run (needs model_1.safetensors "
              f"and ../training_args.json)", file=sys.stderr)
        return 2
    t = json.loads(args_file.read_text())
    if t.get("data") != "demo":
        print("error: only demo-domain runs have fresh renders to compare with", file=sys.stderr)
        return 2
    group = t["mbstd_group_size"]
    if a.n < 1 or a.n % group or a.n > t["train_size"]:
        print(f"error: --n must be a multiple of D's minibatch-std group size ({group}) and at most the run's "
              f"train_size ({t['train_size']}); got {a.n}", file=sys.stderr)
        return 2
    D = Discriminator(DiscriminatorConfig(img_resolution=t["resolution"], channel_base=t["channel_base"],
                                          channel_max=t["channel_max"], mbstd_group_size=group))
    load_weights(D, ckpt / "model_1.safetensors", map_location="cpu")
    D.eval()
    G = Generator.from_pretrained(ckpt / "generator_ema").eval()
    n_train = t["train_size"]
    rng = np.random.default_rng(1)
    # The run's training images (its cache, when present); fresh renders: the train split after them.
    cache = demo_cache_file(t.get("data_cache_dir"), Path(t["output_dir"]),
                            t["seed"], t["resolution"], n_train)
    pixels = render_demo_images(n_train, t["resolution"], seed=t["seed"],
                                cache_file=cache if cache.is_file() else None)
    train = pixels[np.sort(rng.choice(n_train, a.n, replace=False))]
    fresh = render_demo_images(a.n, t["resolution"], seed=t["seed"], start=n_train)

    def to_float(x):
        return torch.from_numpy(np.ascontiguousarray(x)).float() / 127.5 - 1

    torch.manual_seed(0)
    with torch.no_grad():
        fake = torch.cat([G(torch.randn(min(64, a.n - i), G.z_dim), noise_mode="random").clamp(-1, 1)
                          for i in range(0, a.n, 64)])
        print(f"| images ({ckpt}) | mean logit | std | share scored > 0 |\n|---|---|---|---|")
        for name, x in (("training images", to_float(train)), ("fresh renders", to_float(fresh)),
                        ("EMA samples", fake)):
            logits = torch.cat([D(x[i:i + 64]).flatten() for i in range(0, len(x), 64)])
            print(f"| {name} | {logits.mean():+.3f} | {logits.std():.3f} | {(logits > 0).float().mean():.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
