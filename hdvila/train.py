"""Train HD-VILA with Accelerate: stage 1 (contrastive), stage 2 (MLM) or retrieval fine-tuning.

    accelerate launch hdvila/train.py --stage 1 --data demo --output_dir runs/hdvila-mini \\
        --max_train_steps 3000 --checkpointing_steps 250 --resume_from_checkpoint latest
    python hdvila/train.py ...                      # the same, one process
    accelerate launch --multi_gpu --num_processes 2 hdvila/train.py ...   # 2 processes (gloo on a CPU)

Stages (the HD-VILA paper, section 4):

``1``         contrastive InfoNCE between text and video embeddings (temperature 0.05, mean of the
              two directions, features gathered across processes), plus the same loss on image-caption
              pairs embedded as static clips (``--image_ratio``), so image-text similarity is trained.
``2``         masked language modelling (15%, 80/10/10) on the multimodal layers, visual embeddings and
              MLM head; everything trained in stage 1 is frozen (``set_training_stage(2)``). Initialise
              from a stage-1 model folder with ``--init_from`` (loaded non-strictly). Videos only.
``finetune``  retrieval fine-tuning: a stage-1 model initialised non-strictly from a stage-2 folder
              (``--init_from``; extra keys are ignored), contrastive at temperature 0.08, summed over the
              two directions, lr 1e-5 by default.

Data: ``--data demo`` renders the demo domain on the fly (:class:`hdvila.data.DemoStepBatches`);
``--annotations FILE --videos DIR --format msrvtt|didemo|lsmdc|activitynet|jsonl`` reads video files
(:class:`hdvila.data.AnnotationStepBatches`), optionally with ``--image_annotations``. Batches are a
pure function of the step, so a resumed run sees the data a straight run would.

The loop follows diffusers' ``train_text_to_image.py`` on :mod:`hdvila.training`: AdamW (betas
0.9/0.98), warm-up then linear decay, gradient-norm clip 5, atomic ``checkpoint-{step}`` folders,
tensorboard logs in ``output_dir/logs``, retrieval R@1/5/10 on held-out data every
``--validation_steps``. At the end the model is written with ``save_pretrained`` to
``output_dir/model`` (the frozen MiniLM text tower is not stored; the model class reloads it).
The default model (``--preset demo``) is ``mini`` shrunk for two CPU cores (:data:`DEMO_OVERRIDES`);
``--video_input lr_only|hr_only`` trains the ablation variants.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a script: import the package, not sibling files
    from runpy import run_path  # the package is not importable yet: its sys.path helper runs by path

    run_path(str(Path(__file__).resolve().parents[1] / "hdvila/training/sys_path.py"))["put_package_first"](__file__)

import argparse
import dataclasses
import json
import logging
import math
import os
import time
from typing import Any, Sequence

import torch
from torch import nn

from hdvila.configuration_hdvila import VIDEO_INPUTS, HDVILAConfig
from hdvila.errors import CheckpointError, UserError
from hdvila.training import (
    SCHEDULES,
    StepStats,
    TimeBudget,
    add_common_args,
    add_old_spelling,
    at_least,
    build_accelerator,
    init_trackers,
    load_checkpoint,
    lr_lambda,
    resolve_resume,
    run_cli,
    save_checkpoint,
    step_seed,
)

logger = logging.getLogger("hdvila.train")

# The default model: ``mini`` with one block per ResNet stage, a stem max-pool (HR 128 -> 2x2 grid,
# LR 32 -> 2x2 grid), a 2-block 128-wide TimeSformer; about 1.5M trainable parameters.
DEMO_OVERRIDES: dict[str, Any] = dict(resnet_layers=(1, 1, 1, 1), resnet_stem_pool=True, timesformer_depth=2,
                                      vision_width=128, timesformer_heads=4)
STAGE_TEMPERATURE = {"1": 0.05, "2": 0.05, "finetune": 0.08}
STAGE_LR = {"1": 5e-4, "2": 5e-4, "finetune": 1e-5}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train HD-VILA (stage 1, stage 2 or retrieval fine-tuning).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--stage", choices=["1", "2", "finetune"], default="1")
    g.add_argument("--preset", choices=["demo", "mini", "large"], default="demo",
                   help="architecture for a new model (demo = mini + DEMO_OVERRIDES, the default model)")
    g.add_argument("--config_overrides", default=None,
                   help='JSON object of HDVILAConfig fields, e.g. \'{"resnet_width": 8}\'')
    g.add_argument("--video_input", choices=VIDEO_INPUTS, default=None,
                   help="visual path: hybrid (paper), lr_only or hr_only (ablations); default: the config's")
    g.add_argument("--init_from", default=None,
                   help="model folder to start from, loaded non-strictly "
                   "(stage 2: a stage-1 model; finetune: a stage-2 model)")
    g.add_argument("--temperature", type=float, default=None, help="contrastive temperature (default: by stage)")
    g = p.add_argument_group("data")
    g.add_argument("--data", choices=["demo", "annotations"], default=None,
                   help="demo: render the demo domain; annotations: --annotations/--videos files "
                        "(default: annotations when --annotations is given, else demo)")
    g.add_argument("--annotations", default=None, help="training annotation file")
    g.add_argument("--videos", default=None, help="folder with the training videos")
    g.add_argument("--format", default="jsonl", help="annotation format (msrvtt, didemo, lsmdc, activitynet, jsonl)")
    g.add_argument("--image_annotations", default=None,
                   help="jsonl of {image, caption} rows (paths relative to the file) to mix in (annotation data)")
    g.add_argument("--train_batch_size", type=at_least(0), default=32,
                   help="videos per process per micro-batch (demo data: 0 for a stills-only phase, with "
                        "--train_image_batch_size)")
    g.add_argument("--image_ratio", type=at_least(0.0, float), default=0.5,
                   help="image-caption pairs per video in a batch (stage 1 / finetune; 0 disables images)")
    g.add_argument("--train_image_batch_size", type=at_least(0), default=None,
                   help="image-caption pairs per process per micro-batch (default: train_batch_size x image_ratio)")
    g.add_argument("--group_size", type=int, default=4,
                   help="demo: hard-negative groups of this many items sharing attributes (1: random batches)")
    g.add_argument("--caption_negatives", type=at_least(0), default=0,
                   help="demo: counterfactual captions per image (its caption with one attribute changed: shape, "
                        "colour, pattern, shape, size, background in turn) as extra image-to-text negatives, so "
                        "still-image embeddings must read every captioned attribute")
    g.add_argument("--value_weight", type=at_least(0.0, float), default=0.0,
                   help="demo: weight of the value-prompt loss (each still picks \"a star\", \"a red one\", ... of its "
                        "values among each attribute's others; 0: off)")
    g.add_argument("--attribute_weight", type=at_least(0.0, float), default=0.0,
                   help="demo: weight of the attribute loss (the summed cross-entropies of a training-only linear "
                        "classifier per attribute on each still's pooled visual features, so the visual tower keeps "
                        "shape; 0: off)")
    g.add_argument("--num_frames", type=int, default=None, help="frames per clip (default: the model's num_frames)")
    g.add_argument("--sample_rate", type=int, default=4, help="frame step inside a clip")
    g.add_argument("--train_n_clips", type=at_least(1), default=1, help="clips per video in training (paper: 2)")
    g.add_argument("--dataloader_num_workers", type=int, default=0, help="DataLoader worker processes")
    add_old_spelling(g, "--num_workers", "--dataloader_num_workers")
    g = p.add_argument_group("optimisation")
    g.add_argument("--num_train_epochs", type=int, default=1, help="annotation data: epochs if no --max_train_steps")
    g.add_argument("--learning_rate", type=float, default=None, help="default: 5e-4 (stages 1, 2), 1e-5 (finetune)")
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.98)
    g.add_argument("--adam_epsilon", type=float, default=1e-8)
    g.add_argument("--weight_decay", type=float, default=1e-3)
    g.add_argument("--lr_scheduler", choices=SCHEDULES, default="linear",
                   help="after warmup: linear decay to 0, constant, or halve every --lr_step_size steps")
    g.add_argument("--lr_warmup_steps", type=int, default=100)
    g.add_argument("--lr_step_size", type=int, default=None, help="step scheduler period (default: steps / 4)")
    g.add_argument("--max_grad_norm", type=float, default=5.0)
    g.add_argument("--cpu", action="store_true", help="train on the CPU even if CUDA is available")
    g.add_argument("--num_threads", type=int, default=None, help="torch CPU threads per process")
    add_old_spelling(g, "--threads", "--num_threads")
    add_common_args(p, output_dir="runs/hdvila-mini", max_train_steps=None, validation_steps=0, mixed_precision=None)
    g = p.add_argument_group("logs and validation")
    g.add_argument("--logging_steps", type=at_least(1), default=10)
    g.add_argument("--no_final_validation", action="store_true")
    g.add_argument("--val_videos", type=int, default=256, help="demo: held-out val videos")
    g.add_argument("--val_images", type=int, default=256, help="demo: held-out val images")
    g.add_argument("--val_n_clips", type=int, default=4, help="clips per validation video")
    g.add_argument("--val_annotations", default=None, help="annotation data: validation annotation file")
    g.add_argument("--val_videos_dir", default=None, help="annotation data: validation videos folder")
    g.add_argument("--val_format", default=None, help="annotation data: validation format (default --format)")
    g.add_argument("--no_progress", action="store_true", help="no tqdm bar")
    args = p.parse_args(argv)
    args.data = args.data or ("annotations" if args.annotations else "demo")
    if args.data == "annotations" and not (args.annotations and args.videos):
        p.error("annotation data needs --annotations and --videos")
    if args.train_batch_size == 0 and (args.data != "demo" or args.stage == "2" or not args.train_image_batch_size):
        p.error("--train_batch_size 0 (stills only) needs --data demo, stage 1 or finetune, and "
                "--train_image_batch_size")
    if args.data == "demo" and args.max_train_steps is None:
        p.error("--data demo needs --max_train_steps")
    if args.data != "demo" and (args.caption_negatives or args.value_weight or args.attribute_weight):
        p.error("--caption_negatives, --value_weight and --attribute_weight need --data demo (they use the demo "
                "domain's attributes)")
    if args.stage == "finetune" and not args.init_from:
        p.error("--stage finetune needs --init_from (a stage-2 model folder)")
    args.learning_rate = args.learning_rate or STAGE_LR[args.stage]
    args.temperature = args.temperature or STAGE_TEMPERATURE[args.stage]
    return args


def build_config(args: argparse.Namespace) -> HDVILAConfig:
    """The config of the model to train (from ``--init_from``'s config or the preset), with overrides."""
    from hdvila.modeling_hdvila import HDVILAModel

    overrides = json.loads(args.config_overrides) if args.config_overrides else {}
    if not isinstance(overrides, dict):
        raise UserError("--config_overrides must be a JSON object")
    overrides["stage"] = 2 if args.stage == "2" else 1
    if args.video_input:
        overrides["video_input"] = args.video_input
    if args.init_from:
        base = HDVILAModel.read_config(args.init_from)
    else:
        base = HDVILAConfig.preset("mini" if args.preset == "demo" else args.preset,
                                   **(DEMO_OVERRIDES if args.preset == "demo" else {}))
    try:
        return dataclasses.replace(base, **overrides)
    except TypeError as e:
        raise UserError(f"--config_overrides: {e}") from None


def load_non_strict(model: nn.Module, folder: str | Path) -> dict[str, list[str]]:
    """Load the weights of model folder ``folder`` into ``model`` where names and shapes match (the
    official recipe between stages). Returns {"loaded", "missing", "unexpected", "mismatched"} names;
    missing names exclude the model's external (package-provided) weights."""
    from safetensors.torch import load_file

    from hdvila.modeling_utils import WEIGHTS_NAME, compare_state_dict

    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: --init_from needs a model folder (config.json + {WEIGHTS_NAME}).")
    state, own = load_file(str(path)), model.state_dict()
    external = tuple(getattr(model, "external_weight_prefixes", ()))
    diff = compare_state_dict(own, state, optional=lambda k: bool(external) and k.startswith(external))
    ok = {k: v for k, v in state.items() if k in own and k not in diff.mismatched_names}
    model.load_state_dict(ok, strict=False)
    return {"loaded": sorted(ok), "missing": diff.missing, "unexpected": diff.unexpected,
            "mismatched": sorted(diff.mismatched_names)}


def build_model(args: argparse.Namespace):
    """(model, objective, processor) for ``--stage``, initialised from ``--init_from`` if given."""
    from hdvila.data import value_prompt_sizes
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.objectives import ContrastiveObjective, MLMObjective
    from hdvila.processing_hdvila import HDVILAProcessor

    config = build_config(args)
    model = HDVILAModel(config)
    if args.init_from:
        r = load_non_strict(model, args.init_from)
        logger.info("initialised from %s: %d tensors loaded, %d new, %d ignored, %d with other shapes",
                    args.init_from, len(r["loaded"]), len(r["missing"]), len(r["unexpected"]), len(r["mismatched"]))
    model.set_training_stage(2 if args.stage == "2" else 1)
    model.train()
    processor = HDVILAProcessor.from_config(config, num_frames=args.num_frames or config.num_frames,
                                            sample_rate=args.sample_rate, n_clips=args.val_n_clips,
                                            train_n_clips=args.train_n_clips)
    objective = (MLMObjective(model) if args.stage == "2" else
                 ContrastiveObjective(model, args.temperature, direction_sum=args.stage == "finetune",
                                      value_weight=args.value_weight, value_sizes=value_prompt_sizes(),
                                      attribute_weight=args.attribute_weight))
    return model, objective, processor


def build_data(args: argparse.Namespace, processor, rank: int, world: int):
    """(training micro-batches indexed by micro-batch number, validation set or None, images per batch)."""
    from hdvila.data import AnnotationStepBatches, DemoStepBatches, demo_eval_set, read_image_rows
    from hdvila.retrieval.annotations import load_annotations

    image_bs = args.train_image_batch_size
    if image_bs is None:
        image_bs = int(round(args.train_batch_size * args.image_ratio))
    image_bs = 0 if args.stage == "2" else image_bs
    if args.data == "demo":
        data = DemoStepBatches(processor, args.train_batch_size, image_bs, rank=rank, world_size=world, seed=args.seed,
                               group_size=args.group_size, caption_negatives=args.caption_negatives,
                               value_prompts=args.value_weight > 0, image_labels=args.attribute_weight > 0)
    else:
        ann = load_annotations(args.annotations, args.format)
        rows = read_image_rows(args.image_annotations) if args.image_annotations else []
        data = AnnotationStepBatches(processor, ann, args.videos, args.train_batch_size, rows, image_bs if rows else 0,
                                     rank=rank, world_size=world, seed=args.seed)
        if args.max_train_steps is None:
            per_epoch = math.ceil(len(ann) / (args.train_batch_size * world * args.gradient_accumulation_steps))
            args.max_train_steps = per_epoch * args.num_train_epochs
    val = None
    if rank == 0 and args.stage != "2":  # validation runs on the main process, in memory
        if args.data == "demo" and (args.val_videos or args.val_images):
            val = demo_eval_set(processor, "val", args.val_videos, args.val_images, seed=args.seed)
        elif args.val_annotations:
            val = {"annotations": load_annotations(args.val_annotations, args.val_format or args.format)}
    return data, val, image_bs


def build_optimizer(args: argparse.Namespace, params: list[nn.Parameter], world: int):
    """AdamW (no weight decay on biases and norms) and its schedule. The prepared scheduler steps once
    per process, as in diffusers, so its step counts are multiplied by the number of processes."""
    decay, no_decay = [p for p in params if p.ndim > 1], [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.learning_rate,
                                  betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    factor = lr_lambda(args.lr_scheduler, args.lr_warmup_steps * world, args.max_train_steps * world,
                       (args.lr_step_size or 0) * world or None)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train; returns ``{"global_step", "last" (the last logged statistics), "seconds", "validation"}``."""
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from hdvila.validation import validation_metrics

    # cpu=True without CUDA: under a torchrun-style launch accelerate then sets up MULTI_CPU (gloo)
    # data parallelism instead of running unsynchronised copies.
    accelerator = build_accelerator(args, logger, cpu=args.cpu or not torch.cuda.is_available(),
                                    gradient_accumulation_steps=args.gradient_accumulation_steps)
    set_seed(args.seed)
    output_dir, world, rank = Path(args.output_dir), accelerator.num_processes, accelerator.process_index
    model, objective, processor = build_model(args)
    data, val_data, image_bs = build_data(args, processor, rank, world)
    params = [p for p in objective.parameters() if p.requires_grad]  # the model's and the objective's heads
    optimizer, scheduler = build_optimizer(args, params, world)
    objective, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)

    global_step = 0
    resume = resolve_resume(output_dir, args.resume_from_checkpoint)
    if resume is not None:
        global_step = load_checkpoint(accelerator, resume)["step"]
    init_trackers(accelerator, "hdvila", args)

    def validate(step: int) -> dict[str, float]:
        if val_data is None:
            return {}
        t0 = time.time()
        res = validation_metrics(accelerator.unwrap_model(objective).model, processor, val_data,
                                 device=accelerator.device, videos_dir=args.val_videos_dir or args.videos)
        accelerator.log({f"val/{k}": v for k, v in res.items()}, step=step)
        logger.info("step %d validation (%.1fs): %s", step, time.time() - t0,
                    ", ".join(f"{k} {v:.1f}" for k, v in res.items()))
        return res

    def checkpoint(step: int) -> None:
        save_checkpoint(accelerator, output_dir, step, {"stage": args.stage}, args.checkpoints_total_limit,
                        safe_serialization=False)

    accum = args.gradient_accumulation_steps
    loader = torch.utils.data.DataLoader(data, batch_size=None, sampler=range(global_step * accum,
                                                                              args.max_train_steps * accum),
                                         num_workers=args.dataloader_num_workers, worker_init_fn=_worker_init,
                                         # its own generator: creating the loader must not draw from the
                                         # global RNG, or a resumed run's dropout draws would shift
                                         generator=torch.Generator().manual_seed(args.seed),
                                         prefetch_factor=2 if args.dataloader_num_workers else None)
    bar = tqdm(total=args.max_train_steps, initial=global_step, desc=f"stage {args.stage}",
               disable=args.no_progress or not accelerator.is_local_main_process, dynamic_ncols=True)
    logger.info("training %s parameters, steps %d -> %d, %d process(es) x %d videos + %d images x %d accumulation",
                f"{sum(p.numel() for p in params):,}", global_step, args.max_train_steps, world,
                args.train_batch_size, image_bs, accum)
    stats, budget, history, last = StepStats(), TimeBudget(args.max_train_minutes), [], {}
    t_start, micro, start_step, logits_shape = time.time(), global_step * accum, global_step, None
    for batch in loader:
        inputs = {k: v.to(accelerator.device) for k, v in batch.items() if k not in ("needs_motion", "needs_pattern")}
        if args.stage == "2":
            gen = torch.Generator().manual_seed(step_seed(args.seed, micro, rank))
            inputs["input_ids"], inputs["labels"] = mask_inputs(inputs, gen)
            inputs.pop("images", None)
        with accelerator.accumulate(objective):
            out = objective(**inputs)
            accelerator.backward(out["loss"])
            if accelerator.sync_gradients and args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(params, args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        micro += 1
        logits_shape = out.pop("logits_shape", logits_shape)
        for k, v in out.items():
            stats.report(k, v)
        if not accelerator.sync_gradients:
            continue
        global_step += 1
        bar.update(1)
        stop = global_step >= args.max_train_steps or budget.expired(accelerator)
        if global_step % args.logging_steps == 0 or stop:
            last = {**stats.collect(accelerator), "lr": scheduler.get_last_lr()[0],
                    "s_per_step": (time.time() - t_start) / (global_step - start_step)}
            accelerator.log(last, step=global_step)
            history.append({"step": global_step, **last})
            bar.set_postfix({k: f"{last[k]:.3g}" for k in ("loss", "lr", "s_per_step")})
            if args.no_progress:
                logger.info("step %d: %s", global_step, ", ".join(f"{k} {v:.4g}" for k, v in last.items()))
        if args.checkpointing_steps and (global_step % args.checkpointing_steps == 0 or stop):
            checkpoint(global_step)
        if args.validation_steps and global_step % args.validation_steps == 0 and not stop:
            if accelerator.is_main_process:
                validate(global_step)
            accelerator.wait_for_everyone()
        if stop:
            break
    bar.close()

    if logits_shape is not None:  # every process: the gathered similarity matrix it trained on
        print(f"process {rank}/{world}: video logits {int(logits_shape[0])}x{int(logits_shape[1])} "
              f"(local batch {args.train_batch_size})", flush=True)
    accelerator.wait_for_everyone()
    summary: dict[str, Any] = {"global_step": global_step, "last": last, "seconds": time.time() - t_start}
    if accelerator.is_main_process:
        accelerator.unwrap_model(objective).model.save_pretrained(output_dir / "model")
        summary["validation"] = {} if args.no_final_validation else validate(global_step)
        from hdvila.atomic import atomic_write_text

        atomic_write_text(output_dir / "train_summary.json",
                          json.dumps({**summary, "args": {k: str(v) for k, v in vars(args).items()},
                                      "history_tail": history[-20:]}, indent=1) + "\n")
        logger.info("saved the model to %s after %d steps", output_dir / "model", global_step)
    accelerator.end_training()
    return summary


def mask_inputs(inputs: dict[str, torch.Tensor], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2: (masked input_ids, MLM labels) on the inputs' device, drawn from ``generator``."""
    from hdvila.losses import mask_tokens

    ids, labels = mask_tokens(inputs["input_ids"].cpu(), inputs["attention_mask"].cpu(), generator=generator)
    return ids.to(inputs["input_ids"].device), labels.to(inputs["input_ids"].device)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


if __name__ == "__main__":
    sys.exit(run_cli(main))
