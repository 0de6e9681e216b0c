"""Where a StyleGAN2 training run starts from: its networks' settings, a checkpoint's layout, and
``--init_from`` (another run's checkpoint, widened when it has fewer channels, or model folders).

A checkpoint of ``generation/train_stylegan2.py`` is an ``accelerator.save_state`` folder:
``model.safetensors`` (G inside :class:`~generation.stylegan2.training.GeneratorForTraining`),
``model_1.safetensors`` (D), the optimisers and RNG states, ``generator_ema/`` (the EMA generator
as a model folder) and ``training_state.json`` (the step, counters and the model settings).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hdvila.errors import UserError
from hdvila.training.ema import GENERATOR_EMA_FOLDER

logger = logging.getLogger("train_stylegan2")

# Settings that fix the networks' shapes: a checkpoint only resumes under the same values.
MODEL_KEYS = ("resolution", "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "mbstd_group_size",
              "num_fp16_res", "conv_clamp")


def network_configs(model: dict[str, Any]):
    """(generator config, discriminator config) for a run's MODEL_KEYS settings."""
    from generation.stylegan2 import DiscriminatorConfig, StyleGAN2Config

    g = StyleGAN2Config(z_dim=model["z_dim"], w_dim=model["w_dim"], img_resolution=model["resolution"],
                        mapping_layers=model["mapping_layers"], channel_base=model["channel_base"],
                        channel_max=model["channel_max"], num_fp16_res=model["num_fp16_res"],
                        conv_clamp=model["conv_clamp"])
    d = DiscriminatorConfig(img_resolution=model["resolution"], channel_base=model["channel_base"],
                            channel_max=model["channel_max"], mbstd_group_size=model["mbstd_group_size"],
                            num_fp16_res=model["num_fp16_res"], conv_clamp=model["conv_clamp"])
    return g, d


def demo_cache_file(data_cache_dir: str | None, output_dir: Path, seed: int, resolution: int, train_size: int) -> Path:
    """Where a --data demo run caches its rendered training images (uint8 .npy)."""
    cache_dir = Path(data_cache_dir) if data_cache_dir else Path(output_dir) / "data_cache"
    return cache_dir / f"demo-train-seed{seed}-{resolution}px-{train_size}.npy"


def check_model_settings(folder: Path, saved: dict[str, Any], model: dict[str, Any]) -> None:
    """UserError naming each flag whose value differs between a checkpoint's training state
    ``saved`` and this run's settings ``model``."""
    before = saved.get("model", {})
    diff = {k: (before.get(k), v) for k, v in model.items() if before.get(k) != v}
    if diff:
        raise UserError(f"{folder} was trained with different model settings: "
                        + ", ".join(f"--{k} {old} (now {new})" for k, (old, new) in diff.items())
                        + ". Pass the same model flags to go on from it.")


def widened_settings(saved: dict, now: dict) -> dict:
    """The widening from a checkpoint's model settings to this run's: {key: new value} when the two differ
    only by larger ``channel_base``/``channel_max`` (generation/stylegan2/widen.py), else {}."""
    from generation.stylegan2.widen import WIDENABLE

    diff = {k: v for k, v in now.items() if saved.get(k) != v}
    if diff and set(diff) <= set(WIDENABLE) and all(saved.get(k) is not None and v > saved[k] for k, v in diff.items()):
        return diff
    return {}


def load_widened(folder: Path, saved: dict, widening: dict, seed: int):
    """A checkpoint's G, D and EMA G (CPU, float32), each widened by ``widening`` to the same function.
    G and its EMA copy get the same initial values for their new channels."""
    from generation.stylegan2 import Discriminator, Generator
    from generation.stylegan2.training import GeneratorForTraining
    from generation.stylegan2.widen import widen
    from hdvila.modeling_utils import load_weights

    g_cfg, d_cfg = network_configs(saved)
    G, D, G_ema = GeneratorForTraining(Generator(g_cfg)), Discriminator(d_cfg), Generator(g_cfg)
    load_weights(G, folder / "model.safetensors")
    load_weights(D, folder / "model_1.safetensors")
    load_weights(G_ema, folder / GENERATOR_EMA_FOLDER / "model.safetensors")
    try:
        return (widen(G.generator, seed=seed, **widening), widen(D, seed=seed + 1, **widening),
                widen(G_ema, seed=seed, **widening))
    except ValueError as e:
        raise UserError(f"--init_from {folder}: cannot widen it to this run's settings: {e}.") from None


