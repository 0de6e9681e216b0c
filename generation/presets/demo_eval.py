"""Measure text-guided editing on held-out demo renders with the attribute judge.

For each of ``num`` test-split renders (attribute combinations never seen in training) and each edit
attribute (shape, colour, pattern, size), a new value is drawn and worded as a prompt (training or
held-out wording, :func:`generation.presets.demo.demo_vocabulary`). Every method edits the encoder's
inversion of the render; the judge (never used in training or model selection) then reads the edit:

- **success**: the judge reads the target value of the edited attribute;
- **preservation**: the judge reads every other attribute as on the source render, and also as on
  the reconstruction (the second separates what the edit changed from what inversion lost);
- beside them, **guide read**: the editing guide's own zero-shot reading of the edit
  (:class:`~generation.editing.value_objective.ValueReader`, the training scripts' selection signal)
  names the asked value. Where it is high and the judge's success low, the edit fools the guide.

:func:`offset_value_share` measures whether the mapper's offset depends on the asked value: the
share of the offset's energy that varies across an attribute's values, for the same source.

Methods: ``mapper``, ``optimize`` (``steps`` Adam steps) and ``mapper+optimize`` (the mapper's edit,
then ``refine`` optimisation steps from it), and ``reconstruction``: no edit at all, the baseline that
says how often the judge already reads the target value on the inversion alone; ``prior``: the
mapper's value-direction prior alone (:meth:`EditMapper.value_prior`, for mappers that have one),
what the learned residual adds to. Also the inversion PSNR of every render.

:func:`evaluate_clips` measures temporal consistency on test-split demo videos whose attributes stay
fixed (motions other than grow, shrink and recolor): each clip gets one edit, made once as a clip
(:meth:`~generation.editing.pipeline_edit.EditPipeline.edit_clip`) and once frame by frame
(:func:`~generation.editing.clips.edit_frames_independently`), and reports for both the mean
frame-to-frame change relative to the source clip's, the share of neighbouring frame pairs on which
the judge's reading of some attribute flips, and the share of frames on which the edit succeeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from generation.presets.demo import demo_vocabulary

METHODS = ("mapper", "optimize", "mapper+optimize", "reconstruction", "prior")


def edit_cases(num: int, *, seed: int = 0, wording: str = "train", start: int = 0):
    """(specs, cases): ``cases`` a list of (render index, attribute, target value, prompt)."""
    from hdvila.demo.dataset import sample_image_spec

    vocabulary = demo_vocabulary()
    specs = [sample_image_spec("test", seed, start + i) for i in range(num)]
    rng = np.random.default_rng(seed + 7)
    cases = []
    for i, spec in enumerate(specs):
        for attribute in vocabulary.editable:
            _, value = vocabulary.sample_edit({attribute: getattr(spec, attribute)}, rng, attribute)
            cases.append((i, attribute, value, vocabulary.edit_prompt(attribute, value, rng, wording)))
    return specs, cases


@torch.no_grad()
def _read(judge, images: torch.Tensor) -> dict[str, torch.Tensor]:
    from hdvila.judge.evaluate import judge_images

    return {k: v[0] for k, v in judge_images(judge, images).items()}


def evaluate_edits(pipe, judge, *, num: int = 200, seed: int = 0, wording: str = "train",
                   methods: tuple[str, ...] = ("mapper",), steps: int = 300, refine: int = 50,
                   batch_size: int = 64, progress: bool = True, refine_steps: int = 0,
                   refine_texture: float | None = None,
                   optimize_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Success and preservation per method and attribute (fractions), inversion PSNR, and the first
    rows' images for a figure. See the module docstring. ``refine_steps``: projector steps after the
    encoder (:meth:`EditPipeline.invert`) before any edit, with ``refine_texture`` its texture-loss weight
    (None: ``invert``'s default). ``optimize_kwargs`` go to
    :func:`~generation.editing.optimize.optimize_edit` (e.g. ``guide_views``)."""
    optimize_kwargs = optimize_kwargs or {}
    from generation.data import render_demo_images
    from generation.editing.pipeline_edit import refine_texture_weight
    from generation.editing.value_objective import ValueReader
    from generation.presets.demo_guide_eval import embed_images
    from hdvila.demo.attributes import ATTRIBUTES

    reader = ValueReader(pipe.guide, demo_vocabulary())
    specs, cases = edit_cases(num, seed=seed, wording=wording)
    x = torch.from_numpy(render_demo_images(num, pipe.resolution, split="test", seed=seed)).float() / 127.5 - 1
    refine_texture = refine_texture_weight(refine_texture)
    ws, psnrs, rec = pipe.invert(x, refine_steps=refine_steps, texture_weight=refine_texture)
    src_read, rec_read = _read(judge, x), _read(judge, rec)
    same = {k: (rec_read[k] == src_read[k]).float() for k in src_read}  # the inversion keeps the value, per render
    kept = {k: float(v.mean()) for k, v in same.items()}
    kept["all"] = float(torch.stack(list(same.values())).prod(0).mean())
    result: dict[str, Any] = {"num_renders": num, "num_edits": len(cases), "wording": wording,
                              "refine_steps": refine_steps,
                              "refine_texture": refine_texture if refine_steps else None,
                              "inversion_psnr": float(np.mean(psnrs)),
                              "inversion_kept": kept, "methods": {}, "figure": {}}
    for method in methods:
        images = []
        for b in range(0, len(cases), batch_size):
            chunk = cases[b:b + batch_size]
            idx = [c[0] for c in chunk]
            text = pipe.encode_prompt([c[3] for c in chunk], len(chunk))
            if method == "reconstruction":
                edited = ws[idx]
            elif method == "optimize":
                edited = pipe.edit_latents(ws[idx], text, "optimize", 1.0, steps, **optimize_kwargs)
            elif method == "prior":  # the mapper's value-direction prior alone, without its learned residual
                with torch.no_grad():
                    w = ws[idx].to(pipe.device)
                    t = text.to(pipe.device)
                    prior = pipe.mapper.value_prior(t, pipe.guide.image_features(pipe.synthesize(w).to(pipe.device)))
                    edited = w + pipe.mapper.gate(prior, t)  # gated as the mapper's offset is
            else:
                edited = pipe.edit_latents(ws[idx], text, "mapper", 1.0)
                if method == "mapper+optimize":
                    edited = pipe.edit_latents(edited, text, "optimize", 1.0, refine, **optimize_kwargs)
            images.append(pipe.synthesize(edited).cpu())
            if progress:
                print(f"{method}: {min(b + batch_size, len(cases))}/{len(cases)} edits", flush=True)
        images = torch.cat(images)
        read = _read(judge, images)
        guide_read = reader.read(embed_images(pipe.guide, None, images, path="guide", batch_size=64))
        rows = {a: {"success": [], "kept_source": [], "kept_reconstruction": [], "guide_read": []}
                for a in ("shape", "color", "pattern", "size")}
        for j, (i, attribute, value, _) in enumerate(cases):
            r = rows[attribute]
            r["success"].append(int(read[attribute][j]) == ATTRIBUTES[attribute].index(value))
            r["guide_read"].append(int(guide_read[attribute][j]) == ATTRIBUTES[attribute].index(value))
            others = [k for k in read if k != attribute]
            r["kept_source"].append(all(int(read[k][j]) == int(src_read[k][i]) for k in others))
            r["kept_reconstruction"].append(all(int(read[k][j]) == int(rec_read[k][i]) for k in others))
            for k in others:  # which attribute an edit changes besides the asked one
                r.setdefault(f"kept_reconstruction_{k}", []).append(int(read[k][j]) == int(rec_read[k][i]))
        summary = {a: {k: float(np.mean(v)) for k, v in r.items()} for a, r in rows.items()}
        summary["all"] = {k: float(np.mean([summary[a][k] for a in rows]))
                          for k in ("success", "kept_source", "kept_reconstruction", "guide_read")}
        result["methods"][method] = summary
        result["figure"][f"method:{method}"] = images[: 4 * min(num, 6)]
    result["figure"]["source"] = x[: min(num, 6)]
    result["figure"]["reconstruction"] = rec[: min(num, 6)]
    result["figure"]["prompts"] = [c[3] for c in cases[: 4 * min(num, 6)]]
    return result


