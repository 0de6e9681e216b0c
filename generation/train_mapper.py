"""Train the open-vocabulary edit mapper: one network that edits a StyleGAN2 W+ latent for any prompt.

    accelerate launch generation/train_mapper.py --output_dir runs/mapper-demo64 --encoder runs/encoder-demo64/encoder
    accelerate launch --multi_gpu --num_processes 2 generation/train_mapper.py ...   # 2 processes (gloo on a CPU)

What is trained: :class:`generation.editing.mapper.EditMapper`. The generator, the encoder and the
HD-VILA guide are frozen.

Data: ``--train_size`` renders of the demo domain's train split, inverted once by the encoder (W+
latents cached in ``OUTPUT_DIR/cache``), plus ``--synthetic_fraction`` of each batch drawn fresh from
the generator's mapping. Each training latent gets an edit: an attribute (shape, colour, pattern,
size), a new value, and a prompt in training wording (:mod:`generation.editing.prompts`); with
probability ``--noop_prob`` the prompt names the current value and the right edit is none. The
guide target is the full caption of the image with that attribute changed, which names every other
attribute unchanged; for generator samples, whose attributes are unknown, the guide reads them
first: each attribute's value is the training caption wording HD-VILA scores highest (a zero-shot
reading by the guide itself; the judge is never used). The loss is

- ``--clip_weight`` * (1 - cos(HD-VILA image embedding of the edit, target caption embedding));
- ``--prompt_weight`` * (1 - cos(HD-VILA image embedding of the edit, prompt embedding)): StyleCLIP's
  mapper target, the prompt itself ("make it crimson"). The full caption also names the attributes
  an imperfect inversion lost, so its cosine alone rewards repairing the inversion as much as making
  the asked change; the prompt names only the change;
- ``--direction_weight`` * the directional loss (edit - source image embedding against target -
  source caption embedding): the change should be the asked one and no other;
- ``--l2_weight`` * the mean squared W+ offset per dimension, in units of the generator's per-dimension
  w spread (StyleCLIP's latent L2; 1.0 is an offset as large as the spread of w itself), and
  ``--pixel_weight`` * pixel MSE against the source reconstruction (0: off).

Checkpoints hold the mapper, its optimiser, its EMA (``ema/``) and the RNG states; batches, edits
and per-step randomness are functions of the step, so a resumed run continues as an uninterrupted
one. Validation writes ``OUTPUT_DIR/validation/step-N.png`` (source | one edit per attribute) and logs
the guide loss on held-out test-split renders. At the end the EMA mapper is written to
``OUTPUT_DIR/mapper``; with ``--pipeline_dir`` the whole ``EditPipeline`` folder is written there too.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a script: import the package, not sibling files
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import argparse
import logging
import math
from typing import Any, Sequence

import numpy as np
import torch

from hdvila.training import (
    EMA,
    StepBatchSampler,
    StepStats,
    TimeBudget,
    add_common_args,
    at_least,
    build_accelerator,
    end_of_step,
    init_trackers,
    load_checkpoint,
    resolve_mixed_precision,
    resolve_resume,
    run_cli,
    step_seed,
)

logger = logging.getLogger("train_mapper")
EMA_FOLDER = "ema"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, max_train_steps=10000, checkpointing_steps=500, validation_steps=500)
    g = p.add_argument_group("models")
    g.add_argument("--generator", default=None, help="StyleGAN2 generator (default: the bundled stylegan2-demo64)")
    g.add_argument("--hdvila", default=None, help="HD-VILA model folder, the guide (default: the bundled hdvila-mini)")
    g.add_argument("--random_guide", action="store_true",
                   help="control experiment: guide with a randomly initialised HD-VILA of the same architecture")
    g.add_argument("--encoder", default=None, help="latent encoder folder (generation/train_encoder.py's encoder/; "
                   "default: the bundled edit-demo64's)")
    g.add_argument("--hidden", type=at_least(16), default=512)
    g.add_argument("--init_mapper", default=None, help="start from this mapper model folder (e.g. the bundled "
                   "edit-demo64/mapper; fresh optimiser, its own size: --hidden does not apply) instead of a random "
                   "initialisation; it must fit the generator and the guide")
    g.add_argument("--pipeline_dir", default=None, help="also write the EditPipeline folder here at the end")
    g.add_argument("--score", nargs="+", default=None, metavar="MAPPER",
                   help="train nothing: score these mapper folders (e.g. checkpoint-N/ema) with the validation "
                        "guide losses on --val_size test renders, weighted by the loss weights given, and exit")
    g = p.add_argument_group("data")
    g.add_argument("--train_size", type=at_least(1), default=10000, help="train-split renders to invert")
    g.add_argument("--val_size", type=at_least(1), default=16, help="test-split renders for validation")
    g.add_argument("--synthetic_fraction", type=float, default=0.25,
                   help="share of each batch that is generator samples")
    g.add_argument("--noop_prob", type=float, default=0.1, help="probability of a prompt naming the current value")
    g = p.add_argument_group("optimisation and losses")
    g.add_argument("--train_batch_size", type=at_least(1), default=16)
    g.add_argument("--learning_rate", type=float, default=5e-4)
    g.add_argument("--max_grad_norm", type=float, default=1.0)
    g.add_argument("--ema_decay", type=float, default=0.999)
    g.add_argument("--clip_weight", type=float, default=1.0)
    g.add_argument("--prompt_weight", type=float, default=0.0)
    g.add_argument("--direction_weight", type=float, default=0.5)
    g.add_argument("--l2_weight", type=float, default=0.02)
    g.add_argument("--pixel_weight", type=float, default=0.0)
    g.add_argument("--guide_views", type=int, default=0,
                   help="score the mean guide embedding of this many random views (shift, zoom, noise) of each "
                        "edit instead of the edit alone (0: off); see HDVILAGuide.augmented_image_features")
    args = p.parse_args(argv)
    if args.init_mapper and args.random_guide:
        p.error("--init_mapper and --random_guide do not go together: a mapper trained with one guide does not read "
                "another's embeddings")
    if args.guide_views < 0:
        p.error(f"--guide_views must be >= 0, got {args.guide_views}")
    for name in ("synthetic_fraction", "noop_prob"):
        if not 0.0 <= getattr(args, name) < 1.0:
            p.error(f"--{name} must be in [0, 1), got {getattr(args, name)}")
    return args


def load_models(args: argparse.Namespace) -> dict[str, Any]:
    """Generator, encoder, guide (frozen) and the HD-VILA folder's digest."""
    from generation.editing.encoder import LatentEncoder
    from generation.editing.guide import HDVILAGuide
    from generation.stylegan2.convert import load_stylegan2
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.paths import resolve_model_path
    from hdvila.processing_hdvila import HDVILAProcessor

    g_path = resolve_model_path(args.generator, "stylegan2-demo64", option="--generator",
                                accepts="a StyleGAN2 model folder, an NVlabs .pkl or a rosinality .pt")
    G = load_stylegan2(g_path).eval().requires_grad_(False).float()
    e_path = resolve_model_path(args.encoder, "edit-demo64/encoder", option="--encoder")
    encoder = LatentEncoder.from_pretrained(e_path).eval().requires_grad_(False)
    encoder.check_generator(G)
    h_path = resolve_model_path(args.hdvila, "hdvila-mini", option="--hdvila")
    hdvila = HDVILAModel.from_pretrained(h_path)
    if args.random_guide:
        torch.manual_seed(args.seed + 1000)
        hdvila = HDVILAModel(hdvila.config)
    guide = HDVILAGuide(hdvila, HDVILAProcessor.from_config(hdvila.config))
    return {"G": G, "encoder": encoder, "guide": guide, "hdvila_dir": h_path}


