"""The guide's validation numbers of an edit mapper, shared by its trainer and its scorer.

``generation/train_mapper.py`` validates its EMA mapper with :func:`validate_mapper` every
``--validation_steps``; ``hdvila score-mapper`` (:func:`score_mappers`) computes the same numbers for
trained mapper folders (e.g. ``checkpoint-N/ema``) without training, on the same held-out images: the
choice of a checkpoint by the guide alone (``val/select``), fixed before any judging.

Both read their models, vocabulary and images the same way (:func:`load_edit_models`,
:func:`load_vocabulary`, :func:`load_pixels`: the held-out images of ``data`` are its last
``val_size`` files in sorted order, or ``val_size`` test-split demo renders), invert the images with
the encoder (:func:`invert_images`) and draw one edit per editable attribute of each image
(:func:`draw_edits`), read by the guide (:class:`~generation.editing.value_objective.ValueReader`; the
judge is never used).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch


def load_vocabulary(path: str | Path | None):
    """The editing vocabulary: an attributes file (:mod:`generation.editing.attributes`), or the demo preset."""
    from generation.editing.attributes import AttributeVocabulary
    from generation.presets import demo_vocabulary

    return demo_vocabulary() if path is None else AttributeVocabulary.load(path)


def load_edit_models(generator: str | None = None, encoder: str | None = None, hdvila: str | None = None, *,
                     random_guide_seed: int | None = None) -> dict[str, Any]:
    """Generator, encoder and guide (frozen, on the CPU) and the HD-VILA folder's path (``hdvila_dir``);
    each ``None`` is the bundled model. ``random_guide_seed``: guide with a randomly initialised HD-VILA
    of the same architecture, initialised with that seed (a control experiment)."""
    from generation.editing.encoder import LatentEncoder
    from generation.editing.guide import HDVILAGuide
    from generation.stylegan2.convert import load_stylegan2
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.paths import resolve_model_path
    from hdvila.processing_hdvila import HDVILAProcessor

    g_path = resolve_model_path(generator, "stylegan2-demo64", option="--generator",
                                accepts="a StyleGAN2 model folder, an NVlabs .pkl or a rosinality .pt")
    G = load_stylegan2(g_path).eval().requires_grad_(False).float()
    e_path = resolve_model_path(encoder, "edit-demo64/encoder", option="--encoder")
    enc = LatentEncoder.from_pretrained(e_path).eval().requires_grad_(False)
    enc.check_generator(G)
    h_path = resolve_model_path(hdvila, "hdvila-mini", option="--hdvila")
    model = HDVILAModel.from_pretrained(h_path)
    if random_guide_seed is not None:
        torch.manual_seed(random_guide_seed)
        model = HDVILAModel(model.config)
    guide = HDVILAGuide(model, HDVILAProcessor.from_config(model.config))
    return {"G": G, "encoder": enc, "guide": guide, "hdvila_dir": h_path}


def check_image_count(data: str, val_size: int, count: int, kind: str = "", option: str = "--val_size") -> None:
    """Refuse a ``data`` folder with no more than ``val_size`` images (one-line UserError; ``option``
    names the setting of ``val_size``)."""
    from hdvila.errors import UserError

    if count <= val_size:
        raise UserError(f"{data} holds {count} {kind}images; it needs more than {option} "
                        f"({val_size}), which are held out for validation. Add images or lower {option}.")


def check_data(data: str, val_size: int, option: str = "--val_size") -> None:
    """The cheap checks of a ``data`` folder ("demo": none), before anything is written: it holds image
    files (by name; they are decoded later, in :func:`load_pixels`), more than ``val_size`` of them."""
    from generation.data import list_image_files
    from hdvila.errors import InputFileError
    from hdvila.imageio import IMAGE_SUFFIXES

    if data == "demo":
        return
    files = list_image_files(data)
    if not files:
        raise InputFileError(f"{data}: no image files found (looked for {', '.join(IMAGE_SUFFIXES)}, "
                             f"recursively).")
    check_image_count(data, val_size, len(files), option=option)


def load_pixels(data: str, resolution: int, *, train_size: int, val_size: int, seed: int = 0,
                skip_bad_images: bool = False, option: str = "--val_size",
                skip_hint: str = "pass --skip_bad_images to train without them") -> tuple[np.ndarray, np.ndarray, str]:
    """(train pixels, validation pixels, a name for the cache): uint8 [N, 3, R, R] each. ``data``:
    "demo" (``train_size`` train-split and ``val_size`` test-split renders) or a folder of images (any
    sizes: centre-cropped and resized; the last ``val_size`` files, in sorted order, are held out).
    ``skip_hint``: how an error on unusable images names the way to leave them out."""
    from generation.data import render_demo_images, scan_image_folder

    if data == "demo":
        return (render_demo_images(train_size, resolution, split="train", seed=seed, progress=True),
                render_demo_images(val_size, resolution, split="test", seed=seed),
                f"demo-{train_size}")
    files, pixels = scan_image_folder(data, resolution, skip_bad=skip_bad_images, progress=True, skip_hint=skip_hint)
    check_image_count(data, val_size, len(files), "usable ", option)  # skip_bad_images may have left out some
    from hdvila.modeling_utils import tensors_digest

    return pixels[:-val_size], pixels[-val_size:], f"folder-{tensors_digest([torch.from_numpy(pixels)], 12)}"


class EditData:
    """Images to edit: W+ latents [N, num_ws, w_dim] (the encoder's inversions) and the guide's
    embeddings of their reconstructions [N, D] (what the mapper reads as the source)."""

    def __init__(self, ws: torch.Tensor, source_embeds: torch.Tensor):
        self.ws, self.source_embeds = ws, source_embeds

    def __len__(self) -> int:
        return self.ws.shape[0]


@torch.no_grad()
def invert_images(G, encoder, guide, pixels: np.ndarray, cache: Path | None, desc: str) -> EditData:
    """Invert uint8 images [N, 3, R, R] with the encoder and embed the reconstructions (cached in
    ``cache`` when given)."""
    from tqdm.auto import tqdm

    if cache is not None and cache.is_file():
        z = torch.load(cache, weights_only=True)
        if z["ws"].shape[0] == len(pixels):
            return EditData(z["ws"], z["source"])
    ws, embeds = [], []
    for i in tqdm(range(0, len(pixels), 64), desc=desc, disable=len(pixels) <= 256):
        x = torch.from_numpy(pixels[i:i + 64]).float() / 127.5 - 1
        w = encoder(x.to(G.mapping.w_avg.device), G)
        ws.append(w.float().cpu())
        embeds.append(guide.image_features(G.render(w, fused_modconv=False).clamp(-1, 1)).cpu())
    data = EditData(torch.cat(ws), torch.cat(embeds))
    if cache is not None:
        from hdvila.atomic import atomic_path

        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            torch.save({"ws": data.ws, "source": data.source_embeds}, tmp)
    return data


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


def draw_edits(vocabulary, current: list[dict[str, str]], rng: np.random.Generator, noop_prob: float = 0.0,
               attribute: str | None = None, per_image: int = 1) -> list[tuple[str, str, str]]:
    """Per image (``current``: attribute -> the value read), ``per_image`` edits (attribute, asked value,
    training-wording prompt), the rows of one image consecutive. With ``per_image`` 1 the attribute is
    drawn, then a value other than the current one; with more, one attribute per image and that many
    distinct values other than the current one (cycled when the attribute has fewer), so the same
    image is asked for several values in one batch. A no-op draw (``noop_prob``) asks the current value."""
    out = []
    for now in current:
        if per_image == 1:
            asked = [vocabulary.sample_edit(now, rng, attribute)]
        else:
            a = attribute or vocabulary.editable[int(rng.integers(len(vocabulary.editable)))]
            others = [v for v in vocabulary.values(a) if v != now.get(a)]
            order = rng.permutation(len(others))
            asked = [(a, others[int(order[i % len(others)])]) for i in range(per_image)]
        for a, value in asked:
            if noop_prob and rng.random() < noop_prob:
                value = now[a]
            out.append((a, value, vocabulary.edit_prompt(a, value, rng, "train")))
    return out


def edit_targets(vocabulary, edits) -> torch.Tensor:
    """[N] long: each asked value's index among its attribute's values."""
    return torch.tensor([vocabulary.values(a).index(v) for a, v, _ in edits], dtype=torch.long)


@torch.no_grad()
def validate_mapper(mapper, G, guide, reader, texts: PromptTable, vocabulary, val: EditData, out_png: Path | None,
                    seed: int = 0) -> dict[str, float]:
    """One edit per editable attribute of every validation image (asked value drawn with ``seed``,
    never the value read), read by the guide: ``val/read_<a>``, ``val/kept_<a>``, ``val/read``,
    ``val/kept``, ``val/select`` (:func:`~generation.editing.value_objective.value_metrics`), the mean
    offset norm in w-spread units (``val/offset``), and (``out_png``) a PNG grid (source | one edit per
    attribute)."""
    from generation.editing.value_objective import value_metrics

    rng = np.random.default_rng(seed)
    device = G.mapping.w_avg.device
    ws, src = val.ws.to(device), val.source_embeds.to(device)
    current = reader.current(src)
    cols, embeds, attrs, targets, norms = [G.render(ws, fused_modconv=False).clamp(-1, 1)], [], [], [], []
    for attribute in vocabulary.editable:
        edits = draw_edits(vocabulary, current, rng, attribute=attribute)
        offset = mapper(ws, texts([e[2] for e in edits]).to(device), src, G.mapping.w_avg).float()
        out = G.render(ws + offset, fused_modconv=False).clamp(-1, 1)
        embeds.append(guide.image_features(out))
        attrs += [e[0] for e in edits]
        targets.append(edit_targets(vocabulary, edits))
        norms.append((offset / mapper.config.w_scale).flatten(1).norm(dim=1))
        cols.append(out)
    metrics = value_metrics(reader, torch.cat(embeds), src.repeat(len(vocabulary.editable), 1), attrs,
                            torch.cat(targets).to(device))
    if out_png is not None:
        from hdvila.imageio import save_image
        from hdvila.tensors import image_grid

        k = min(8, len(val))
        out_png.parent.mkdir(parents=True, exist_ok=True)
        save_image(image_grid(torch.stack([c[:k] for c in cols], dim=1).flatten(0, 1), nrow=len(cols)), out_png)
    out = {f"val/{k}": v for k, v in metrics.items()}
    out["val/offset"] = float(torch.cat(norms).mean())
    return out


def check_mapper_folder(folder: str | Path) -> None:
    """A one-line :class:`~hdvila.errors.CheckpointError` unless ``folder`` is a mapper model folder."""
    from hdvila.errors import CheckpointError

    if not (Path(folder) / "config.json").is_file():
        raise CheckpointError(f"{folder} is not a mapper folder (no config.json); give e.g. OUTPUT_DIR/mapper "
                              f"or OUTPUT_DIR/checkpoint-N/ema.")


def score_mappers(mappers: Sequence[str | Path], *, generator: str | None = None, encoder: str | None = None,
                  hdvila: str | None = None, attributes: str | Path | None = None, data: str = "demo",
                  val_size: int = 16, skip_bad_images: bool = False, unread_attributes: Sequence[str] = (),
                  seed: int = 0, figures_dir: str | Path | None = None, val_option: str = "--val_size",
                  report: Callable[[str, dict[str, float]], None] | None = None,
                  skip_hint: str = "pass --skip_bad_images to score without them") -> dict[str, dict[str, float]]:
    """The validation numbers of :func:`validate_mapper` for each mapper folder (no training, no judge),
    by folder as given: the numbers the training run logged for it when ``generator``, ``encoder``,
    ``hdvila``, ``attributes``, ``data``, ``val_size``, ``unread_attributes`` and ``seed`` are the
    run's. The vocabulary, ``data`` and the folders are checked before any model is loaded.
    ``figures_dir``: also write each grid there as ``<parent>-<folder>.png``. ``report(folder,
    numbers)`` is called as each mapper is scored. ``skip_hint``: how an error on unusable images in
    ``data`` names the way to leave them out (the caller's option)."""
    from generation.editing.guide import guide_fingerprint
    from generation.editing.mapper import EditMapper
    from generation.editing.value_objective import ValueReader
    from hdvila.errors import UserError

    vocabulary = load_vocabulary(attributes)
    unknown = sorted(set(unread_attributes) - set(vocabulary.names))
    if unknown:
        raise UserError(f"unread attributes {', '.join(unknown)} are not in the vocabulary "
                        f"({', '.join(vocabulary.names)}).")
    check_data(data, val_size, val_option)
    for folder in mappers:
        check_mapper_folder(folder)
    models = load_edit_models(generator, encoder, hdvila)
    G, enc, guide = models["G"], models["encoder"], models["guide"]
    _, val_pixels, _ = load_pixels(data, G.img_resolution, train_size=1, val_size=val_size, seed=seed,
                                   skip_bad_images=skip_bad_images, option=val_option, skip_hint=skip_hint)
    val = invert_images(G, enc, guide, val_pixels, None, "inverting the validation images")
    texts, reader, out = PromptTable(guide), ValueReader(guide, vocabulary, unread=unread_attributes), {}
    for folder in mappers:
        mapper = EditMapper.from_pretrained(folder).eval()
        mapper.check_generator(G)
        mapper.check_guide(guide_fingerprint(guide.hdvila), int(guide.hdvila.config.projection_dim), source="--hdvila")
        png = None if figures_dir is None else \
            Path(figures_dir) / f"{Path(folder).resolve().parent.name}-{Path(folder).name}.png"
        out[str(folder)] = validate_mapper(mapper, G, guide, reader, texts, vocabulary, val, png, seed)
        if report is not None:
            report(str(folder), out[str(folder)])
    return out
