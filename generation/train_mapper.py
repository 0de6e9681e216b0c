"""Train the open-vocabulary edit mapper: one network that edits a StyleGAN2 W+ latent for any prompt.

    accelerate launch generation/train_mapper.py --output_dir runs/mapper-demo64 --encoder runs/encoder-demo64/encoder
    accelerate launch generation/train_mapper.py --output_dir runs/my-mapper --generator ffhq.pkl --hdvila my-hdvila \
        --encoder runs/my-encoder/encoder --data my_photos/ --attributes my_attributes.json
    accelerate launch --multi_gpu --num_processes 2 generation/train_mapper.py ...   # 2 processes (gloo on a CPU)

What is trained: :class:`generation.editing.mapper.EditMapper`. The generator, the encoder and the
HD-VILA guide are frozen.

Vocabulary: ``--attributes FILE`` (JSON, :mod:`generation.editing.attributes`: attribute -> values ->
wordings, with prompt templates) names what can be edited and how users say it; the default is the
demo domain's preset (:func:`generation.presets.demo_vocabulary`).

Data: ``--data demo`` (``--train_size`` renders of the demo domain's train split) or a folder of
images (any sizes: centre-cropped and resized to the generator's resolution; the last ``--val_size``
files, in sorted order, are held out for validation), inverted once by the encoder (W+ latents
cached in ``OUTPUT_DIR/cache``), plus ``--synthetic_fraction`` of each batch drawn fresh from the
generator's mapping (exact latents). No labels are needed: what each image is *now* is the guide's
own zero-shot reading of it (:class:`generation.editing.value_objective.ValueReader`; the judge is
never used). Each training image gets an edit: an editable attribute, a value other than the one
read, and a prompt in training wording; with probability ``--noop_prob`` the prompt names the value
read, and the right edit is none. The loss (:func:`generation.editing.value_objective.value_edit_loss`):

- ``--value_weight`` * the cross-entropy of the guide's reading of the edited attribute against the
  asked value (a softmax over the attribute's values);
- ``--keep_weight`` * the KL divergence from the source's reading of every other attribute to the edit's;
- ``--l2_weight`` * the summed squared W+ offset per image in units of the generator's w spread
  (StyleCLIP's latent L2).

Checkpoints hold the mapper, its optimiser, its EMA (``ema/``) and the RNG states; batches, edits
and per-step randomness are functions of the step, so a resumed run continues as an uninterrupted
one. Validation writes ``OUTPUT_DIR/validation/step-N.png`` (source | one edit per attribute) and logs
the guide's reading of one edit per editable attribute of each held-out image (``val/read_<a>``:
read as the asked value; ``val/kept_<a>``: every other attribute read as on the source;
``val/select`` = (mean read + mean kept) / 2, the selection metric, fixed before any judging;
:mod:`generation.mapper_eval`). At the end the EMA mapper is written to ``OUTPUT_DIR/mapper``;
with ``--pipeline_dir`` the whole ``EditPipeline`` folder is written there too. ``hdvila score-mapper
DIR...`` computes the validation numbers of trained mappers (e.g. ``checkpoint-N/ema``) without training.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a script: import the package, not sibling files
    from runpy import run_path

    run_path(str(Path(__file__).resolve().parents[1] / "hdvila/training/sys_path.py"))["put_package_first"](__file__)

import argparse
import logging
import math
from typing import Any, Sequence

import numpy as np
import torch

from generation import mapper_eval
from generation.mapper_eval import (
    EditData,
    PromptTable,
    draw_edits,
    edit_targets,
    invert_images,
    load_vocabulary,
    validate_mapper,
)
from hdvila.training import (
    EMA,
    EMA_FOLDER,
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
    g.add_argument("--init_mapper", default=None, help="start from this mapper model folder (fresh optimiser, its own "
                   "size: --hidden does not apply) instead of a random initialisation; it must fit the generator "
                   "and the guide")
    g.add_argument("--pipeline_dir", default=None, help="also write the EditPipeline folder here at the end")
    g = p.add_argument_group("data")
    g.add_argument("--data", default="demo", help="'demo' (renders of the demo domain) or a folder of images")
    g.add_argument("--attributes", default=None,
                   help="JSON vocabulary (attribute -> values -> wordings; generation/editing/attributes.py) "
                        "(default: the demo domain's)")
    g.add_argument("--train_size", type=at_least(1), default=10000, help="demo: train-split renders to invert")
    g.add_argument("--val_size", type=at_least(1), default=16,
                   help="held-out images for validation (demo: test-split renders; a folder: its last files)")
    g.add_argument("--skip_bad_images", action="store_true", help="a folder: leave out unusable files with a warning")
    g.add_argument("--synthetic_fraction", type=float, default=0.25,
                   help="share of each batch that is generator samples")
    g.add_argument("--noop_prob", type=float, default=0.1, help="probability of a prompt naming the current value")
    g.add_argument("--unread_attributes", nargs="*", default=[], metavar="ATTRIBUTE",
                   help="attributes the guide does not read reliably from an image (measure with hdvila eval-guide): "
                        "still edited through the value prior, but neither their asked value nor their keeping is "
                        "scored (for the bundled guide: shape)")
    g.add_argument("--value_prior_samples", type=at_least(0), default=4096,
                   help="generator samples read by the guide for the value-direction prior (the mean latent of each "
                        "value, EditMapper.value_prior; the mapper learns a residual on top); 0: no prior")
    g.add_argument("--values_per_image", type=at_least(1), default=1,
                   help="edits per training image in a batch, each asking another value of one attribute (the "
                        "batch then holds train_batch_size / this many images): the same image asked for several "
                        "values in one step tells the mapper what depends on the value")
    g = p.add_argument_group("optimisation and losses")
    g.add_argument("--train_batch_size", type=at_least(1), default=16)
    g.add_argument("--learning_rate", type=float, default=5e-4)
    g.add_argument("--max_grad_norm", type=float, default=1.0)
    g.add_argument("--ema_decay", type=float, default=0.999)
    g.add_argument("--value_weight", type=at_least(0.0, float), default=1.0,
                   help="cross-entropy of the guide's reading of the edited attribute against the asked value")
    g.add_argument("--keep_weight", type=at_least(0.0, float), default=1.0,
                   help="KL from the source's reading of every other attribute to the edit's")
    g.add_argument("--l2_weight", type=at_least(0.0, float), default=0.002,
                   help="summed squared W+ offset per image, in units of the generator's w spread")
    g.add_argument("--guide_views", type=at_least(0), default=0,
                   help="score the mean guide embedding of this many random views (shift, zoom, noise) of each "
                        "edit instead of the edit alone (0: off); see HDVILAGuide.augmented_image_features")
    args = p.parse_args(argv)
    if args.init_mapper and args.random_guide:
        p.error("--init_mapper and --random_guide do not go together: a mapper trained with one guide does not read "
                "another's embeddings")
    for name in ("synthetic_fraction", "noop_prob"):
        if not 0.0 <= getattr(args, name) < 1.0:
            p.error(f"--{name} must be in [0, 1), got {getattr(args, name)}")
    if args.data != "demo" and not Path(args.data).is_dir():
        p.error(f"--data must be 'demo' or a folder of images; {args.data} is not a folder")
    return args


def load_models(args: argparse.Namespace) -> dict[str, Any]:
    """Generator, encoder, guide (frozen) and the HD-VILA folder's path."""
    return mapper_eval.load_edit_models(args.generator, args.encoder, args.hdvila,
                                        random_guide_seed=args.seed + 1000 if args.random_guide else None)