class EditData:
    """The training pool: inverted renders with their specs, latents [N, num_ws, w_dim] and guide
    embeddings of their reconstructions [N, D]; and per-step edits drawn from it."""

    def __init__(self, specs, ws: torch.Tensor, source_embeds: torch.Tensor):
        self.specs, self.ws, self.source_embeds = specs, ws, source_embeds

    def __len__(self) -> int:
        return len(self.specs)


@torch.no_grad()
def invert_renders(G, encoder, guide, split: str, num: int, seed: int, cache: Path | None) -> EditData:
    """Render ``num`` images of ``split``, invert them with the encoder, embed the reconstructions."""
    from generation.data import render_demo_images
    from hdvila.demo.dataset import sample_image_spec

    specs = [sample_image_spec(split, seed, i) for i in range(num)]
    if cache is not None and cache.is_file():
        z = torch.load(cache, weights_only=True)
        if z["ws"].shape[0] == num:
            return EditData(specs, z["ws"], z["source"])
    pixels = torch.from_numpy(render_demo_images(num, G.img_resolution, split=split, seed=seed, progress=num > 256))
    ws, embeds = [], []
    from tqdm.auto import tqdm

    for i in tqdm(range(0, num, 64), desc=f"inverting {num} {split} renders", disable=num <= 256):
        x = pixels[i:i + 64].float() / 127.5 - 1
        w = encoder(x.to(G.mapping.w_avg.device), G)
        ws.append(w.float().cpu())
        embeds.append(guide.image_features(synthesize(G, w).clamp(-1, 1)).cpu())
    data = EditData(specs, torch.cat(ws), torch.cat(embeds))
    if cache is not None:
        from hdvila.atomic import atomic_path

        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            torch.save({"ws": data.ws, "source": data.source_embeds}, tmp)
    return data


