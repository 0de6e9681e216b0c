"""Evaluate text-conditioned SR: does the output match the HR frame, and does the caption matter?

For a set of captioned HR images, LR inputs are made with the training kernel (antialiased bicubic,
:func:`~generation.superres.losses.downsample`), then each *mode* produces outputs:

- ``bicubic``: the bicubic upsampling of the LR frame;
- ``no_text``: the SR network without a caption;
- ``text``: the SR network with the true caption;
- ``wrong``: the SR network with the caption rewritten to name another pattern (demo domain only:
  the wrong-caption control; the pattern cannot be read off the LR frame, so an output that draws
  the *named* pattern follows the text, while shape and colour should still follow the image).

Each mode reports PSNR and SSIM on RGB and on Y (BT.601), with ``crop_border`` = the scale by
default (:mod:`generation.superres.metrics`), LPIPS when its weights are on disk, the judge's
attribute accuracy (demo domain; the judge is a referee, never a training signal), and the HD-VILA
text-image score ``max(100 * cos, 0)`` against the true caption.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from generation.superres.data import CaptionedImages
from generation.superres.losses import downsample, lpips_available, upsample_bicubic
from generation.superres.metrics import mean_finite, psnr_unit, ssim_unit

MODES = ("bicubic", "no_text", "text", "wrong")
ATTRIBUTES = ("shape", "color", "background", "size", "pattern")


def wrong_pattern_captions(num: int, *, split: str, seed: int, start: int = 0, wording: str = "train",
                           shift: int = 1) -> tuple[list[str], torch.Tensor]:
    """Captions of demo images ``start..start+num-1`` whose pattern is replaced by the pattern
    ``shift`` places on (plain -> striped -> dotted -> plain), and the named pattern indices [num]."""
    from hdvila.demo.attributes import PATTERNS
    from hdvila.demo.captions import caption_image
    from hdvila.demo.dataset import caption_rng, sample_image_spec

    captions, targets = [], []
    for i in range(start, start + num):
        spec = sample_image_spec(split, seed, i)
        k = (PATTERNS.index(spec.pattern) + shift) % len(PATTERNS)
        captions.append(caption_image(dataclasses.replace(spec, pattern=PATTERNS[k]),
                                      caption_rng(split, seed, i, False, wording), wording))
        targets.append(k)
    return captions, torch.tensor(targets)


@torch.no_grad()
def _embed(pipe, captions: list[str]) -> torch.Tensor:
    text, _ = pipe.encode_prompt(captions, len(captions))
    return text


def _run(pipe, lr: torch.Tensor, text: torch.Tensor | None, batch_size: int) -> torch.Tensor:
    outs = []
    with torch.no_grad():
        for s in range(0, len(lr), batch_size):
            t = None if text is None else text[s:s + batch_size].to(pipe.device)
            outs.append(pipe.sr_model(lr[s:s + batch_size].to(pipe.device), pipe.generator, t).float().cpu())
    return torch.cat(outs).clamp(-1, 1)


def evaluate_sr(pipe, data: CaptionedImages, *, modes: tuple[str, ...] = MODES, judge=None,
                wrong_captions: list[str] | None = None, wrong_targets: torch.Tensor | None = None,
                crop_border: int | None = None, batch_size: int = 50, keep_outputs: int = 0) -> dict[str, Any]:
    """Metrics per mode (module docstring). ``data.labels`` enables the judge's accuracy; ``wrong_*``
    enable the ``wrong`` mode. ``keep_outputs``: also return the first N outputs of each mode
    (``result["outputs"][mode]``, [N, 3, R, R] in [-1, 1]) for figures."""
    scale = pipe.sr_model.config.scale
    crop = scale if crop_border is None else crop_border
    hr = torch.from_numpy(data.images).float() / 127.5 - 1
    lr = downsample(hr, scale)
    true_text = _embed(pipe, data.captions) if pipe.sr_model.config.text_dim else None
    lpips = None
    if lpips_available():
        from generation.superres.losses import LPIPSLoss

        lpips = LPIPSLoss()
    result: dict[str, Any] = {"n": len(data), "scale": scale, "crop_border": crop, "kernel": "bicubic, antialiased",
                              "lpips": "alex" if lpips is not None else "unavailable (weights not on disk)",
                              "modes": {}, "outputs": {}}
    for mode in modes:
        if mode == "bicubic":
            out = upsample_bicubic(lr, scale)
        elif mode == "no_text":
            out = _run(pipe, lr, None, batch_size)
        elif mode == "text":
            if true_text is None:
                continue
            out = _run(pipe, lr, true_text, batch_size)
        elif mode == "wrong":
            if true_text is None or wrong_captions is None:
                continue
            out = _run(pipe, lr, _embed(pipe, wrong_captions), batch_size)
        else:
            raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
        row = {"psnr_rgb": mean_finite(psnr_unit(out, hr, crop_border=crop)),
               "psnr_y": mean_finite(psnr_unit(out, hr, crop_border=crop, y_channel=True)),
               "ssim_rgb": float(ssim_unit(out, hr, crop_border=crop).mean()),
               "ssim_y": float(ssim_unit(out, hr, crop_border=crop, y_channel=True).mean())}
        if lpips is not None:
            with torch.no_grad():
                row["lpips"] = float(torch.cat([lpips.model(out[s:s + 50], hr[s:s + 50]).flatten()
                                                for s in range(0, len(out), 50)]).mean())
        if true_text is not None and getattr(pipe, "hdvila", None) is not None:
            with torch.no_grad():
                emb = torch.cat([pipe.hdvila.get_image_features(out[s:s + 50].to(pipe.device), unit_range=True).cpu()
                                 for s in range(0, len(out), 50)])
            row["text_score"] = float((100 * (emb * true_text.detach().cpu()).sum(-1)).clamp_min(0).mean())
        if judge is not None and data.labels is not None:
            from hdvila.judge.evaluate import judge_images

            preds = judge_images(judge, out)
            row["judge_accuracy"] = {a: float((preds[a][0] == data.labels[:, k]).float().mean())
                                     for k, a in enumerate(ATTRIBUTES)}
            if mode == "wrong" and wrong_targets is not None:
                row["follows_caption_pattern"] = float((preds["pattern"][0] == wrong_targets).float().mean())
                row["shape_and_color_follow_image"] = float(((preds["shape"][0] == data.labels[:, 0])
                                                             & (preds["color"][0] == data.labels[:, 1])).float().mean())
        result["modes"][mode] = row
        if keep_outputs:
            result["outputs"][mode] = out[:keep_outputs]
    if keep_outputs:
        result["outputs"]["hr"], result["outputs"]["lr"] = hr[:keep_outputs], lr[:keep_outputs]
    return result


def format_table(result: dict[str, Any]) -> str:
    """A markdown table of :func:`evaluate_sr`'s modes."""
    has_lpips = "lpips" in next(iter(result["modes"].values()), {})
    cols = ["psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y"] + (["lpips"] if has_lpips else []) + ["text_score"]
    attrs = any("judge_accuracy" in r for r in result["modes"].values())
    head = ["mode"] + cols + ([f"judge {a}" for a in ATTRIBUTES] if attrs else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mode, r in result["modes"].items():
        cells = [mode] + [f"{r[c]:.4f}" if c.startswith("ssim") or c == "lpips" else f"{r.get(c, np.nan):.2f}"
                          for c in cols]
        if attrs:
            cells += [f"{100 * r['judge_accuracy'][a]:.1f}%" if "judge_accuracy" in r else "-" for a in ATTRIBUTES]
        lines.append("| " + " | ".join(cells) + " |")
    if "wrong" in result["modes"] and "follows_caption_pattern" in result["modes"]["wrong"]:
        w = result["modes"]["wrong"]
        lines.append(f"\nwrong caption: output pattern follows the caption {100 * w['follows_caption_pattern']:.1f}%, "
                     f"shape and colour follow the image {100 * w['shape_and_color_follow_image']:.1f}%")
    return "\n".join(lines)


FIGURE_COLUMNS = ("lr", "bicubic", "no_text", "text", "wrong", "hr")


def comparison_figure(result: dict[str, Any], path, rows: int = 8):
    """A PNG grid, one image per row: LR (nearest) | bicubic | SR without text | SR with text | SR
    with a wrong caption | ground truth (columns whose mode was not run are left out). Needs
    :func:`evaluate_sr` with ``keep_outputs``. Returns the path."""
    from hdvila.imageio import save_image
    from hdvila.tensors import image_grid

    outs = result["outputs"]
    if "hr" not in outs:
        raise ValueError("run evaluate_sr with keep_outputs > 0 to draw the figure")
    size = outs["hr"].shape[-2:]
    cols = [torch.nn.functional.interpolate(outs[c], size=size, mode="nearest") if c == "lr" else outs[c]
            for c in FIGURE_COLUMNS if c in outs]
    n = min(rows, len(outs["hr"]))
    grid = torch.stack([c[:n] for c in cols], dim=1).flatten(0, 1)
    return save_image(image_grid(grid, nrow=len(cols)), path)