def check_data(args: argparse.Namespace) -> None:
    """The cheap checks of a ``--data`` folder, before anything is written
    (:func:`generation.mapper_eval.check_data`)."""
    mapper_eval.check_data(args.data, args.val_size)


def load_pixels(args: argparse.Namespace, resolution: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(train pixels, validation pixels, a name for the cache): uint8 [N, 3, R, R] each."""
    return mapper_eval.load_pixels(args.data, resolution, train_size=args.train_size, val_size=args.val_size,
                                   seed=args.seed, skip_bad_images=args.skip_bad_images)


def loss_weights(args: argparse.Namespace) -> dict[str, float]:
    return {"value": args.value_weight, "keep": args.keep_weight, "l2": args.l2_weight}


def edit_loss(mapper, G, guide, reader, texts: PromptTable, vocabulary, ws, source_embeds, edits,
              weights: dict[str, float], guide_views: int = 0):
    """The training objective on one batch of edits; -> (loss, parts, edited images)."""
    from generation.editing.value_objective import value_edit_loss

    device = ws.device
    prompt = texts([e[2] for e in edits]).to(device)
    offset = mapper(ws, prompt, source_embeds, G.mapping.w_avg).float()
    img = G.render(ws + offset, fused_modconv=False).float()
    emb = guide.augmented_image_features(img, guide_views)
    with torch.no_grad():
        source_logits = reader.logits(source_embeds)
    scale = mapper.config.w_scale if hasattr(mapper, "config") else mapper.module.config.w_scale
    loss, parts = value_edit_loss(reader, emb, source_logits, [e[0] for e in edits],
                                  edit_targets(vocabulary, edits).to(device), offset, scale, weights)
    return loss, parts, img


@torch.no_grad()
def value_means(G, guide, reader, num: int, seed: int, batch_size: int = 128):
    """The value-direction prior's tables from ``num`` generator samples read by the guide: (value
    prompt embeddings [V, D], attribute index [V], mean W+ latent of the samples read as each value
    [V, num_ws, w_dim]; a value never read gets the mean of all samples, a zero direction), V the
    values of every attribute of ``reader`` in order."""
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    device = G.mapping.w_avg.device
    ws, reads = [], {a: [] for a in reader.names}
    for i in tqdm(range(0, num, batch_size), desc="reading generator samples for the value prior", disable=num < 1024):
        z = torch.randn(min(batch_size, num - i), G.z_dim, generator=gen).to(device)
        w = G.mapping(z, None)
        read = reader.read(guide.image_features(G.render(w, fused_modconv=False).clamp(-1, 1)))
        ws.append(w.float().cpu())
        for a in reader.names:
            reads[a].append(read[a].cpu())
    ws = torch.cat(ws)
    means, attribute = [], []
    for k, a in enumerate(reader.names):
        read = torch.cat(reads[a])
        for j in range(len(reader.values[a])):
            sel = read == j
            means.append(ws[sel].mean(0) if sel.any() else ws.mean(0))
            attribute.append(k)
    text = torch.cat([reader.embeds[a].cpu() for a in reader.names])
    return text, torch.tensor(attribute), torch.stack(means)


def build_mapper(args: argparse.Namespace, G, guide, vocabulary):
    """A fresh mapper for ``G`` and the guide, or ``--init_mapper`` (checked against both)."""
    from generation.editing.guide import guide_fingerprint
    from generation.editing.mapper import EditMapper, config_for, gate_config
    from generation.stylegan2.fingerprint import generator_fingerprint
    from generation.stylegan2.projector import w_statistics

    if args.init_mapper:
        mapper = EditMapper.from_pretrained(args.init_mapper).float()
        mapper.check_generator(G, source=f"--generator for --init_mapper {args.init_mapper}")
        mapper.check_guide(guide_fingerprint(guide.hdvila), int(guide.hdvila.config.projection_dim),
                           source=f"--hdvila for --init_mapper {args.init_mapper}")
        gate = gate_config(vocabulary, mapper.config.num_ws, mapper.config.resolution)
        if gate != {k: getattr(mapper.config, k) for k in gate}:  # the vocabulary's layers differ: regate
            mapper = mapper.with_layer_gate(**gate, vocabulary=vocabulary.words(), attributes=vocabulary.to_dict())
        mapper.route_by(guide, vocabulary)  # routed by this run's vocabulary and guide, whatever the folder held
        return mapper
    # the digest is of the guide really used (a random one under --random_guide)
    _, w_std = w_statistics(G, 2000)
    prior_values = sum(len(vocabulary.values(a)) for a in vocabulary.names) if args.value_prior_samples else 0
    config = config_for(G, guide.hdvila, vocabulary=vocabulary, hidden=args.hidden,
                        w_scale=w_std / math.sqrt(generator_fingerprint(G)["w_dim"]), prior_values=prior_values,
                        prior_scale=float(guide.hdvila.logit_scale))
    mapper = EditMapper(config)
    mapper.route_by(guide, vocabulary)
    return mapper


def condition_statistics(mapper, guide, vocabulary, train: "EditData") -> None:
    """A fresh mapper's condition standardisation: every training prompt, and the training images."""
    prompts = sorted({p for _, _, p in vocabulary.all_prompts("train")})
    mapper.set_condition_statistics(torch.cat([guide.text_features(prompts[i:i + 256]).cpu()
                                               for i in range(0, len(prompts), 256)]), train.source_embeds)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from generation.editing.value_objective import ValueReader
    from hdvila.modeling_utils import tensors_digest

    args = parse_args(argv)
    # The user's inputs are checked before anything is written (build_accelerator creates --output_dir): a bad
    # --attributes file or a --data folder without enough image files stops with one line and leaves no folder.
    vocabulary = load_vocabulary(args.attributes)
    check_data(args)
    precision = resolve_mixed_precision(args.mixed_precision, torch.cuda.is_available())
    accelerator = build_accelerator(args, logger, mixed_precision=precision, cpu=not torch.cuda.is_available())
    models = load_models(args)
    G, encoder, guide = models["G"], models["encoder"], models["guide"]
    device = accelerator.device
    for m in (G, encoder, guide):
        m.to(device)
    torch.manual_seed(args.seed)
    mapper = build_mapper(args, G, guide, vocabulary)
    train_pixels, val_pixels, data_name = load_pixels(args, G.img_resolution)
    tag = "random" if args.random_guide else "hdvila"
    # The cache is named by the data and the encoder's weights: another encoder inverts afresh.
    encoder_digest = tensors_digest(encoder.state_dict().values(), 12)
    train = invert_images(G, encoder, guide, train_pixels,
                          Path(args.output_dir) / "cache" / f"train-{data_name}-{tag}-{encoder_digest}.pt",
                          f"inverting {len(train_pixels)} training images")
    val = invert_images(G, encoder, guide, val_pixels, None, "inverting the validation images")
    texts, reader = PromptTable(guide), ValueReader(guide, vocabulary, unread=args.unread_attributes)
    resume = resolve_resume(args.output_dir, args.resume_from_checkpoint)
    if not args.init_mapper and resume is None:  # a fresh mapper (a checkpoint brings its own buffers)
        condition_statistics(mapper, guide, vocabulary, train)
        if mapper.config.prior_values:
            mapper.set_value_prior(*value_means(G, guide, reader, args.value_prior_samples, args.seed))
    opt = torch.optim.Adam(mapper.parameters(), lr=args.learning_rate, betas=(0.9, 0.99))
    mapper, opt = accelerator.prepare(mapper, opt)
    ema = EMA(accelerator.unwrap_model(mapper), args.ema_decay)
    step = 0
    if resume is not None:
        step = load_checkpoint(accelerator, resume)["step"]
        ema.module.load_state_dict(type(ema.module).from_pretrained(resume / EMA_FOLDER).state_dict())
    init_trackers(accelerator, "train_mapper", args)
    images = max(1, args.train_batch_size // args.values_per_image)
    n_syn = int(round(images * args.synthetic_fraction))
    n_real = images - n_syn
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
            if n_syn:
                z = torch.from_numpy(rng.standard_normal((n_syn, G.z_dim)).astype(np.float32)).to(device)
                with torch.no_grad():
                    syn_ws = G.mapping(z, None)
                    syn_src = guide.image_features(G.render(syn_ws, fused_modconv=False).clamp(-1, 1))
                ws, src = torch.cat([ws, syn_ws]), torch.cat([src, syn_src])
            per = args.values_per_image
            edits = draw_edits(vocabulary, reader.current(src), rng, args.noop_prob, per_image=per)
            ws, src = ws.repeat_interleave(per, 0), src.repeat_interleave(per, 0)
            with accelerator.autocast():
                loss, parts, _ = edit_loss(mapper, G, guide, reader, texts, vocabulary, ws, src, edits, weights,
                                           args.guide_views)
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
            validate=lambda step=step: validate_mapper(ema.module, G, guide, reader, texts, vocabulary, val,
                                                       Path(args.output_dir) / "validation" / f"step-{step:06d}.png",
                                                       args.seed))
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