@torch.no_grad()
def offset_value_share(pipe, *, num: int = 32, seed: int = 0) -> dict[str, float]:
    """Does the mapper's offset depend on the asked value? For ``num`` test renders and each edit
    attribute, the offsets ``o_v`` [num_ws, w_dim] for a prompt naming each value ``v`` (training
    wording, drawn once per value): the share of their energy that varies with the value,
    ``sum_v |o_v - mean_v o|^2 / sum_v |o_v|^2`` summed over the renders (0: the same offset whatever
    is asked; 1: offsets that cancel on average). -> attribute -> share in [0, 1]."""
    from generation.data import render_demo_images

    vocabulary = demo_vocabulary()
    x = torch.from_numpy(render_demo_images(num, pipe.resolution, split="test", seed=seed)).float() / 127.5 - 1
    ws, _, rec = pipe.invert(x)
    ws = ws.to(pipe.device)
    source = pipe.guide.image_features(rec.to(pipe.device))
    w_avg = pipe.generator.mapping.w_avg
    rng = np.random.default_rng(seed + 11)
    out = {}
    for attribute in vocabulary.editable:
        prompts = [vocabulary.edit_prompt(attribute, v, rng, "train") for v in vocabulary.values(attribute)]
        text = pipe.guide.text_features(prompts)
        offsets = torch.stack([pipe.mapper(ws, t.expand(len(ws), -1), source, w_avg).float() for t in text], 1)
        varying = (offsets - offsets.mean(dim=1, keepdim=True)).square().sum()
        out[attribute] = float(varying / offsets.square().sum().clamp_min(1e-12))
    return out


