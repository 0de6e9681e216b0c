"""Zero-shot attribute reading of demo stills by an HD-VILA model: what the editing guide "sees".

Text-guided editing (:mod:`generation.editing.guide`) can only move an image towards a text as far as
the guide tells the attribute values apart on *still frames* at the generator's resolution. This
module measures that directly, with no generator involved: for each still and each attribute
(shape, colour, pattern, size, background), candidate texts name every value of the attribute, and
the reading is the candidate whose text embedding has the highest cosine with the still's image
embedding. Two kinds of candidates (``mode``):

- ``"full"``: the still's true caption (demo captioning, :func:`hdvila.demo.captions.caption_image`,
  training or held-out wording) with only that attribute changed to each value. The caption's word
  choices come from one generator state, copied for every candidate, so every other word and the
  sentence template stay as in the true caption; the candidate of the true value *is* the true caption.
- ``"short"``: a short prompt naming the value alone (:data:`SHORT_TEMPLATES`): "a star", "a red one",
  "a striped one", "a large one", "on a black background". The value's word is its first training
  wording (the value's own name) with ``wording="train"``, its held-out synonym with ``"heldout"``
  ("an orb", "a scarlet one", "a pinstriped one", "an enormous one", "on a jet-black background").

Two image paths (``path``), which should agree up to rounding:

- ``"processor"``: the public path, :meth:`HDVILAProcessor.preprocess_images` (resize, centre crop,
  normalise) -> :meth:`HDVILAModel.get_image_features`;
- ``"guide"``: :meth:`HDVILAGuide.image_features` on [-1, 1] tensors (normalisation, then the model's
  own resize and crop inside ``get_image_features(unit_range=True)``), what editing optimises.

Text embeddings are the same function for both paths (``get_text_features`` of the processor's
tokens, which :meth:`HDVILAGuide.text_features` also calls); each distinct text is embedded once
(:class:`TextEmbeddings`).

Reusable pieces: :func:`read_attributes` (per-attribute accuracy, mean probability of the true value
and per-image readings: a selection signal for training scripts) and :func:`guide_value_logits` (the
guide's differentiable zero-shot logits over an attribute's value prompts). :func:`evaluate_guide_reading`
is what ``hdvila eval-guide`` runs.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hdvila.demo.attributes import ATTRIBUTES, ImageSpec
from hdvila.demo.captions import SHORT_TEMPLATES, WORDS, caption_image, value_prompts  # noqa: F401 (re-exported)

#: Attributes read, in table order.
ATTRIBUTE_ORDER = ("shape", "color", "pattern", "size", "background")
MODES = ("full", "short")
PATHS = ("processor", "guide")
WORDINGS = ("train", "heldout")
def _check(attribute: str | None = None, mode: str | None = None, wording: str | None = None,
           path: str | None = None) -> None:
    for value, allowed, name in ((attribute, ATTRIBUTE_ORDER, "attribute"), (mode, MODES, "mode"),
                                 (wording, WORDINGS, "wording"), (path, PATHS, "path")):
        if value is not None and value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


# ---- candidate texts ------------------------------------------------------------------------------
def caption_candidates(spec: ImageSpec, attribute: str, rng: np.random.Generator, wording: str = "train") -> list[str]:
    """The caption of ``spec`` with ``attribute`` set to each of its values (``ATTRIBUTES[attribute]``
    order), every one drawn from a copy of ``rng`` (``rng`` itself is not advanced). Every value has
    as many wordings as the others (demo captions), so the copies make the same draws: the other
    attributes' words, the position and the template stay those of ``caption_image(spec, rng)``, the
    true caption, which is the candidate of the spec's own value."""
    _check(attribute=attribute, wording=wording)
    return [caption_image(dataclasses.replace(spec, **{attribute: v}), copy.deepcopy(rng), wording)
            for v in ATTRIBUTES[attribute]]


def demo_caption_rngs(indices: Sequence[int], *, split: str = "test", seed: int = 0,
                      wording: str = "train") -> list[np.random.Generator]:
    """The caption generators of demo images ``indices`` (those :class:`~hdvila.demo.DemoImageDataset`
    draws its captions from), for :func:`caption_candidates` / :func:`read_attributes`."""
    from hdvila.demo.dataset import caption_rng

    return [caption_rng(split, seed, int(i), False, wording) for i in indices]


