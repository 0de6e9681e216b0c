"""HD-VILA as the differentiable guide of text-driven editing (in the place CLIP takes in StyleCLIP,
Patashnik et al., ICCV 2021).

:class:`HDVILAGuide` wraps a frozen :class:`~hdvila.modeling_hdvila.HDVILAModel` and its processor:

- :meth:`HDVILAGuide.image_features`: images [N, 3, H, W] in [-1, 1], any size -> L2-normalised
  embeddings [N, D]. A frame goes through ``get_image_features`` (a static clip: the frame is the HR
  input and, downsampled, every LR neighbour); resizing and normalisation happen inside;
- :meth:`HDVILAGuide.clip_features`: a clip [T, 3, H, W] -> [1, D] through the full hybrid encoder: the
  model's ``num_frames`` frames spread evenly over the clip, the middle one at high resolution;
- :meth:`HDVILAGuide.text_features`: prompts -> [N, D], with :func:`check_prompt`'s rules
  (:func:`unknown_words_note` says, as a returned note, when no word of a prompt is one the editor
  was trained on);
- :meth:`HDVILAGuide.augmented_image_features`: the mean embedding of ``views`` randomly shifted and
  rescaled copies of each image, the guide for *gradients*. A small encoder's embedding can be moved
  by pixel changes no viewer sees (an adversarial direction); the image must look like the text from
  every view to move the average, as CLIPDraw (Frans et al., 2021) and StyleGAN-NADA augment CLIP.

All of it is differentiable with respect to the pixels. The losses beside it are
:func:`cosine_loss` (1 - cos between an image and a text embedding) and :func:`directional_loss`
(StyleGAN-NADA, Gal et al. 2022: the change of the image embedding should point where the change of
the text embedding points).
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hdvila.errors import TextInputError


def prompt_words(prompt: str) -> list[str]:
    """Lower-case words of a prompt (letters, digits, inner hyphens)."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", prompt.lower())


def check_prompt(prompt: object, processor, label: str = "the prompt") -> str:
    """The stripped prompt, or a :class:`~hdvila.errors.TextInputError` when it is not a string, empty,
    or longer than the text encoder reads (``processor.max_length`` tokens: an edit prompt is a short
    instruction, and a cut one would edit by half a sentence). Whether its words are known is
    :func:`unknown_words_note`'s question."""
    if not isinstance(prompt, str):
        raise TextInputError(f"{label} must be text, got {type(prompt).__name__}.")
    text = prompt.strip()
    if not text:
        raise TextInputError(f"{label} is empty: say what to change, e.g. \"make it striped\" or \"a blue one\".")
    n = processor.token_counts([text])[0]
    if n > processor.max_length:
        raise TextInputError(f"{label} has {n} tokens; the text encoder reads at most {processor.max_length} "
                             f"([CLS] and [SEP] included). Shorten it to the change you want.")
    return text


def prompt_label(i: int, n: int) -> str:
    """How messages name prompt ``i`` of ``n``: "the prompt", or "prompt 2" among several."""
    return f"prompt {i + 1}" if n > 1 else "the prompt"


def unknown_words_note(prompt: str, vocabulary: Iterable[str] | None, label: str = "the prompt") -> str:
    """A note (a string; empty when there is nothing to say) for a prompt none of whose words are in
    ``vocabulary``, the words the editor was trained on: the edit may then do nothing. It is returned,
    not warned, so that each caller (one of several concurrent requests, say) gets its own."""
    vocab = set(vocabulary or ())
    text = prompt.strip()
    if not vocab or any(w in vocab for w in prompt_words(text)):
        return ""
    return (f"none of the words of {label} ({text[:60]!r}) were seen when this editor was trained; "
            f"the edit may do nothing. Words it knows include: {', '.join(sorted(vocab)[:12])}, ...")


