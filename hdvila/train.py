"""Train HD-VILA with Accelerate: stage 1 (contrastive), stage 2 (MLM) or retrieval fine-tuning.

    accelerate launch hdvila/train.py --stage 1 --data demo --output_dir runs/hdvila-mini \\
        --max_train_steps 3000 --checkpointing_steps 250 --resume_from_checkpoint latest
    python hdvila/train.py ...                      # the same, one process
    accelerate launch --num_processes 2 --cpu hdvila/train.py ...   # 2 CPU processes (gloo)

Stages (hdvila-facts.md section 5):

``1``         contrastive InfoNCE between text and video embeddings (temperature 0.05, mean of the
              two directions, features gathered across processes), plus the same loss on image-caption
              pairs embedded as static clips (``--image_ratio``), so image-text similarity is trained.
``2``         masked language modelling (15%, 80/10/10) on the multimodal layers, visual embeddings and
              MLM head; everything trained in stage 1 is frozen (``set_training_stage(2)``). Initialise
              from a stage-1 model folder with ``--init_from`` (loaded non-strictly: the multimodal parts
              are new). Videos only.
``finetune``  retrieval fine-tuning: a stage-1 model initialised non-strictly from a stage-2 folder
              (``--init_from``; extra keys are ignored), contrastive at temperature 0.08, summed over the
              two directions (the fine-tuning recipe), lr 1e-5 by default.

Data: ``--data demo`` renders the demo domain on the fly (:class:`hdvila.data.DemoStepBatches`);
``--annotations FILE --videos DIR --format msrvtt|didemo|lsmdc|activitynet|jsonl`` reads video files
through the processor with decord (:class:`hdvila.data.AnnotationStepBatches`), optionally with
``--image_annotations`` (jsonl of image/caption rows). Batches are a pure function of the step, so a
resumed run sees the data a straight run would.

Conventions follow diffusers' ``train_text_to_image.py``: ``--gradient_accumulation_steps``,
``--mixed_precision`` (no | bf16 | fp16; bf16 autocast works on CPU), AdamW (betas 0.9/0.98), warmup
then linear decay, gradient-norm clip 5, ``--checkpointing_steps`` -> ``save_state(output_dir/
checkpoint-{step})`` with ``--checkpoints_total_limit``, ``--resume_from_checkpoint latest|PATH``,
tensorboard logs in ``output_dir/logs``, ``--validation_steps`` retrieval R@1/5/10 on held-out data
from in-memory features. At the end the model is written with ``save_pretrained`` to
``output_dir/model`` (the frozen MiniLM text tower is not stored; the model class reloads it).

The default model (``--preset demo``) is the ``mini`` architecture shrunk for two CPU cores
(:data:`DEMO_OVERRIDES`). ``--video_input lr_only|hr_only`` trains the ablation variants.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a script: import the package, not sibling files
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import time
from typing import Any, Sequence

import torch
from torch import nn

from hdvila.configuration_hdvila import VIDEO_INPUTS, HDVILAConfig
from hdvila.losses import contrastive_loss, gather_features, mask_tokens

logger = logging.getLogger("hdvila.train")

# The default model: ``mini`` with one block per ResNet stage, a stem max-pool (HR 128 -> 2x2 grid,
# LR 32 -> 2x2 grid), a 2-block 128-wide TimeSformer. About 1.5M trainable parameters; sized so that
# stage-1 training on the demo domain takes about an hour on two CPU cores.
DEMO_OVERRIDES: dict[str, Any] = dict(resnet_layers=(1, 1, 1, 1), resnet_stem_pool=True, timesformer_depth=2,
                                      vision_width=128, timesformer_heads=4)
STAGE_TEMPERATURE = {"1": 0.05, "2": 0.05, "finetune": 0.08}
STAGE_LR = {"1": 5e-4, "2": 5e-4, "finetune": 1e-5}
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


# ---- arguments ---------------------------------------------------------------------------------------
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
                   help="model folder to start from, loaded non-strictly (stage 2: a stage-1 model; "
                        "finetune: a stage-2 model)")
    g.add_argument("--temperature", type=float, default=None,
                   help="contrastive temperature (default: 0.05 for stage 1, 0.08 for finetune)")
    g = p.add_argument_group("data")
    g.add_argument("--data", choices=["demo", "annotations"], default=None,
                   help="demo: render the demo domain; annotations: --annotations/--videos files "
                        "(default: annotations when --annotations is given, else demo)")
    g.add_argument("--annotations", default=None, help="training annotation file")
    g.add_argument("--videos", default=None, help="folder with the training videos")
    g.add_argument("--format", default="jsonl", help="annotation format (msrvtt, didemo, lsmdc, activitynet, jsonl)")
    g.add_argument("--image_annotations", default=None,
                   help="jsonl of {image, caption} rows (paths relative to the file) to mix in (annotation data)")
    g.add_argument("--train_batch_size", type=int, default=32, help="videos per process per micro-batch")
    g.add_argument("--image_ratio", type=float, default=0.5,
                   help="image-caption pairs per video in a batch (stage 1 / finetune; 0 disables images)")
    g.add_argument("--group_size", type=int, default=4,
                   help="demo: hard-negative groups of this many items sharing attributes (1: random batches)")
    g.add_argument("--num_frm", type=int, default=None, help="frames per clip (default: the model's num_frames)")
    g.add_argument("--sample_rate", type=int, default=4, help="frame step inside a clip")
    g.add_argument("--train_n_clips", type=int, default=1, help="clips per video in training (paper: 2)")
    g.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("optimisation")
    g.add_argument("--max_train_steps", type=int, default=None, help="optimizer steps (default: from epochs)")
    g.add_argument("--num_train_epochs", type=int, default=1, help="annotation data: epochs if no --max_train_steps")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--learning_rate", type=float, default=None, help="default: 5e-4 (stages 1, 2), 1e-5 (finetune)")
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.98)
    g.add_argument("--adam_epsilon", type=float, default=1e-8)
    g.add_argument("--weight_decay", type=float, default=1e-3)
    g.add_argument("--lr_scheduler", choices=["linear", "constant", "step"], default="linear",
                   help="after warmup: linear decay to 0, constant, or halve every --lr_step_size steps")
    g.add_argument("--lr_warmup_steps", type=int, default=100)
    g.add_argument("--lr_step_size", type=int, default=None, help="step scheduler period (default: steps / 4)")
    g.add_argument("--max_grad_norm", type=float, default=5.0)
    g.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None,
                   help="default: accelerate's configuration (no)")
    g.add_argument("--cpu", action="store_true", help="train on the CPU even if CUDA is available")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    g = p.add_argument_group("checkpoints, logs, validation")
    g.add_argument("--output_dir", default="runs/hdvila-mini")
    g.add_argument("--checkpointing_steps", type=int, default=500)
    g.add_argument("--checkpoints_total_limit", type=int, default=None)
    g.add_argument("--resume_from_checkpoint", default=None, help='"latest" or a checkpoint folder')
    g.add_argument("--report_to", default="tensorboard", help='tracker ("tensorboard", "none", ...)')
    g.add_argument("--logging_steps", type=int, default=10)
    g.add_argument("--validation_steps", type=int, default=0, help="validate every N steps (0: only at the end)")
    g.add_argument("--no_final_validation", action="store_true")
    g.add_argument("--val_videos", type=int, default=256, help="demo: held-out val videos")
    g.add_argument("--val_images", type=int, default=256, help="demo: held-out val images")
    g.add_argument("--val_n_clips", type=int, default=4, help="clips per validation video")
    g.add_argument("--val_annotations", default=None, help="annotation data: validation annotation file")
    g.add_argument("--val_videos_dir", default=None, help="annotation data: validation videos folder")
    g.add_argument("--val_format", default=None, help="annotation data: validation format (default --format)")
    g.add_argument("--no_progress", action="store_true", help="no tqdm bar")
    args = p.parse_args(argv)
    if args.data is None:
        args.data = "annotations" if args.annotations else "demo"
    if args.data == "annotations" and not (args.annotations and args.videos):
        p.error("annotation data needs --annotations and --videos")
    if args.stage == "finetune" and not args.init_from:
        p.error("--stage finetune needs --init_from (a stage-2 model folder)")
    if args.learning_rate is None:
        args.learning_rate = STAGE_LR[args.stage]
    if args.temperature is None:
        args.temperature = STAGE_TEMPERATURE[args.stage]
    for name in ("train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "train_n_clips"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.image_ratio < 0:
        p.error("--image_ratio must be >= 0")
    return args


# ---- model construction --------------------------------------------------------------------------------
def build_config(args: argparse.Namespace) -> HDVILAConfig:
    """The config of the model to train (from ``--init_from``'s config or the preset), with overrides."""
    from hdvila.modeling_hdvila import HDVILAModel

    overrides = json.loads(args.config_overrides) if args.config_overrides else {}
    if not isinstance(overrides, dict):
        raise SystemExit("--config_overrides must be a JSON object")
    overrides["stage"] = 2 if args.stage == "2" else 1
    if args.video_input:
        overrides["video_input"] = args.video_input
    if args.init_from:
        base = HDVILAModel.read_config(args.init_from)
    elif args.preset == "demo":
        base = HDVILAConfig.preset("mini", **DEMO_OVERRIDES)
    else:
        base = HDVILAConfig.preset(args.preset)
    try:
        return dataclasses.replace(base, **overrides)
    except TypeError as e:
        raise SystemExit(f"--config_overrides: {e}") from None


def load_non_strict(model: nn.Module, folder: str | Path) -> dict[str, list[str]]:
    """Load the weights of model folder ``folder`` into ``model`` where names and shapes match (the
    official recipe between stages). Returns {"loaded", "missing", "unexpected", "mismatched"} names;
    missing names exclude the model's external (package-provided) weights."""
    from safetensors.torch import load_file

    from hdvila.modeling_utils import WEIGHTS_NAME

    state = load_file(str(Path(folder) / WEIGHTS_NAME))
    own = model.state_dict()
    ok = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(ok, strict=False)
    external = tuple(getattr(model, "external_weight_prefixes", ()))
    return {"loaded": sorted(ok), "unexpected": sorted(k for k in state if k not in own),
            "mismatched": sorted(k for k in state if k in own and own[k].shape != state[k].shape),
            "missing": sorted(k for k in own if k not in state and not (external and k.startswith(external)))}


class ContrastiveObjective(nn.Module):
    """One forward for stage 1 / fine-tuning: text, video and (optionally) image embeddings and the
    InfoNCE losses, with features gathered across processes (so DDP sees a single forward).

    Returns a dict: ``loss`` (video loss + image loss), ``video_loss``, ``image_loss`` (if images),
    ``logits_shape`` (the gathered video logits matrix [global B, global B])."""

    def __init__(self, model: nn.Module, temperature: float, direction_sum: bool = False) -> None:
        super().__init__()
        self.model, self.temperature, self.scale = model, temperature, 2.0 if direction_sum else 1.0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hr_frames: torch.Tensor,
                lr_frames: torch.Tensor, images: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        m = self.model
        b = hr_frames.shape[0]
        text = m.get_text_features(input_ids, attention_mask)
        if images is None:
            visual = m.get_video_features(hr_frames, lr_frames)
        else:
            hr_i, lr_i = m.image_to_clip(images)
            if hr_i.shape[1:] == hr_frames.shape[1:] and lr_i.shape[1:] == lr_frames.shape[1:]:
                visual = m.get_video_features(torch.cat([hr_frames, hr_i.to(hr_frames.dtype)]),
                                              torch.cat([lr_frames, lr_i.to(lr_frames.dtype)]))
            else:  # several training clips per video: images (one clip) go separately
                visual = torch.cat([m.get_video_features(hr_frames, lr_frames), m.get_video_features(hr_i, lr_i)])
        out: dict[str, torch.Tensor] = {}
        parts = [("video", slice(0, b))] + ([("image", slice(b, None))] if images is not None else [])
        total = 0.0
        for name, rows in parts:
            # The loss in fp32 even under autocast: logits are cosines / temperature.
            t, v = gather_features(text[rows].float()), gather_features(visual[rows].float())
            if name == "video":
                out["logits_shape"] = torch.tensor([t.shape[0], v.shape[0]])
            loss = self.scale * contrastive_loss(t, v, self.temperature, gather=False)
            out[f"{name}_loss"] = loss
            total = total + loss
        out["loss"] = total
        return out


class MLMObjective(nn.Module):
    """Stage-2 forward: masked tokens through the multimodal layers (videos only)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, hr_frames, lr_frames, labels) -> dict[str, torch.Tensor]:
        out = self.model.forward_mlm(input_ids, attention_mask, hr_frames, lr_frames, labels=labels)
        res = {"loss": out.loss}
        if out.accuracy is not None:
            res["mlm_accuracy"] = out.accuracy
        return res


def lr_lambda(args: argparse.Namespace, total_steps: int):
    warmup = max(0, args.lr_warmup_steps)
    step_size = args.lr_step_size or max(1, total_steps // 4)

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if args.lr_scheduler == "constant":
            return 1.0
        if args.lr_scheduler == "step":
            return 0.5 ** ((step - warmup) // step_size)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return f


# ---- checkpoints -------------------------------------------------------------------------------------
def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of the ``checkpoint-{step}`` folders, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return sorted(found)


def prune_checkpoints(output_dir: str | Path, limit: int | None, keep_room_for: int = 1) -> list[Path]:
    """Delete the oldest checkpoints so that ``keep_room_for`` new ones fit under ``limit``."""
    if limit is None:
        return []
    ckpts = list_checkpoints(output_dir)
    excess = len(ckpts) - max(0, limit - keep_room_for)
    removed = []
    for _, path in ckpts[:max(0, excess)]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


# ---- validation --------------------------------------------------------------------------------------
@torch.no_grad()
def embed_eval_set(model: nn.Module, processor: Any, data: dict[str, Any], batch_size: int = 32,
                   device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """fp32 features of an in-memory eval set (:func:`hdvila.data.demo_eval_set`)."""
    from hdvila.retrieval.index import encode_texts

    was = model.training
    model.eval()
    try:
        out: dict[str, torch.Tensor] = {}
        if data["hr"] is not None:
            feats = [model.get_video_features(data["hr"][i:i + batch_size].to(device).float(),
                                              data["lr"][i:i + batch_size].to(device).float()).cpu()
                     for i in range(0, len(data["hr"]), batch_size)]
            out["video"] = torch.cat(feats)
            out["text"] = encode_texts(model, processor, data["captions"], device=device, progress=False)[0]
        if data.get("images") is not None:
            feats = [model.get_image_features(data["images"][i:i + batch_size].to(device).float()).cpu()
                     for i in range(0, len(data["images"]), batch_size)]
            out["image"] = torch.cat(feats)
            out["image_text"] = encode_texts(model, processor, data["image_captions"], device=device,
                                             progress=False)[0]
        return out
    finally:
        model.train(was)


def retrieval_summary(feats: dict[str, torch.Tensor], data: dict[str, Any] | None = None) -> dict[str, float]:
    """Flat R@1/5/10 numbers (percent) of in-memory features: video t2v/v2t, image t2i/i2t, and t2v R@1
    on the captions that need motion / a pattern (ranked against all videos)."""
    from hdvila.retrieval.metrics import retrieval_metrics, retrieval_ranks

    out: dict[str, float] = {}
    if "video" in feats:
        sim = feats["text"] @ feats["video"].T
        m = retrieval_metrics(sim)
        for k in (1, 5, 10):
            out[f"t2v_R@{k}"] = m["t2v"][f"R@{k}"]
        out["v2t_R@1"] = m["v2t"]["R@1"]
        out["t2v_MedR"] = m["t2v"]["MedR"]
        if data is not None and len(data.get("needs_motion", [])):
            ranks = torch.as_tensor(retrieval_ranks(sim)["t2v"])
            for key in ("needs_motion", "needs_pattern"):
                sel = data[key]
                if sel.any():
                    out[f"t2v_R@1_{key}"] = 100.0 * float((ranks[sel] < 1).float().mean())
    if "image" in feats:
        m = retrieval_metrics(feats["image_text"] @ feats["image"].T)
        for k in (1, 5, 10):
            out[f"t2i_R@{k}"] = m["t2v"][f"R@{k}"]
        out["i2t_R@1"] = m["v2t"]["R@1"]
    return out


# ---- main --------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from tqdm.auto import tqdm

    from hdvila.data import AnnotationStepBatches, DemoStepBatches, demo_eval_set, read_image_rows
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.processing_hdvila import HDVILAProcessor

    output_dir = Path(args.output_dir)
    report_to = None if args.report_to in ("none", "") else args.report_to
    # cpu=True on machines without CUDA: with a torchrun-style launch (WORLD_SIZE > 1) accelerate then
    # sets up MULTI_CPU data parallelism over gloo instead of silently running unsynchronised copies.
    accelerator = Accelerator(cpu=args.cpu or not torch.cuda.is_available(),
                              gradient_accumulation_steps=args.gradient_accumulation_steps,
                              mixed_precision=args.mixed_precision, log_with=report_to,
                              project_config=ProjectConfiguration(project_dir=str(output_dir),
                                                                  logging_dir=str(output_dir / "logs")))
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(args.seed)

    # Model.
    config = build_config(args)
    model = HDVILAModel(config)
    if args.init_from:
        report = load_non_strict(model, args.init_from)
        logger.info("initialised from %s: %d tensors loaded, %d new, %d ignored, %d with other shapes",
                    args.init_from, len(report["loaded"]), len(report["missing"]), len(report["unexpected"]),
                    len(report["mismatched"]))
    model.set_training_stage(2 if args.stage == "2" else 1)
    model.train()
    processor = HDVILAProcessor.from_config(config, num_frm=args.num_frm or config.num_frames,
                                            sample_rate=args.sample_rate, n_clips=args.val_n_clips,
                                            train_n_clips=args.train_n_clips)
    objective: nn.Module = (MLMObjective(model) if args.stage == "2" else
                            ContrastiveObjective(model, args.temperature, direction_sum=args.stage == "finetune"))

    # Data.
    world, rank = accelerator.num_processes, accelerator.process_index
    image_bs = 0 if args.stage == "2" else int(round(args.train_batch_size * args.image_ratio))
    if args.data == "demo":
        data = DemoStepBatches(processor, args.train_batch_size, image_bs, rank=rank, world_size=world, seed=args.seed,
                               group_size=args.group_size)
        steps_per_epoch = None
    else:
        from hdvila.retrieval.annotations import load_annotations

        ann = load_annotations(args.annotations, args.format)
        rows = read_image_rows(args.image_annotations) if args.image_annotations else []
        data = AnnotationStepBatches(processor, ann, args.videos, args.train_batch_size, rows,
                                     image_bs if rows else 0, rank=rank, world_size=world, seed=args.seed)
        steps_per_epoch = math.ceil(len(ann) / (args.train_batch_size * world * args.gradient_accumulation_steps))
    if args.max_train_steps is None:
        if steps_per_epoch is None:
            raise SystemExit("--data demo needs --max_train_steps")
        args.max_train_steps = steps_per_epoch * args.num_train_epochs

    # Optimiser and schedule (the prepared scheduler steps once per process, as in diffusers).
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.learning_rate,
                                  betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)
    total = args.max_train_steps * world
    sched_args = argparse.Namespace(**{**vars(args), "lr_warmup_steps": args.lr_warmup_steps * world,
                                       "lr_step_size": (args.lr_step_size or 0) * world or None})
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(sched_args, total))
    objective, optimizer, scheduler = accelerator.prepare(objective, optimizer, scheduler)

    # Resume.
    global_step = 0
    if args.resume_from_checkpoint:
        if args.resume_from_checkpoint == "latest":
            ckpts = list_checkpoints(output_dir)
            path = ckpts[-1][1] if ckpts else None
        else:
            path = Path(args.resume_from_checkpoint)
        if path is None or not path.is_dir():
            accelerator.print(f"checkpoint {args.resume_from_checkpoint!r} not found; starting a new run")
        else:
            accelerator.print(f"resuming from {path}")
            accelerator.load_state(str(path))
            global_step = int(CHECKPOINT_RE.match(path.name).group(1)) if CHECKPOINT_RE.match(path.name) else 0

    if report_to:
        accelerator.init_trackers("hdvila", config={k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                                                   for k, v in vars(args).items()})

    # Validation data (main process only; features are computed in memory).
    val_data = None
    if accelerator.is_main_process and args.stage != "2":
        if args.data == "demo" and (args.val_videos or args.val_images):
            val_data = demo_eval_set(processor, "val", args.val_videos, args.val_images, seed=args.seed)
        elif args.val_annotations:
            from hdvila.retrieval.annotations import load_annotations

            val_data = {"annotations": load_annotations(args.val_annotations, args.val_format or args.format)}

    def validate(step: int) -> dict[str, float]:
        if val_data is None:
            return {}
        net = accelerator.unwrap_model(objective).model
        t0 = time.time()
        if "annotations" in val_data:
            from hdvila.retrieval.evaluate import evaluate_retrieval

            r = evaluate_retrieval(net, processor, val_data["annotations"], args.val_videos_dir or args.videos,
                                   device=accelerator.device, dtype="fp32", progress=False)
            res = {f"t2v_R@{k}": r["t2v"][f"R@{k}"] for k in (1, 5, 10)} | {"v2t_R@1": r["v2t"]["R@1"]}
        else:
            res = retrieval_summary(embed_eval_set(net, processor, val_data, device=accelerator.device), val_data)
        accelerator.log({f"val/{k}": v for k, v in res.items()}, step=step)
        accelerator.print(f"step {step} validation ({time.time() - t0:.1f}s): "
                          + ", ".join(f"{k} {v:.1f}" for k, v in res.items()))
        return res

    # Loop.
    accum = args.gradient_accumulation_steps
    loader = torch.utils.data.DataLoader(data, batch_size=None, sampler=range(global_step * accum,
                                                                                args.max_train_steps * accum),
                                         num_workers=args.num_workers, worker_init_fn=_worker_init,
                                         # its own generator: creating the loader must not draw from the
                                         # global RNG, or a resumed run's dropout draws would shift
                                         generator=torch.Generator().manual_seed(args.seed),
                                         persistent_workers=False, prefetch_factor=2 if args.num_workers else None)
    bar = tqdm(total=args.max_train_steps, initial=global_step, desc=f"stage {args.stage}",
               disable=args.no_progress or not accelerator.is_local_main_process, dynamic_ncols=True)
    accelerator.print(f"training {sum(p.numel() for p in params):,} parameters, steps {global_step} -> "
                      f"{args.max_train_steps}, {world} process(es) x {args.train_batch_size} videos "
                      f"+ {image_bs} images x {accum} accumulation")
    last: dict[str, float] = {}
    history: list[dict[str, Any]] = []
    val_result: dict[str, float] = {}
    t_start, micro = time.time(), global_step * accum
    window: list[float] = []
    for batch in loader:
        if global_step >= args.max_train_steps:
            break
        inputs = {k: v.to(accelerator.device) for k, v in batch.items() if k not in ("needs_motion", "needs_pattern")}
        if args.stage == "2":
            gen = torch.Generator().manual_seed(args.seed * 1_000_003 + micro * world + rank)
            inputs["input_ids"], inputs["labels"] = mask_tokens(inputs["input_ids"].cpu(),
                                                                inputs["attention_mask"].cpu(), generator=gen)
            inputs = {k: v.to(accelerator.device) for k, v in inputs.items()}
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
        for k, v in out.items():
            if k != "logits_shape":
                last[k] = float(v.detach().float())
        if "logits_shape" in out:
            last["logits_rows"], last["logits_cols"] = (int(x) for x in out["logits_shape"])
        if not accelerator.sync_gradients:
            continue
        global_step += 1
        bar.update(1)
        window.append(time.time())
        logs = {k: v for k, v in last.items() if not k.startswith("logits")} | {"lr": scheduler.get_last_lr()[0]}
        if len(window) > 1:
            logs["s_per_step"] = (window[-1] - window[0]) / (len(window) - 1)
            window = window[-50:]
        bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in ("loss", "lr", "s_per_step")})
        if global_step % args.logging_steps == 0 or global_step == args.max_train_steps:
            accelerator.log(logs, step=global_step)
            history.append({"step": global_step, **logs})
            if args.no_progress:
                accelerator.print(f"step {global_step}: " + ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
        if global_step % args.checkpointing_steps == 0:
            if accelerator.is_main_process:
                prune_checkpoints(output_dir, args.checkpoints_total_limit)
            accelerator.wait_for_everyone()
            accelerator.save_state(str(output_dir / f"checkpoint-{global_step}"), safe_serialization=False)
            accelerator.print(f"saved checkpoint-{global_step}")
        if args.validation_steps and global_step % args.validation_steps == 0 and global_step < args.max_train_steps:
            if accelerator.is_main_process:
                validate(global_step)
            accelerator.wait_for_everyone()
    bar.close()

    if "logits_rows" in last:  # every process: the gathered similarity matrix it trained on
        print(f"process {rank}/{world}: video logits {last['logits_rows']}x{last['logits_cols']} "
              f"(local batch {args.train_batch_size})", flush=True)
    accelerator.wait_for_everyone()
    elapsed = time.time() - t_start
    summary: dict[str, Any] = {"global_step": global_step, "last": last, "seconds": elapsed}
    if accelerator.is_main_process:
        net = accelerator.unwrap_model(objective).model
        net.save_pretrained(output_dir / "model")
        if not args.no_final_validation:
            val_result = validate(global_step)
        summary["validation"] = val_result
        from hdvila.atomic import atomic_write_text

        atomic_write_text(output_dir / "train_summary.json",
                          json.dumps({**summary, "args": {k: str(v) for k, v in vars(args).items()},
                                      "history_tail": history[-20:]}, indent=1) + "\n")
        accelerator.print(f"saved the model to {output_dir / 'model'} after {global_step} steps")
    accelerator.end_training()
    return summary


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


if __name__ == "__main__":
    main()