def candidate_texts(specs: Sequence[ImageSpec], attribute: str, mode: str = "full", *, wording: str = "train",
                    caption_rngs: Sequence[np.random.Generator] | None = None) -> list[list[str]]:
    """Per spec, the candidate texts of ``attribute`` (one per value, ``ATTRIBUTES[attribute]``
    order): full captions (``mode="full"``, from ``caption_rngs``, one per spec; default
    ``np.random.default_rng([0, i])`` for spec ``i``) or the short prompts (``"short"``, the same for
    every spec)."""
    _check(attribute=attribute, mode=mode, wording=wording)
    if mode == "short":
        prompts = value_prompts(attribute, wording)
        return [list(prompts) for _ in specs]
    if caption_rngs is None:
        caption_rngs = [np.random.default_rng([0, i]) for i in range(len(specs))]
    if len(caption_rngs) != len(specs):
        raise ValueError(f"need one caption generator per spec: {len(caption_rngs)} for {len(specs)} specs")
    return [caption_candidates(s, attribute, r, wording) for s, r in zip(specs, caption_rngs)]


# ---- embeddings -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for the duration; the model's training mode and every parameter's
    ``requires_grad`` restored afterwards (a training script's model comes back as it was, even after
    :class:`HDVILAGuide` froze it)."""
    training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(training)


def _progress(iterable, total: int, desc: str, unit: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit)


class TextEmbeddings:
    """Distinct texts embedded once, in batches: ``bank.add(texts)``, then ``bank(texts)`` -> float32
    [len(texts), D], L2-normalised (``model.get_text_features`` of ``processor.tokenize``).

    Texts are embedded in order of token length, so a batch pads little.
    """

    def __init__(self, model: torch.nn.Module, processor, *, batch_size: int = 128):
        self.model, self.processor, self.batch_size = model, processor, batch_size
        self._row: dict[str, int] = {}
        self._embeds: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, text: str) -> bool:
        return text in self._row

    def add(self, texts: Sequence[str], *, progress: bool = False) -> None:
        """Embed those of ``texts`` not embedded yet."""
        new = list(dict.fromkeys(t for t in texts if t not in self._row))
        if not new:
            return
        token_ids = self.processor.tokenizer(new, add_special_tokens=True, verbose=False)["input_ids"]
        lengths = [len(ids) for ids in token_ids]
        new = [t for _, t in sorted(zip(lengths, new), key=lambda p: p[0])]
        device = next(self.model.parameters()).device
        starts = range(0, len(new), self.batch_size)
        with _evaluating(self.model):
            for b in _progress(starts, len(starts), f"embedding {len(new)} texts", "batch", progress):
                chunk = new[b:b + self.batch_size]
                tok = self.processor.tokenize(chunk)
                emb = self.model.get_text_features(tok["input_ids"].to(device), tok["attention_mask"].to(device))
                base = len(self._row)
                self._embeds.append(emb.float().cpu())
                self._row.update({t: base + j for j, t in enumerate(chunk)})

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """[len(texts), D] (embedding any text not added yet)."""
        self.add(texts)
        table = torch.cat(self._embeds) if len(self._embeds) != 1 else self._embeds[0]
        self._embeds = [table]
        return table[torch.tensor([self._row[t] for t in texts], dtype=torch.long)]


def embed_images(model: torch.nn.Module, processor, images: torch.Tensor, path: str = "processor", *,
                 batch_size: int = 32, progress: bool = False) -> torch.Tensor:
    """Still images float [N, 3, H, W] in [-1, 1] (any H, W) -> float32 [N, D] L2-normalised image
    embeddings (on the CPU), through ``path``: ``"processor"`` (``processor.preprocess_images`` ->
    ``model.get_image_features``) or ``"guide"`` (:meth:`HDVILAGuide.image_features`). ``model`` may
    also be an :class:`HDVILAGuide` (its HD-VILA model and processor are then used)."""
    from generation.editing.guide import HDVILAGuide

    _check(path=path)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, H, W] in [-1, 1], got {tuple(images.shape)}")
    if isinstance(model, HDVILAGuide):
        model, processor = model.hdvila, model.processor
    device = next(model.parameters()).device
    out = []
    starts = range(0, images.shape[0], batch_size)
    with _evaluating(model):
        guide = HDVILAGuide(model, processor) if path == "guide" else None
        for b in _progress(starts, len(starts), f"embedding {images.shape[0]} images ({path} path)", "batch", progress):
            x = images[b:b + batch_size]
            if guide is not None:
                emb = guide.image_features(x)
            else:
                emb = model.get_image_features(processor.preprocess_images(x).to(device))
            out.append(emb.float().cpu())
    return torch.cat(out)


def zero_shot_logits(image_embeds: torch.Tensor, text_embeds: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``scale`` x cosine between image embeddings [N, D] and candidate text embeddings, either one
    set for all images [V, D] or one per image [N, V, D] -> [N, V] (with scale 1: cosines in [-1, 1])."""
    img = F.normalize(image_embeds.float(), dim=-1)
    txt = F.normalize(text_embeds.float(), dim=-1)
    if txt.ndim == 2:
        return scale * img @ txt.T
    if txt.ndim != 3 or txt.shape[0] != img.shape[0]:
        raise ValueError(f"text embeddings must be [V, D] or [N, V, D] with N = {img.shape[0]}, got {tuple(txt.shape)}")
    return scale * torch.einsum("nd,nvd->nv", img, txt)