def evaluate_inversion(pipe, *, num: int = 200, steps: int = 100, seed: int = 0,
                       batch_size: int = 50, texture_weight: float | None = None) -> dict[str, Any]:
    """Inversion PSNR (dB, mean over ``num`` test-split renders at the generator's resolution) of the
    encoder alone, of the projector alone (``steps`` steps from ``w_avg``, W+, the generator's stored
    noise: latents an edit can start from) and of the encoder followed by ``steps`` projector steps
    (what ``refine_steps`` does), with each method's seconds per image. Both projector rows use the
    same loss: ``texture_weight`` (None: :meth:`EditPipeline.invert`'s default) with the pixel losses."""
    import time

    from generation.data import render_demo_images
    from generation.editing.pipeline_edit import refine_texture_weight
    from generation.stylegan2.projector import project_batch, psnr

    x = torch.from_numpy(render_demo_images(num, pipe.resolution, split="test", seed=seed)).float() / 127.5 - 1
    texture_weight = refine_texture_weight(texture_weight)
    out: dict[str, Any] = {"num_renders": num, "steps": steps, "texture_weight": texture_weight}

    def run(name, fn):
        t0, psnrs = time.perf_counter(), []
        for b in range(0, num, batch_size):
            psnrs += fn(x[b:b + batch_size])
        out[name] = {"psnr": float(np.mean(psnrs)), "s_per_image": (time.perf_counter() - t0) / num}

    def projector(xb):
        res = project_batch(pipe.generator, xb, steps=steps, stored_noise=True, perceptual="multiscale",
                            texture_weight=texture_weight, device=pipe.device)
        ws = torch.cat([r.ws for r in res]).to(pipe.device)
        rec = pipe.synthesize(ws).cpu()
        return [psnr(rec[i:i + 1], xb[i:i + 1]) for i in range(len(xb))]

    run("encoder", lambda xb: pipe.invert(xb)[1])
    run("projector", projector)
    run(f"encoder+{steps}", lambda xb: pipe.invert(xb, steps, texture_weight=texture_weight)[1])
    return out


