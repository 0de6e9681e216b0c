"""The value-following edit objective: the guide must read the *asked* value, and every other
attribute as it read it on the source.

For a vocabulary of attributes (:class:`generation.editing.attributes.AttributeVocabulary`: attribute
-> values -> wordings), the guide's zero-shot reading of an image embedding is, per attribute, the
logits ``logit_scale * cos(image, value prompt)`` over that attribute's value prompts ("a red one",
"a striped one", ...): :class:`ValueReader`. An edit that asks attribute ``a`` = ``v`` is scored by

- **value**: the cross-entropy of the edit's reading of ``a`` against ``v``, a softmax over the
  attribute's values: the asked value must win against the attribute's *other* values. (The cosine
  to a full target caption, the first mapper's objective, rewards repairing what the inversion lost
  identically for every prompt, and a mapper trained on it learned a prompt-blind offset.)
- **keep**: for every other attribute, the KL divergence from the source's reading (a distribution
  over values) to the edit's, so that an edit changes what was asked and nothing the guide can see
  besides;
- **l2**: the squared W+ offset summed over vectors and dimensions, per image, in units of the
  generator's per-dimension w spread (``w_scale``), averaged over the batch: StyleCLIP's latent L2
  (Patashnik et al., ICCV 2021, weight 0.008 on ``sum(o**2)``), not a per-dimension mean, which
  is ``num_ws * w_dim`` times weaker.

:func:`value_metrics` is the selection signal of the training script (no judge): per attribute, the
share of edits the guide reads as the asked value (``read``), and the share whose other attributes it
reads as on the source (``kept``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


class ValueReader:
    """The guide's zero-shot reading of every attribute of ``vocabulary``.

    ``guide``: an :class:`~generation.editing.guide.HDVILAGuide`. Value prompts are embedded once
    (``vocabulary.value_prompts(attribute, wording)``); the logit scale is the guide's own.
    ``unread``: attributes the guide does not read reliably (``hdvila eval-guide`` measures it; the
    bundled guide reads shape from a still 18.5% of the time with short prompts): they are read but
    not scored, neither as the asked value nor as a kept one (:attr:`scored`)."""

    def __init__(self, guide, vocabulary, wording: str = "train", unread: Sequence[str] = ()):
        unknown = sorted(set(unread) - set(vocabulary.names))
        if unknown:
            raise ValueError(f"unread attributes {unknown} are not in the vocabulary {tuple(vocabulary.names)}")
        self.names = tuple(vocabulary.names)
        self.scored = tuple(a for a in self.names if a not in set(unread))
        self.values = {a: tuple(vocabulary.values(a)) for a in self.names}
        self.prompts = {a: vocabulary.value_prompts(a, wording) for a in self.names}
        self.embeds = {a: guide.text_features(p).float() for a, p in self.prompts.items()}  # a -> [V_a, D]
        self.scale = float(guide.hdvila.logit_scale)

    def logits(self, image_embeds: torch.Tensor) -> dict[str, torch.Tensor]:
        """image_embeds [N, D] (L2-normalised) -> attribute -> [N, V_a] logits (differentiable)."""
        x = image_embeds.float()
        return {a: self.scale * x @ e.to(x.device).t() for a, e in self.embeds.items()}

    def read(self, image_embeds: torch.Tensor) -> dict[str, torch.Tensor]:
        """image_embeds [N, D] -> attribute -> [N] index of the value read (argmax)."""
        return {a: v.argmax(dim=1) for a, v in self.logits(image_embeds).items()}

    def current(self, image_embeds: torch.Tensor) -> list[dict[str, str]]:
        """image_embeds [N, D] -> per image, attribute -> the value name read."""
        read = self.read(image_embeds)
        return [{a: self.values[a][int(read[a][i])] for a in self.names} for i in range(image_embeds.shape[0])]


def value_edit_loss(reader: ValueReader, edit_embeds: torch.Tensor, source_logits: dict[str, torch.Tensor],
                    attributes: Sequence[str], targets: torch.Tensor, offsets: torch.Tensor, w_scale: float,
                    weights: dict[str, float]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective of one batch of N edits.

    edit_embeds [N, D]: the guide's embeddings of the edited images; source_logits: attribute ->
    [N, V_a], the reader's logits of the sources (no gradient needed); attributes: the N edited
    attribute names; targets [N] long: the asked value's index in its attribute; offsets [N, num_ws,
    w_dim]: the mapper's W+ offsets; weights: ``value``, ``keep``, ``l2``.
    Only the reader's :attr:`~ValueReader.scored` attributes count (an edit of an unread attribute is
    trained by its keep and l2 terms alone).
    -> (weighted loss, parts ``value``, ``keep``, ``l2``, unweighted)."""
    n = edit_embeds.shape[0]
    if len(attributes) != n or targets.shape != (n,):
        raise ValueError(f"need one attribute and one target per edit ({n}), got {len(attributes)} and "
                         f"{tuple(targets.shape)}")
    logits = reader.logits(edit_embeds)
    value = edit_embeds.new_zeros(())
    keep, keep_terms = edit_embeds.new_zeros(()), 0
    for a in reader.scored:
        rows = torch.tensor([x == a for x in attributes], device=edit_embeds.device)
        if rows.any():
            value = value + F.cross_entropy(logits[a][rows], targets.to(rows.device)[rows], reduction="sum")
        others = ~rows
        if others.any():
            src = F.softmax(source_logits[a][others].detach().float(), dim=1)
            keep = keep + F.kl_div(F.log_softmax(logits[a][others], dim=1), src, reduction="sum")
            keep_terms += int(others.sum())
    parts = {"value": value / n, "keep": keep / max(keep_terms, 1),
             "l2": (offsets.float() / w_scale).square().sum(dim=(1, 2)).mean()}
    loss = sum(weights.get(k, 0.0) * v for k, v in parts.items())
    return loss, parts


@torch.no_grad()
def value_metrics(reader: ValueReader, edit_embeds: torch.Tensor, source_embeds: torch.Tensor,
                  attributes: Sequence[str], targets: torch.Tensor) -> dict[str, float]:
    """Judge-free edit quality by the guide's own reading: for N edits (as in :func:`value_edit_loss`),
    per edited attribute ``read_<a>`` (the edit reads as the asked value) and ``kept_<a>`` (every other
    attribute reads as on the source), as fractions; ``read``, ``kept``: their means over the
    attributes present; ``select`` = (read + kept) / 2, the selection metric of ``train_mapper.py``."""
    edit, src = reader.read(edit_embeds), reader.read(source_embeds)
    out: dict[str, float] = {}
    present = [a for a in reader.scored if a in set(attributes)]
    for a in present:
        rows = torch.tensor([x == a for x in attributes], device=edit_embeds.device)
        out[f"read_{a}"] = float((edit[a][rows] == targets.to(rows.device)[rows]).float().mean())
        same = torch.stack([edit[b][rows] == src[b][rows] for b in reader.scored if b != a]).all(dim=0)
        out[f"kept_{a}"] = float(same.float().mean())
    out["read"] = sum(out[f"read_{a}"] for a in present) / len(present)
    out["kept"] = sum(out[f"kept_{a}"] for a in present) / len(present)
    out["select"] = (out["read"] + out["kept"]) / 2
    return out