def guide_value_logits(guide, images: torch.Tensor, attribute: str, *, wording: str = "train",
                       prompts: Sequence[str] | None = None, views: int = 0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """The guide's zero-shot logits over the values of ``attribute``: images float [N, 3, H, W] in
    [-1, 1] -> [N, V] = ``logit_scale`` x cos(image, value prompt) (V = ``len(ATTRIBUTES[attribute])``,
    ``ATTRIBUTES[attribute]`` order; roughly [-20, 20] at the mini model's temperature 0.05).

    ``prompts``: one text per value (default :func:`value_prompts`). ``views`` > 0 embeds each image
    as the mean of that many random views (:meth:`HDVILAGuide.augmented_image_features`).
    Differentiable with respect to ``images`` (softmax -> probability of a value; cross-entropy
    against a target value is a loss an editor can minimise).
    """
    _check(attribute=attribute, wording=wording)
    prompts = list(prompts) if prompts is not None else value_prompts(attribute, wording)
    if len(prompts) != len(ATTRIBUTES[attribute]):
        raise ValueError(f"need one prompt per value of {attribute} ({len(ATTRIBUTES[attribute])}), got {len(prompts)}")
    text = guide.text_features(prompts)
    img = guide.augmented_image_features(images, views, generator=generator)
    return zero_shot_logits(img, text.to(img.device), float(guide.hdvila.logit_scale))


#: Accuracy gap (fraction) between the two paths, and image-embedding cosine, past which the table
#: flags a finding.
PATH_GAP_FINDING = 0.05
PATH_COSINE_FINDING = 0.999


# ---- reading --------------------------------------------------------------------------------------
def read_attributes(model: torch.nn.Module, processor, images: torch.Tensor | None, specs: Sequence[ImageSpec],
                    mode: str = "full", *, path: str = "processor", wording: str = "train",
                    attributes: Sequence[str] = ATTRIBUTE_ORDER,
                    caption_rngs: Sequence[np.random.Generator] | None = None,
                    texts: TextEmbeddings | None = None, image_embeds: torch.Tensor | None = None,
                    batch_size: int = 32, progress: bool = False) -> dict[str, Any]:
    """Zero-shot reading of each attribute of still images by an HD-VILA model.

    images: float [N, 3, H, W] in [-1, 1] (the renders of ``specs``; ignored, and may be None, when
    ``image_embeds`` [N, D] are given). specs: the N :class:`ImageSpec` (true values, and the
    captions in ``"full"`` mode, worded from ``caption_rngs``, see :func:`candidate_texts`). ``texts``:
    a shared :class:`TextEmbeddings` (a new one otherwise).

    Returns ``{"accuracy": {attribute: fraction in [0, 1]}, "chance": {attribute: 1 / #values},
    "true_probability": {attribute: mean softmax probability of the true value at the model's
    logit_scale, in [0, 1]: a smooth selection signal}, "predictions": {attribute: [value per image]},
    "truth": {attribute: [value per image]}, "confusion": {attribute: counts [#values][#values],
    rows true, columns read}, "n": N}``.
    """
    _check(mode=mode, wording=wording, path=path)
    for a in attributes:
        _check(attribute=a)
    specs = list(specs)
    if image_embeds is None:
        if images is None:
            raise ValueError("give images or image_embeds")
        image_embeds = embed_images(model, processor, images, path, batch_size=batch_size, progress=progress)
    if image_embeds.shape[0] != len(specs):
        raise ValueError(f"{image_embeds.shape[0]} images for {len(specs)} specs")
    texts = texts or TextEmbeddings(model, processor)
    scale = float(getattr(model, "logit_scale", 1.0))
    out: dict[str, Any] = {"n": len(specs), "accuracy": {}, "chance": {}, "true_probability": {}, "predictions": {},
                           "truth": {}, "confusion": {}}
    for a in attributes:
        values = ATTRIBUTES[a]
        cands = candidate_texts(specs, a, mode, wording=wording, caption_rngs=caption_rngs)
        if mode == "short":
            emb = texts(cands[0])                                                        # [V, D]
        else:
            emb = texts([t for c in cands for t in c]).view(len(specs), len(values), -1)  # [N, V, D]
        logits = zero_shot_logits(image_embeds, emb, scale)                             # [N, V]
        read = logits.argmax(dim=1)
        truth = torch.tensor([values.index(getattr(s, a)) for s in specs], dtype=torch.long)
        confusion = torch.zeros(len(values), len(values), dtype=torch.long)
        confusion.index_put_((truth, read), torch.ones_like(truth), accumulate=True)
        out["accuracy"][a] = float((read == truth).float().mean()) if len(specs) else 0.0
        out["chance"][a] = 1.0 / len(values)
        out["true_probability"][a] = (float(logits.softmax(dim=1).gather(1, truth[:, None]).mean())
                                      if len(specs) else 0.0)
        out["predictions"][a] = [values[i] for i in read.tolist()]
        out["truth"][a] = [values[i] for i in truth.tolist()]
        out["confusion"][a] = confusion.tolist()
    return out


def evaluate_guide_reading(model: torch.nn.Module, processor, *, num: int = 200, resolution: int = 64, seed: int = 0,
                           wording: str = "train", split: str = "test", modes: Sequence[str] = MODES,
                           paths: Sequence[str] = PATHS, batch_size: int = 32, text_batch_size: int = 128,
                           progress: bool = True) -> dict[str, Any]:
    """Read the attributes of ``num`` demo renders of ``split`` (test: combinations never trained on)
    at ``resolution`` px (8-bit, like a generator's output) in every mode and path.

    Returns a JSON-ready dict: the settings, ``values`` and ``chance`` per attribute, the short
    prompts, the true captions, ``results[path][mode]`` (:func:`read_attributes`' output), and
    ``paths_compared`` (cosine between the two paths' image embeddings, mean and min; per mode the
    share of images read alike per attribute; the largest accuracy gap), when both paths run.
    """
    from generation.data import render_demo_images
    from hdvila.demo.dataset import sample_image_spec
    from hdvila.tensors import uint8_to_unit

    _check(wording=wording)
    for m in modes:
        _check(mode=m)
    for p in paths:
        _check(path=p)
    t0 = time.perf_counter()
    specs = [sample_image_spec(split, seed, i) for i in range(num)]
    rngs = demo_caption_rngs(range(num), split=split, seed=seed, wording=wording)
    images = uint8_to_unit(torch.from_numpy(render_demo_images(num, resolution, split=split, seed=seed,
                                                               progress=progress)))
    bank = TextEmbeddings(model, processor, batch_size=text_batch_size)
    everything = [t for m in modes for a in ATTRIBUTE_ORDER
                  for c in candidate_texts(specs, a, m, wording=wording, caption_rngs=rngs) for t in c]
    bank.add(everything, progress=progress)
    embeds = {p: embed_images(model, processor, images, p, batch_size=batch_size, progress=progress) for p in paths}
    results = {p: {m: read_attributes(model, processor, None, specs, m, path=p, wording=wording, caption_rngs=rngs,
                                      texts=bank, image_embeds=embeds[p]) for m in modes} for p in paths}
    out: dict[str, Any] = {
        "num": num, "resolution": resolution, "seed": seed, "split": split, "wording": wording,
        "modes": list(modes), "paths": list(paths), "attributes": list(ATTRIBUTE_ORDER),
        "values": {a: list(ATTRIBUTES[a]) for a in ATTRIBUTE_ORDER},
        "chance": {a: 1.0 / len(ATTRIBUTES[a]) for a in ATTRIBUTE_ORDER},
        "short_prompts": {a: value_prompts(a, wording) for a in ATTRIBUTE_ORDER},
        "captions": [caption_image(s, copy.deepcopy(r), wording) for s, r in zip(specs, rngs)],
        "distinct_texts": len(bank), "results": results,
    }
    if "processor" in paths and "guide" in paths:
        cos = (embeds["processor"] * embeds["guide"]).sum(dim=1)
        agree = {m: {a: float(np.mean([x == y for x, y in zip(results["processor"][m]["predictions"][a],
                                                               results["guide"][m]["predictions"][a])]))
                     for a in ATTRIBUTE_ORDER} for m in modes}
        gap = max(abs(results["processor"][m]["accuracy"][a] - results["guide"][m]["accuracy"][a])
                  for m in modes for a in ATTRIBUTE_ORDER)
        out["paths_compared"] = {"embedding_cosine_mean": float(cos.mean()), "embedding_cosine_min": float(cos.min()),
                                 "agreement": agree, "max_accuracy_gap": float(gap)}
        if float(cos.min()) < PATH_COSINE_FINDING:
            out["paths_compared"]["note"] = (f"the two paths embed the same stills differently "
                                             f"(min cosine {float(cos.min()):.4f})")
    out["seconds"] = time.perf_counter() - t0
    return out




def format_table(result: dict[str, Any]) -> str:
    """A markdown table of :func:`evaluate_guide_reading`'s result: per attribute, chance and the
    accuracy of every mode x path, a mean row, then how the two image paths compare."""
    cols = [(m, p) for m in result["modes"] for p in result["paths"]]
    head = (f"{result['num']} {result['split']}-split renders at {result['resolution']} px, {result['wording']} "
            f"wordings{', model ' + str(result['model']) if result.get('model') else ''}\n"
            "full: the true caption with only that attribute changed; short: the value alone ("
            + ", ".join(f'"{result["short_prompts"][a][0]}"' for a in result["attributes"]) + ", ...)")
    lines = [head, "", "| attribute | values | chance | " + " | ".join(f"{m}, {p} path" for m, p in cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for a in result["attributes"]:
        accs = [result["results"][p][m]["accuracy"][a] for m, p in cols]
        lines.append(f"| {a} | {len(result['values'][a])} | {100 * result['chance'][a]:.1f}% | "
                     + " | ".join(f"{100 * x:.1f}%" for x in accs) + " |")
    mean_chance = float(np.mean([result["chance"][a] for a in result["attributes"]]))
    means = [float(np.mean([result["results"][p][m]["accuracy"][a] for a in result["attributes"]])) for m, p in cols]
    lines.append(f"| mean | | {100 * mean_chance:.1f}% | " + " | ".join(f"{100 * x:.1f}%" for x in means) + " |")
    cmp_ = result.get("paths_compared")
    if cmp_:
        agree = [v for m in cmp_["agreement"].values() for v in m.values()]
        lines += ["", f"processor vs guide path: image-embedding cosine mean {cmp_['embedding_cosine_mean']:.6f} "
                      f"(min {cmp_['embedding_cosine_min']:.6f}); same reading on {100 * float(np.mean(agree)):.1f}% "
                      f"of image-attribute-mode cases; largest accuracy gap "
                      f"{100 * cmp_['max_accuracy_gap']:.1f} points"]
        if cmp_.get("note"):
            lines.append(f"NOTE: {cmp_['note']}.")
        if cmp_["max_accuracy_gap"] > PATH_GAP_FINDING:
            lines.append(f"FINDING: the two image paths read the stills differently (gap over "
                         f"{100 * PATH_GAP_FINDING:.0f} points): the editing guide does not see what the public "
                         f"processor path sees.")
    return "\n".join(lines)