def format_inversion_table(result: dict[str, Any]) -> str:
    lines = [f"inversion of {result['num_renders']} test renders", "",
             "| method | PSNR (dB) | s / image |", "|---|---|---|"]
    for name in ("encoder", "projector", f"encoder+{result['steps']}"):
        label = {"encoder": "encoder (one pass)", "projector": f"projector, {result['steps']} steps from w_avg"}.get(
            name, f"encoder + {result['steps']} projector steps")
        lines.append(f"| {label} | {result[name]['psnr']:.2f} | {result[name]['s_per_image']:.3f} |")
    return "\n".join(lines)


def evaluate_clips(pipe, judge, *, num: int = 20, frames: int = 16, seed: int = 0, method: str = "mapper",
                   steps: int = 100, temporal_sigma: float = 1.0, refine_steps: int = 0,
                   refine_texture: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Temporal consistency of clip editing against frame-by-frame editing (module docstring) on
    ``num`` test-split videos of ``frames`` frames at the generator's resolution. Also the inversion of
    each clip, no edit (``inversion``): the share of frames on which the judge reads each attribute,
    and all five, as on the source frame, for the clip's smoothed reconstruction (``clip``) and for
    each frame inverted on its own (``per_frame``). ``refine_steps``: projector steps after the
    encoder, for every frame of both, with ``refine_texture`` their texture-loss weight (None: the
    pipeline's default)."""
    from generation.editing.clips import edit_frames_independently, temporal_change
    from hdvila.demo.attributes import ATTRIBUTES
    from hdvila.demo.dataset import DemoVideoDataset

    vocabulary = demo_vocabulary()
    editable = vocabulary.editable
    ds = DemoVideoDataset("test", 100 * num + 100, num_frames=frames, resolution=pipe.resolution, seed=seed)
    rng = np.random.default_rng(seed + 11)
    picked = [i for i in range(len(ds)) if ds.spec(i).motion not in ("grow", "shrink", "recolor")][:num]
    rows, kept = [], {"clip": [], "per_frame": []}
    for k, index in enumerate(picked):
        spec = ds.spec(index)
        attribute = editable[k % len(editable)]
        _, value = vocabulary.sample_edit({attribute: getattr(spec, attribute)}, rng, attribute)
        prompt = vocabulary.edit_prompt(attribute, value, rng)
        video = ds[index]["video"]                                     # [T, 3, R, R] in [-1, 1]
        as_clip = pipe.edit_clip(video, prompt, method=method, steps=steps, temporal_sigma=temporal_sigma,
                                 refine_steps=refine_steps, refine_texture=refine_texture)
        per_frame = edit_frames_independently(pipe, video, prompt, method=method, steps=steps,
                                              refine_steps=refine_steps, refine_texture=refine_texture)
        source = _read(judge, video.float())
        for name, rec in (("clip", as_clip.reconstructions), ("per_frame", per_frame.reconstructions)):
            kept[name].append({a: v == source[a] for a, v in _read(judge, rec.float()).items()})  # [T] each
        base = max(temporal_change(video), 1e-6)
        row = {"video": index, "motion": spec.motion, "attribute": attribute, "value": value, "prompt": prompt}
        for name, clip in (("clip", as_clip.frames), ("per_frame", per_frame.images)):
            read = _read(judge, clip.float())
            changed = torch.zeros(len(clip) - 1, dtype=torch.bool)
            for a in read:
                changed |= read[a][1:] != read[a][:-1]
            row[name] = {"change_ratio": temporal_change(clip) / base, "flips": float(changed.float().mean()),
                         "success": float((read[attribute] == ATTRIBUTES[attribute].index(value)).float().mean())}
        rows.append(row)
        if progress:
            print(f"clips: {k + 1}/{len(picked)}", flush=True)
    summary = {name: {m: float(np.mean([r[name][m] for r in rows])) for m in ("change_ratio", "flips", "success")}
               for name in ("clip", "per_frame")}
    inversion = {}
    for name, per_video in kept.items():
        same = {a: torch.cat([v[a] for v in per_video]).float() for a in per_video[0]}
        inversion[name] = {a: float(v.mean()) for a, v in same.items()}
        inversion[name]["all"] = float(torch.stack(list(same.values())).prod(0).mean())
    return {"num_videos": len(rows), "frames": frames, "method": method, "refine_steps": refine_steps,
            "refine_texture": refine_texture if refine_steps else None, "summary": summary, "inversion": inversion,
            "videos": rows}


def format_clip_table(result: dict[str, Any]) -> str:
    """A markdown table of :func:`evaluate_clips`' summary, and the clip inversion's kept shares."""
    lines = [f"{result['num_videos']} test videos x {result['frames']} frames, one edit each ({result['method']})", "",
             "| editing | frame-to-frame change / source's | judge flips between neighbours | success per frame |",
             "|---|---|---|---|"]
    labels = (("clip", "as one clip (edit_clip)"), ("per_frame", "frame by frame"))
    for name, label in labels:
        r = result["summary"][name]
        lines.append(f"| {label} | {r['change_ratio']:.2f} | {100 * r['flips']:.1f}% | {100 * r['success']:.1f}% |")
    attributes = list(result["inversion"]["clip"])
    lines += ["", f"inversion, no edit (refine steps {result['refine_steps']}): frames on which the judge reads each "
              "attribute as on the source frame", "",
              "| inversion | " + " | ".join(attributes) + " |", "|---|" + "---|" * len(attributes)]
    for name, label in labels:
        r = result["inversion"][name]
        lines.append(f"| {label} | " + " | ".join(f"{100 * r[a]:.1f}%" for a in attributes) + " |")
    return "\n".join(lines)


def format_table(result: dict[str, Any]) -> str:
    """A markdown table: per method and attribute, success / kept vs source / kept vs reconstruction."""
    lines = [f"{result['num_edits']} edits of {result['num_renders']} test renders ({result['wording']} wordings); "
             f"encoder inversion PSNR {result['inversion_psnr']:.2f} dB",
             "inversion (no edit) keeps, judged against the source: "
             + ", ".join(f"{k} {100 * v:.1f}%" for k, v in result["inversion_kept"].items()), "",
             "| method | attribute | success (judge) | guide reads the asked value | others kept (vs source) "
             "| others kept (vs reconstruction) |",
             "|---|---|---|---|---|---|"]
    for method, summary in result["methods"].items():
        for a, r in summary.items():
            lines.append(f"| {method} | {a} | {100 * r['success']:.1f}% | {100 * r['guide_read']:.1f}% | "
                         f"{100 * r['kept_source']:.1f}% | {100 * r['kept_reconstruction']:.1f}% |")
    return "\n".join(lines)


def comparison_figure(result: dict[str, Any], path, method: str = "mapper"):
    """A PNG grid: per render, source | reconstruction | its four edits, each edit labelled with its prompt."""
    from hdvila.imageio import save_image
    from hdvila.tensors import labelled_grid

    src, rec = result["figure"]["source"], result["figure"]["reconstruction"]
    edits = result["figure"][f"method:{method}"].view(len(src), 4, *src.shape[1:])
    prompts = result["figure"]["prompts"]
    rows = torch.cat([src[:, None], rec[:, None], edits], dim=1).flatten(0, 1)
    labels = [t for i in range(len(src)) for t in ("source", "reconstruction", *prompts[4 * i: 4 * i + 4])]
    return save_image(labelled_grid(rows, labels, nrow=6), path)
