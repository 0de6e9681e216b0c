"""Calibrate (and check) the out-of-domain threshold of an edit pipeline's encoder.

    .venv/bin/python benchmarks/quality/calibrate_domain.py --num 500            # measure, print the table
    .venv/bin/python benchmarks/quality/calibrate_domain.py --num 500 --write    # and store it in the encoder
    .venv/bin/python benchmarks/quality/calibrate_domain.py --smoke              # a check that it runs (tiny)

The threshold (:func:`generation.editing.domain.calibrate`) is the 1st percentile of the encoder's
inversion PSNR over ``--num`` *validation*-split demo renders; it is then checked on as many *test*-split
renders (the share wrongly flagged) and on the real photos that ship offline with scikit-image,
scikit-learn and matplotlib (the share flagged, and each photo's PSNR). ``--write`` stores it as
``in_domain_psnr_db`` in the pipeline's ``encoder/config.json``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def real_photos() -> list[tuple[str, "object"]]:
    """(name, RGB PIL image) of the offline real photos: skimage's photographs, sklearn's two sample
    images, matplotlib's grace_hopper and 20 LFW faces (25x25 px, grey)."""
    import matplotlib.cbook as cbook
    import skimage.data as sd
    from PIL import Image
    from sklearn.datasets import load_sample_images

    out = []
    for name in ("astronaut", "camera", "chelsea", "coffee", "rocket", "cat", "coins", "horse", "hubble_deep_field",
                 "immunohistochemistry", "moon", "page", "text", "clock"):
        a = getattr(sd, name)()
        a = (a * 255).astype(np.uint8) if a.dtype == bool else a
        a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
        out.append((name, Image.fromarray(a.astype(np.uint8))))
    for name, a in zip(("china", "flower"), load_sample_images().images):
        out.append((name, Image.fromarray(a)))
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        out.append(("grace_hopper", im.convert("RGB")))
    for i, face in enumerate(sd.lfw_subset()[:20]):
        out.append((f"lfw_{i:02d}", Image.fromarray((np.stack([face] * 3, -1) * 255).astype(np.uint8))))
    return out


def inversion_psnr(pipe, images: torch.Tensor) -> list[float]:
    return pipe.invert(images)[1]


def main(argv: list[str] | None = None) -> None:
    from apps.pipelines import load_edit_pipeline
    from generation.editing.domain import QUANTILE, calibrate
    from generation.pipeline_utils import fit_to_square, image_to_tensor
    from hdvila.atomic import atomic_write_text
    from hdvila.demo.dataset import DemoImageDataset
    from hdvila.paths import resolve_model_path

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="EditPipeline folder (default: the bundled checkpoints/edit-demo64)")
    p.add_argument("--num", type=int, default=500, help="validation renders to calibrate on, and test renders to check")
    p.add_argument("--write", action="store_true", help="store the threshold in the encoder's config.json")
    p.add_argument("--smoke", action="store_true", help="24 renders, 4 photos, nothing written")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    num = 24 if args.smoke else args.num
    pipe = load_edit_pipeline(args.model, device="cpu")
    r = pipe.resolution
    val = DemoImageDataset("val", num, resolution=r)
    test = DemoImageDataset("test", num, resolution=r)
    threshold = calibrate(inversion_psnr(pipe, torch.stack([val[i]["image"] for i in range(num)])), QUANTILE)
    test_psnr = np.array(inversion_psnr(pipe, torch.stack([test[i]["image"] for i in range(num)])))
    photos = real_photos()[:4] if args.smoke else real_photos()
    x = torch.stack([fit_to_square(image_to_tensor(im, name), r, name, "")[0] for name, im in photos])
    photo_psnr = np.array(inversion_psnr(pipe, x))
    print(f"| calibration ({num} val renders, quantile {QUANTILE:g}) | threshold {threshold:.1f} dB |")
    print("|---|---|")
    print(f"| test renders flagged (wrongly) | {np.mean(test_psnr < threshold):.1%} of {num} "
          f"(PSNR min {test_psnr.min():.1f}, median {np.median(test_psnr):.1f} dB) |")
    print(f"| real photos flagged | {np.mean(photo_psnr < threshold):.1%} of {len(photos)} "
          f"(PSNR median {np.median(photo_psnr):.1f}, max {photo_psnr.max():.1f} dB) |")
    print("photos: " + ", ".join(f"{n} {v:.1f}{'' if v < threshold else ' (missed)'}"
                                 for (n, _), v in zip(photos, photo_psnr)))
    if args.write and not args.smoke:
        folder = resolve_model_path(args.model, "edit-demo64", option="--model", marker="pipeline_index.json",
                                    accepts="an EditPipeline folder") / "encoder"
        config = json.loads((folder / "config.json").read_text())
        config["in_domain_psnr_db"] = threshold
        atomic_write_text(folder / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
        print(f"wrote in_domain_psnr_db {threshold:.1f} to {folder / 'config.json'}")


if __name__ == "__main__":
    main()