def load_model_folders(g_folder: Path, d_folder: Path | None, model: dict):
    """(G, D or None) for ``--init_from GENERATOR_FOLDER``: the generator from ``g_folder``, the
    discriminator from ``d_folder``, else from ``g_folder/discriminator`` if that holds a model, else
    None (D starts fresh). Each must match the run's settings ``model`` (MODEL_KEYS); a mismatch is a
    UserError naming the differing fields."""
    from generation.stylegan2 import Discriminator, Generator

    if d_folder is None and (g_folder / "discriminator" / "config.json").is_file():
        d_folder = g_folder / "discriminator"
    nets = []
    for cls, folder, want in zip((Generator, Discriminator), (g_folder, d_folder), network_configs(model)):
        net = cls.from_pretrained(folder) if folder is not None else None
        if net is not None and net.config != want:
            found, wanted = asdict(net.config), asdict(want)
            diff = ", ".join(f"{k} {v} (this run: {wanted[k]})" for k, v in found.items() if wanted[k] != v)
            raise UserError(f"{folder}: its {cls.__name__.lower()} differs from this run's: {diff}. Pass the "
                            f"same model flags (--resolution, --z_dim, --w_dim, --mapping_layers, --channel_base, "
                            f"--channel_max, ...) to start from it.")
        nets.append(net)
    return tuple(nets)


def init_from(init: Path, *, G_train, D, G_ema, state, discriminator: Path | None, d_warmup_steps: int,
              seed: int, device) -> dict[str, Any] | None:
    """Start a new run from ``--init_from init``: load the weights into ``G_train``
    (:class:`~generation.stylegan2.training.GeneratorForTraining`), ``D`` and ``G_ema`` in place, and
    set ``state`` (:class:`~generation.stylegan2.training.TrainState`). Returns the checkpoint's
    training state when ``init`` is a checkpoint (its counters are taken), None for model folders
    (counters at 0, no EMA ramp-up, as StyleGAN2-ADA does when it resumes from a pickle)."""
    from hdvila.modeling_utils import load_weights
    from hdvila.training import STATE_FILE, load_training_state

    if not (init / STATE_FILE).is_file() and (init / "config.json").is_file():
        G_init, D_init = load_model_folders(init, discriminator, state.model)
        G_train.generator.load_state_dict(G_init.state_dict())
        G_ema.load_state_dict(G_init.state_dict())
        if D_init is not None:
            D.load_state_dict(D_init.state_dict())
        elif d_warmup_steps == 0:
            logger.warning("--init_from %s: D starts fresh, and its first gradients may undo some of G's training; "
                           "--d_warmup_steps holds G still while D catches up (docs/results.md)", init)
        state.ema_rampup = False
        logger.info("starting from the model folder %s (G and EMA G) and %s (D); fresh optimizer states, "
                    "counters at 0, no EMA ramp-up", init,
                    discriminator or ("its discriminator/" if D_init is not None else "nothing: fresh"))
        return None
    needed = [init / STATE_FILE, init / "model.safetensors", init / "model_1.safetensors",
              init / GENERATOR_EMA_FOLDER / "model.safetensors"]
    absent = [str(f.relative_to(init)) for f in needed if not f.is_file()]
    if absent:
        raise UserError(f"--init_from {init}: neither a checkpoint of this script (missing {', '.join(absent)}) "
                        f"nor a generator model folder (config.json + model.safetensors).")
    if discriminator:
        raise UserError(f"--init_discriminator goes with --init_from GENERATOR_FOLDER; {init} is a training "
                        f"checkpoint, whose own D is used.")
    saved = load_training_state(init)
    widening = widened_settings(saved.get("model", {}), state.model)
    if widening:
        logger.info("starting from the weights and counters of %s, widened (%s; fresh optimizer states)", init,
                    ", ".join(f"{k} {saved['model'][k]} -> {v}" for k, v in widening.items()))
        G_init, D_init, G_ema_init = load_widened(init, saved["model"], widening, seed)
        G_train.generator.load_state_dict(G_init.state_dict())
        D.load_state_dict(D_init.state_dict())
        G_ema.load_state_dict(G_ema_init.state_dict())
    else:
        check_model_settings(init, saved, state.model)
        logger.info("starting from the weights and counters of %s (fresh optimizer states)", init)
        load_weights(G_train, init / "model.safetensors", map_location=str(device))
        load_weights(D, init / "model_1.safetensors", map_location=str(device))
        load_weights(G_ema, init / GENERATOR_EMA_FOLDER / "model.safetensors", map_location=str(device))
    state.load_counters(saved)
    return saved