class HDVILAGuide(nn.Module):
    """A frozen HD-VILA model and processor as an embedding function for images, clips and text."""

    def __init__(self, hdvila: nn.Module, processor):
        super().__init__()
        self.hdvila = hdvila.eval().requires_grad_(False)
        self.processor = processor

    @property
    def embed_dim(self) -> int:
        return int(self.hdvila.config.projection_dim)

    @property
    def device(self) -> torch.device:
        return next(self.hdvila.parameters()).device

    def train(self, mode: bool = True) -> "HDVILAGuide":  # the guide never trains (dropout stays off)
        return super().train(False)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, H, W] in [-1, 1] (any H, W) -> [N, D] L2-normalised, differentiable."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
        return self.hdvila.get_image_features(images.to(self.device), unit_range=True).float()

    def augmented_image_features(self, images: torch.Tensor, views: int, *, shift: float = 0.125,
                                 scale: tuple[float, float] = (0.85, 1.15), noise: float = 0.02,
                                 generator: torch.Generator | None = None) -> torch.Tensor:
        """images [N, 3, H, W] in [-1, 1] -> [N, D]: the L2-normalised mean embedding of ``views``
        random views of each image (``views`` 0: :meth:`image_features`). A view is the image shifted
        by up to ``shift`` of its size, zoomed by a factor in ``scale`` (borders padded by reflection)
        and given Gaussian pixel noise of std ``noise``; all of it is differentiable in the pixels."""
        if views <= 0:
            return self.image_features(images)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
        n = images.shape[0]
        x = images.to(self.device).float().repeat_interleave(views, dim=0)           # [N*V, 3, H, W]
        m = x.shape[0]
        rand = lambda *shape: torch.rand(*shape, generator=generator).to(x.device)  # noqa: E731
        zoom = scale[0] + (scale[1] - scale[0]) * rand(m)
        theta = torch.zeros(m, 2, 3, device=x.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / zoom
        theta[:, :, 2] = (rand(m, 2) * 2 - 1) * 2 * shift               # grid units: [-1, 1] spans the image
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if noise > 0:
            x = x + noise * torch.randn(x.shape, generator=generator).to(x.device)
        emb = self.image_features(x.clamp(-1, 1)).view(n, views, -1).mean(dim=1)
        return F.normalize(emb, dim=-1)

    def clip_frames(self, num_frames: int) -> tuple[int, list[int]]:
        """For a clip of ``num_frames`` frames: (index of the HR frame, indices of the LR frames), spread
        evenly over the clip, as many as the model reads (``config.num_frames``)."""
        f = int(self.hdvila.config.num_frames)
        idx = torch.linspace(0, num_frames - 1, f).round().long().tolist()
        mid = f // 2
        return idx[mid], idx[:mid] + idx[mid + 1:]

    def clip_features(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [T, 3, H, W] in [-1, 1] (T >= 1) -> [1, D]: one clip through the hybrid encoder."""
        from hdvila.models.pixels import unit_to_pixel_values

        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] < 1:
            raise ValueError(f"a clip must be [T, 3, H, W] with T >= 1, got {tuple(frames.shape)}")
        hr_i, lr_i = self.clip_frames(frames.shape[0])
        px = unit_to_pixel_values(frames.to(self.device))
        hr_all, lr_all = self.hdvila.image_to_clip(px)  # [T, 1, 3, Hh, Wh], [T, 1, F-1, 3, Hl, Wl]
        hr = hr_all[hr_i][None]                          # [1, 1, 3, Hh, Wh]
        lr = lr_all[lr_i, 0, 0][None, None]              # [1, 1, F-1, 3, Hl, Wl]
        return self.hdvila.get_video_features(hr, lr).float()

    def text_features(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """One prompt or a list -> [N, D] L2-normalised (each prompt checked by :func:`check_prompt`)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise TextInputError("no prompt given.")
        texts = [check_prompt(p, self.processor, label=prompt_label(i, len(prompts))) for i, p in enumerate(prompts)]
        tok = self.processor.tokenize(texts)
        with torch.no_grad():
            return self.hdvila.get_text_features(tok["input_ids"].to(self.device),
                                                 tok["attention_mask"].to(self.device)).float()


def cosine_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """1 - cos(image, text) per row: [N, D], [N, D] (or [1, D]) -> [N], in [0, 2]."""
    return 1.0 - F.cosine_similarity(image_embeds, text_embeds.expand_as(image_embeds), dim=-1)


def directional_loss(edit_embeds: torch.Tensor, source_embeds: torch.Tensor, target_text: torch.Tensor,
                     source_text: torch.Tensor) -> torch.Tensor:
    """1 - cos(edit - source image embedding, target - source text embedding) per row -> [N]."""
    d_img = edit_embeds - source_embeds
    d_txt = (target_text - source_text).expand_as(d_img)
    return 1.0 - F.cosine_similarity(d_img, d_txt, dim=-1, eps=1e-6)


def guide_fingerprint(hdvila: nn.Module) -> str:
    """A short digest of an HD-VILA model's two projection heads (text and video), in fp16 so that
    an fp32 model and its fp16 export agree: what an edit mapper records about its guide."""
    from hdvila.modeling_utils import tensors_digest

    heads = (hdvila.transformer.t_proj, hdvila.transformer.v_proj)
    return tensors_digest(t for module in heads for t in module.state_dict().values())