def synthesize(G, ws: torch.Tensor) -> torch.Tensor:
    return G.synthesis(ws, noise_mode="const", force_fp32=True, fused_modconv=False)


class ZeroShotReader:
    """Reads a generator sample's attributes with the guide: per attribute, the value whose captions
    (the image's other attributes fixed to a neutral reading) HD-VILA scores highest."""

    def __init__(self, guide):
        from hdvila.demo.attributes import ATTRIBUTES

        self.values = {k: list(v) for k, v in ATTRIBUTES.items()}
        names = {"shape": "a {} shape", "color": "a {} shape", "background": "a shape on a {} background",
                 "size": "a {} shape", "pattern": "a {} shape"}
        self.embeds = {k: guide.text_features([names[k].format(v) for v in vals]) for k, vals in self.values.items()}

    def read(self, image_embeds: torch.Tensor) -> list[dict[str, str]]:
        out = [dict() for _ in range(len(image_embeds))]
        for k, emb in self.embeds.items():
            pick = (image_embeds @ emb.T.to(image_embeds)).argmax(1).tolist()
            for row, j in zip(out, pick):
                row[k] = self.values[k][j]
        return out


def pseudo_spec(reading: dict[str, str]):
    """An ImageSpec with the read attributes, centred (captions then say "in the center")."""
    from hdvila.demo.attributes import SIZE_RADIUS, ImageSpec

    return ImageSpec(shape=reading["shape"], color=reading["color"], background=reading["background"],
                     size=reading["size"], pattern=reading["pattern"], cx=0.5, cy=0.5, row=1, col=1,
                     radius=SIZE_RADIUS[reading["size"]], angle=0.0)


def draw_edits(specs, rng: np.random.Generator, noop_prob: float) -> list[tuple[str, str, str, str, str]]:
    """Per spec: (attribute, value, prompt, source caption, target caption)."""
    from generation.editing.prompts import edit_prompt, sample_edit, target_caption
    from hdvila.demo.captions import caption_image

    out = []
    for spec in specs:
        attribute, value = sample_edit(spec, rng)
        if rng.random() < noop_prob:
            value = getattr(spec, attribute)
        k = int(rng.integers(1 << 30))
        source = caption_image(spec, np.random.default_rng(k), "train")
        target = target_caption(spec, attribute, value, np.random.default_rng(k))  # same wording draw as the source
        out.append((attribute, value, edit_prompt(attribute, value, rng, "train"), source, target))
    return out


