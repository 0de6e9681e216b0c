"""The ``nn.Module`` wrappers that ``hdvila/train.py`` optimises: each runs the model's forward for a
training batch and returns a dict with ``loss`` (and its parts), combining the loss functions of
:mod:`hdvila.losses`.

- :class:`ContrastiveObjective` (stage 1 and retrieval fine-tuning): InfoNCE between text and video
  embeddings (mean of the two directions, or their sum for fine-tuning), with the same loss on
  image-caption pairs embedded as static clips, features gathered across processes; optionally
  counterfactual caption negatives for the images (``negative_input_ids``: captions differing in one
  attribute), extra columns of the image-to-text loss; and optionally a value-prompt loss (each still
  picks the short prompt of each of its attribute values, "a star", among that attribute's others);
  and optionally an attribute loss (a training-only linear classifier per attribute on the still's
  pooled visual features, before ``v_proj``, so that the visual tower keeps what the captions name:
  contrastive batches alone never make a still's embedding carry its shape).
- :class:`MLMObjective` (stage 2): masked language modelling through the multimodal layers.

Each wraps the model, so that Accelerate's DDP wrapper sees a single forward per micro-batch.
"""

from __future__ import annotations

import torch
from torch import nn

from hdvila.losses import contrastive_loss, contrastive_loss_with_negatives, gather_features


class ContrastiveObjective(nn.Module):
    """One forward for stage 1 / fine-tuning: text, video and (optionally) image embeddings and the
    InfoNCE losses, with features gathered across processes (so DDP sees a single forward).

    Returns a dict: ``loss`` (video loss + image loss [+ weighted value and attribute losses]),
    ``video_loss``, ``image_loss`` (if images), ``value_loss``, ``attribute_loss`` (if used),
    ``logits_shape`` (the gathered video logits matrix [global B, global B]).

    ``value_sizes``: how many values each labelled attribute has (the columns of ``image_labels``).
    ``attribute_weight`` > 0 adds ``attribute_head`` (vision_width -> sum(value_sizes)), a part of the
    objective, not of the model: it trains and resumes with it, and is not saved with the model."""

    def __init__(self, model: nn.Module, temperature: float, direction_sum: bool = False,
                 value_weight: float = 1.0, value_sizes: list[int] | None = None,
                 attribute_weight: float = 0.0) -> None:
        super().__init__()
        self.model, self.temperature, self.scale = model, temperature, 2.0 if direction_sum else 1.0
        self.value_weight, self.value_sizes, self.attribute_weight = value_weight, value_sizes, attribute_weight
        self.attribute_head = None
        if attribute_weight > 0:
            if not value_sizes:
                raise ValueError("attribute_weight needs value_sizes (the number of values of each attribute)")
            self.attribute_head = nn.Linear(model.config.vision_width, sum(value_sizes))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hr_frames: torch.Tensor | None = None,
                lr_frames: torch.Tensor | None = None, images: torch.Tensor | None = None,
                negative_input_ids: torch.Tensor | None = None,
                negative_attention_mask: torch.Tensor | None = None, value_input_ids: torch.Tensor | None = None,
                value_attention_mask: torch.Tensor | None = None,
                image_labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        m = self.model
        if hr_frames is None and images is None:
            raise ValueError("the contrastive objective needs videos (hr_frames, lr_frames), images or both")
        b = 0 if hr_frames is None else hr_frames.shape[0]  # no videos: a stills-only phase
        text = m.get_text_features(input_ids, attention_mask)
        negatives = None
        if negative_input_ids is not None and images is not None:
            negatives = gather_features(m.get_text_features(negative_input_ids, negative_attention_mask).float())
        if images is None:
            pooled = m.get_pooled_video_features(hr_frames, lr_frames)
        else:
            hr_i, lr_i = m.image_to_clip(images)
            if hr_frames is None:
                pooled = m.get_pooled_video_features(hr_i, lr_i)
            elif hr_i.shape[1:] == hr_frames.shape[1:] and lr_i.shape[1:] == lr_frames.shape[1:]:
                pooled = m.get_pooled_video_features(torch.cat([hr_frames, hr_i.to(hr_frames.dtype)]),
                                                     torch.cat([lr_frames, lr_i.to(lr_frames.dtype)]))
            else:  # several training clips per video: images (one clip) go separately
                pooled = torch.cat([m.get_pooled_video_features(hr_frames, lr_frames),
                                    m.get_pooled_video_features(hr_i, lr_i)])
        visual = m.project_video(pooled)
        out: dict[str, torch.Tensor] = {}
        parts = ([("video", slice(0, b))] if b else []) + ([("image", slice(b, None))] if images is not None else [])
        total = 0.0
        for name, rows in parts:
            # The loss in fp32 even under autocast: logits are cosines / temperature.
            t, v = gather_features(text[rows].float()), gather_features(visual[rows].float())
            if name == "video":
                out["logits_shape"] = torch.tensor([t.shape[0], v.shape[0]])
            if name == "image" and negatives is not None:
                loss = self.scale * contrastive_loss_with_negatives(t, v, negatives, self.temperature)
            else:
                loss = self.scale * contrastive_loss(t, v, self.temperature, gather=False)
            out[f"{name}_loss"] = loss
            total = total + loss
        if value_input_ids is not None and image_labels is not None and images is not None:
            # per attribute, the still picks its value's short prompt among the attribute's values
            prompts = m.get_text_features(value_input_ids, value_attention_mask).float()
            out["value_loss"] = self._per_attribute_loss(visual[b:].float() @ prompts.t() / self.temperature,
                                                         image_labels)
            total = total + self.value_weight * out["value_loss"]
        if self.attribute_head is not None and image_labels is not None and images is not None:
            # summed over attributes: each attribute's cross-entropy at full weight (a mean would leave
            # shape, the one still to learn, a fifth of the weight while the others are near zero already)
            out["attribute_loss"] = self._per_attribute_loss(self.attribute_head(pooled[b:].float()), image_labels,
                                                             reduce="sum")
            total = total + self.attribute_weight * out["attribute_loss"]
        out["loss"] = total
        return out

    def _per_attribute_loss(self, logits: torch.Tensor, labels: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
        """logits [n, sum(value_sizes)] (each attribute's values side by side), labels [n, attributes]
        -> the mean (or sum) over attributes of the cross-entropy over that attribute's columns."""
        losses, start = [], 0
        for a, size in enumerate(self.value_sizes):
            losses.append(nn.functional.cross_entropy(logits[:, start:start + size], labels[:, a]))
            start += size
        return torch.stack(losses).sum() if reduce == "sum" else torch.stack(losses).mean()


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