class PromptTable:
    """Text embeddings, computed once per distinct text."""

    def __init__(self, guide):
        self.guide, self.cache = guide, {}

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        new = sorted({t for t in texts if t not in self.cache})
        for i in range(0, len(new), 256):
            for t, e in zip(new[i:i + 256], self.guide.text_features(new[i:i + 256]).cpu()):
                self.cache[t] = e
        return torch.stack([self.cache[t] for t in texts])


def loss_weights(args: argparse.Namespace) -> dict[str, float]:
    """The loss weights of the command line, by the part names of :func:`edit_loss`."""
    return {"clip": args.clip_weight, "prompt": args.prompt_weight, "direction": args.direction_weight,
            "l2": args.l2_weight, "pixel": args.pixel_weight}


def edit_loss(mapper, G, guide, texts: PromptTable, ws, source_embeds, edits, weights: dict[str, float],
              guide_views: int = 0):
    """The training objective on one batch; -> (loss, parts, edited images)."""
    from generation.editing.guide import cosine_loss, directional_loss

    device = ws.device
    prompt = texts([e[2] for e in edits]).to(device)
    src_txt, tgt_txt = texts([e[3] for e in edits]).to(device), texts([e[4] for e in edits]).to(device)
    w_avg = G.mapping.w_avg
    offset = mapper(ws, prompt, source_embeds, w_avg).float()
    img = synthesize(G, ws + offset).float()
    emb = guide.augmented_image_features(img, guide_views)
    scale = mapper.config.w_scale if hasattr(mapper, "config") else mapper.module.config.w_scale
    parts = {"clip": cosine_loss(emb, tgt_txt).mean(),
             "prompt": cosine_loss(emb, prompt).mean(),
             "direction": directional_loss(emb, source_embeds, tgt_txt, src_txt).mean(),
             "l2": (offset / scale).square().mean()}
    if weights.get("pixel"):
        with torch.no_grad():
            src_img = synthesize(G, ws).float()
        parts["pixel"] = (img - src_img).square().mean()
    loss = sum(weights[k] * v for k, v in parts.items())
    return loss, parts, img


@torch.no_grad()
def validate(mapper, G, guide, texts: PromptTable, val: EditData, out_png: Path,
             weights: dict[str, float] | None = None) -> dict[str, float]:
    """Guide losses of one edit per attribute on the validation renders (``val/clip_*``: to the target
    caption, ``val/prompt_*``: to the prompt, ``val/direction_*``: the directional term against a
    source/target caption pair of one wording), their means, ``val/guide`` (the three weighted as in
    training: the selection metric), and a PNG grid."""
    from generation.editing.guide import cosine_loss, directional_loss
    from generation.editing.prompts import EDIT_ATTRIBUTES, edit_prompt, sample_edit, target_caption
    from hdvila.demo.captions import caption_image
    from hdvila.imageio import save_image
    from hdvila.tensors import image_grid

    rng, pair_rng = np.random.default_rng(0), np.random.default_rng(1)
    ws, src = val.ws.to(G.mapping.w_avg.device), val.source_embeds.to(G.mapping.w_avg.device)
    cols, metrics = [synthesize(G, ws).clamp(-1, 1)], {}
    for attribute in EDIT_ATTRIBUTES:
        edits = [sample_edit(s, rng, attribute) for s in val.specs]
        prompts = [edit_prompt(a, v, rng) for a, v in edits]
        targets = [target_caption(s, a, v, rng) for s, (a, v) in zip(val.specs, edits)]
        prompt_embeds = texts(prompts).to(ws.device)
        out = synthesize(G, mapper.edit(ws, prompt_embeds, src, G.mapping.w_avg)).clamp(-1, 1)
        emb = guide.image_features(out)
        metrics[f"val/clip_{attribute}"] = float(cosine_loss(emb, texts(targets).to(ws.device)).mean())
        metrics[f"val/prompt_{attribute}"] = float(cosine_loss(emb, prompt_embeds).mean())
        keys = pair_rng.integers(1 << 30, size=len(edits)).tolist()
        pair_src = [caption_image(s, np.random.default_rng(k), "train") for s, k in zip(val.specs, keys)]
        pair_tgt = [target_caption(s, a, v, np.random.default_rng(k)) for s, (a, v), k in zip(val.specs, edits, keys)]
        metrics[f"val/direction_{attribute}"] = float(directional_loss(
            emb, src, texts(pair_tgt).to(ws.device), texts(pair_src).to(ws.device)).mean())
        cols.append(out)
    k = min(8, len(val))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    save_image(image_grid(torch.stack([c[:k] for c in cols], dim=1).flatten(0, 1), nrow=len(cols)), out_png)
    kinds = ("clip", "prompt", "direction")
    for kind in kinds:
        metrics[f"val/{kind}"] = sum(metrics[f"val/{kind}_{a}"] for a in EDIT_ATTRIBUTES) / len(EDIT_ATTRIBUTES)
    w = weights or {"clip": 1.0}
    metrics["val/guide"] = sum(w.get(k, 0.0) * metrics[f"val/{k}"] for k in kinds)
    return metrics


def score(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """``--score``: the validation metrics of each mapper folder (no training, no judge); printed."""
    from generation.editing.mapper import EditMapper
    from hdvila.errors import CheckpointError

    models = load_models(args)
    G, encoder, guide = models["G"], models["encoder"], models["guide"]
    val = invert_renders(G, encoder, guide, "test", args.val_size, args.seed, None)
    texts, out = PromptTable(guide), {}
    weights = loss_weights(args)
    for folder in args.score:
        if not (Path(folder) / "config.json").is_file():
            raise CheckpointError(f"{folder} is not a mapper folder (no config.json); give e.g. OUTPUT_DIR/mapper "
                                  f"or OUTPUT_DIR/checkpoint-N/ema.")
        mapper = EditMapper.from_pretrained(folder).eval()
        mapper.check_generator(G)
        out[folder] = validate(mapper, G, guide, texts, val, Path(args.output_dir) / "score" /
                               f"{Path(folder).resolve().parent.name}-{Path(folder).name}.png", weights)
        means = ("val/clip", "val/prompt", "val/direction", "val/guide")
        print(folder, " ".join(f"{k}={out[folder][k]:.4f}" for k in means), flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from generation.editing.mapper import EditMapper, config_for
    from generation.stylegan2.fingerprint import generator_fingerprint
    from generation.stylegan2.projector import w_statistics
    from hdvila.modeling_utils import tensors_digest

    args = parse_args(argv)
    if args.score:
        return {"scores": score(args)}
    precision = resolve_mixed_precision(args.mixed_precision, torch.cuda.is_available())
    accelerator = build_accelerator(args, logger, mixed_precision=precision, cpu=not torch.cuda.is_available())
    models = load_models(args)
    G, encoder, guide = models["G"], models["encoder"], models["guide"]
    device = accelerator.device
    for m in (G, encoder, guide):
        m.to(device)
    torch.manual_seed(args.seed)
    if args.init_mapper:
        from generation.editing.guide import guide_fingerprint

        mapper = EditMapper.from_pretrained(args.init_mapper).float()
        mapper.check_generator(G, source=f"--generator for --init_mapper {args.init_mapper}")
        mapper.check_guide(guide_fingerprint(guide.hdvila), int(guide.hdvila.config.projection_dim),
                           source=f"--hdvila for --init_mapper {args.init_mapper}")
    else:  # the digest is of the guide really used (a random one under --random_guide)
        _, w_std = w_statistics(G, 2000)
        config = config_for(G, guide.hdvila, hidden=args.hidden,
                            w_scale=w_std / math.sqrt(generator_fingerprint(G)["w_dim"]))
        mapper = EditMapper(config)
    cache = Path(args.output_dir) / "cache"
    tag = "random" if args.random_guide else "hdvila"
    # The cache is named by the encoder's weights: another encoder in the same output folder inverts afresh.
    encoder_digest = tensors_digest(encoder.state_dict().values(), 12)
    train = invert_renders(G, encoder, guide, "train", args.train_size, args.seed,
                           cache / f"train-{args.train_size}-{tag}-{encoder_digest}.pt")
    val = invert_renders(G, encoder, guide, "test", args.val_size, args.seed, None)
    texts, reader = PromptTable(guide), ZeroShotReader(guide)
    opt = torch.optim.Adam(mapper.parameters(), lr=args.learning_rate, betas=(0.9, 0.99))
    mapper, opt = accelerator.prepare(mapper, opt)
    ema = EMA(accelerator.unwrap_model(mapper), args.ema_decay)
    step = 0
    if (resume := resolve_resume(args.output_dir, args.resume_from_checkpoint)) is not None:
        step = load_checkpoint(accelerator, resume)["step"]
        ema.module.load_state_dict(type(ema.module).from_pretrained(resume / EMA_FOLDER).state_dict())
    init_trackers(accelerator, "train_mapper", args)
    n_syn = int(round(args.train_batch_size * args.synthetic_fraction))
    n_real = args.train_batch_size - n_syn
    sampler = StepBatchSampler(len(train), max(n_real, 1), accumulation=args.gradient_accumulation_steps,
                               rank=accelerator.process_index, world_size=accelerator.num_processes, seed=args.seed,
                               start_step=step)
    weights = loss_weights(args)
    stats, budget, result = StepStats(), TimeBudget(args.max_train_minutes), {}
    from tqdm.auto import tqdm

    bar = tqdm(total=args.max_train_steps, initial=step, desc="train_mapper", disable=not accelerator.is_main_process)
    while step < args.max_train_steps:
        torch.manual_seed(step_seed(args.seed, step, accelerator.process_index))
        rng = np.random.default_rng(step_seed(args.seed + 1, step, accelerator.process_index))
        for micro in range(args.gradient_accumulation_steps):
            idx = sampler.indices(step, micro)[:n_real]
            ws, src = train.ws[idx].to(device), train.source_embeds[idx].to(device)
            specs = [train.specs[i] for i in idx]
            if n_syn:
                z = torch.from_numpy(rng.standard_normal((n_syn, G.z_dim)).astype(np.float32)).to(device)
                with torch.no_grad():
                    syn_ws = G.mapping(z, None)
                    syn_src = guide.image_features(synthesize(G, syn_ws).clamp(-1, 1))
                specs += [pseudo_spec(r) for r in reader.read(syn_src)]
                ws, src = torch.cat([ws, syn_ws]), torch.cat([src, syn_src])
            edits = draw_edits(specs, rng, args.noop_prob)
            with accelerator.autocast():
                loss, parts, _ = edit_loss(mapper, G, guide, texts, ws, src, edits, weights, args.guide_views)
            accelerator.backward(loss / args.gradient_accumulation_steps)
            stats.report("loss", loss.detach())
            for k, v in parts.items():
                stats.report(k, v.detach())
        accelerator.clip_grad_norm_(mapper.parameters(), args.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(accelerator.unwrap_model(mapper), decay=min(args.ema_decay, (1 + step) / (10 + step)))
        step += 1
        stop, validation = end_of_step(
            accelerator, args, step, bar=bar, stats=stats, budget=budget, replicas=[mapper], seen_key="edits_seen",
            save_extra=lambda folder: ema.module.save_pretrained(folder / EMA_FOLDER), logger=logger, precision=4,
            validate=lambda step=step: validate(ema.module, G, guide, texts, val,
                                                Path(args.output_dir) / "validation" / f"step-{step:06d}.png", weights))
        result = validation or result
        if stop:
            break
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out = Path(args.output_dir) / "mapper"
        ema.module.save_pretrained(out)
        result["mapper"] = str(out)
        if args.pipeline_dir:
            from generation.editing.pipeline_edit import EditPipeline

            pipe = EditPipeline(hdvila=guide.hdvila, processor=guide.processor, generator=G, encoder=encoder,
                                mapper=ema.module)
            result["pipeline"] = str(pipe.save_pretrained(args.pipeline_dir))
        logger.info("wrote %s", out)
    accelerator.end_training()
    return {"step": step, **result}


if __name__ == "__main__":
    sys.exit(run_cli(main))
