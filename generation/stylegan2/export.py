"""Export a StyleGAN2 training checkpoint as a bundled generator folder (``hdvila export``).

A checkpoint of ``generation/train_stylegan2.py`` (layout: :mod:`generation.stylegan2.training_init`)
holds the EMA generator in ``generator_ema/``, the discriminator in ``model_1.safetensors`` and the
model settings in ``training_state.json``. :func:`export_checkpoint` writes the layout that
``checkpoints/stylegan2-demo64`` ships in::

    OUT/config.json, OUT/model.safetensors                  the EMA generator (Generator.from_pretrained)
    OUT/discriminator/config.json, .../model.safetensors     the checkpoint's D (Discriminator.from_pretrained)

Both are stored as float16 (:func:`hdvila.modeling_utils.export_lean`; they load as float32). The
discriminator lets training go on from the folder (``train_stylegan2.py --init_from OUT``) and gives
GAN losses a trained critic.

``average=N`` exports the mean of the EMA generators of the last N complete checkpoints of the run,
ending with the one named (weight averaging along one training trajectory, as in Izmailov et al.
2018, "Averaging Weights Leads to Wider Optima and Better Generalization"). Floating-point tensors
are averaged in float64; other tensors come from the newest checkpoint. The folder is written
through :func:`hdvila.atomic.atomic_dir`: OUT is replaced only once the new folder is complete and
both networks load from it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path

import torch

from generation.stylegan2.training_init import MODEL_KEYS, network_configs
from hdvila.errors import CheckpointError, UserError
from hdvila.training.checkpoints import STATE_FILE, list_checkpoints, load_training_state
from hdvila.training.ema import GENERATOR_EMA_FOLDER

logger = logging.getLogger(__name__)

D_WEIGHTS = "model_1.safetensors"  # accelerator.save_state's name for the second prepared model (D)


@dataclasses.dataclass
class ExportResult:
    """What :func:`export_checkpoint` wrote: the folder, the checkpoint its D came from, and the
    generator folders whose weights it holds (one, or the averaged ones, oldest first)."""

    out: Path
    checkpoint: Path
    step: int
    generators: list[Path]


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """``path`` if it is a checkpoint folder (it holds ``training_state.json``), else the newest
    complete ``checkpoint-N`` of ``path`` taken as a run's output folder; a UserError otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such folder. Pass a checkpoint-N folder of train_stylegan2.py "
                              f"or the run's output folder.")
    if (path / STATE_FILE).is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise CheckpointError(f"{path} is not a checkpoint of train_stylegan2.py (no {STATE_FILE}) and holds no "
                              f"complete checkpoint-N folder.")
    return found[-1][1]


def checkpoint_state(checkpoint: Path) -> dict:
    """The training state of a StyleGAN2 checkpoint, checked to hold the model settings (MODEL_KEYS)
    and the discriminator's weights."""
    state = load_training_state(checkpoint)
    model = state.get("model")
    if not isinstance(model, dict) or any(k not in model for k in MODEL_KEYS):
        raise CheckpointError(f"{checkpoint} is not a checkpoint of train_stylegan2.py: its {STATE_FILE} holds no "
                              f"StyleGAN2 model settings.")
    if not (checkpoint / D_WEIGHTS).is_file():
        raise CheckpointError(f"{checkpoint / D_WEIGHTS} is missing: {checkpoint} is not a complete checkpoint of "
                              f"train_stylegan2.py.")
    return state


def averaged_folders(checkpoint: Path, step: int, average: int) -> list[Path]:
    """The EMA generator folders of the last ``average`` complete checkpoints of ``checkpoint``'s
    run (its parent folder) up to ``step``, oldest first, ending with ``checkpoint``'s own."""
    if average < 1:
        raise UserError(f"--average must be >= 1, got {average}.")
    earlier = [folder for s, folder in list_checkpoints(checkpoint.parent)
               if s < step and folder.resolve() != checkpoint.resolve()]
    if len(earlier) < average - 1:
        raise UserError(f"--average {average}: {checkpoint.parent} holds {len(earlier) + 1} complete checkpoint(s) "
                        f"up to step {step}; pass --average {len(earlier) + 1} or less.")
    return [folder / GENERATOR_EMA_FOLDER for folder in earlier[len(earlier) - (average - 1):] + [checkpoint]]


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Tensor-wise mean of state dicts with the same keys: floating-point tensors averaged in
    float64 and stored in the first's dtype, other tensors taken from the last."""
    if not states:
        raise ValueError("nothing to average")
    keys = set(states[0])
    if any(set(s) != keys for s in states[1:]):
        raise ValueError("the state dicts do not hold the same tensors")
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = (sum(s[key].double() for s in states) / len(states)).to(first.dtype)
        else:
            out[key] = states[-1][key].clone()
    return out


def _load_generator(folder: Path, want, checkpoint: Path):
    from generation.stylegan2 import Generator

    if Generator.read_config(folder) != want:
        raise CheckpointError(f"{folder} is not a generator of {checkpoint}: their model settings differ.")
    return Generator.from_pretrained(folder)


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, average: int = 1,
                      generator: str | os.PathLike | None = None) -> ExportResult:
    """Write ``checkpoint``'s EMA generator (or the mean of the last ``average`` checkpoints' EMA
    generators, or the model folder ``generator``) to ``out`` and its discriminator to
    ``out/discriminator``, float16, atomically. ``checkpoint`` may be a run's output folder (its
    newest checkpoint is taken). Raises :class:`~hdvila.errors.UserError` and writes nothing when
    the inputs are not what is needed or ``out`` is a folder that is not a model folder."""
    from generation.stylegan2 import Discriminator, Generator
    from hdvila.atomic import atomic_dir
    from hdvila.modeling_utils import export_lean, load_weights

    checkpoint, out = resolve_checkpoint(checkpoint), Path(out)
    state = checkpoint_state(checkpoint)
    step = state["step"]
    if out.resolve() == checkpoint.resolve() or out.resolve() in checkpoint.resolve().parents:
        raise UserError(f"{out} would replace the checkpoint {checkpoint}; pass another output folder.")
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file()):
        raise UserError(f"{out} exists and is not a model folder; pass a new folder (or an earlier export, "
                        f"which is replaced).")
    if generator is not None and average != 1:
        raise UserError("--generator and --average exclude each other: the average is of the run's own "
                        f"{GENERATOR_EMA_FOLDER}/ folders.")
    g_cfg, d_cfg = network_configs(state["model"])
    folders = [Path(generator)] if generator is not None else averaged_folders(checkpoint, step, average)
    missing = [f for f in folders if not (f / "config.json").is_file()]
    if missing:
        raise CheckpointError(f"{missing[0]} is missing or not a model folder: {checkpoint} is not a complete "
                              f"checkpoint of train_stylegan2.py.")
    nets = [_load_generator(f, g_cfg, checkpoint) for f in folders]
    G = nets[-1]
    if len(nets) > 1:
        G.load_state_dict(average_state_dicts([n.state_dict() for n in nets]))
    D = Discriminator(d_cfg)
    load_weights(D, checkpoint / D_WEIGHTS)

    with atomic_dir(out) as tmp:
        stage = tmp / ".float32"
        G.save_pretrained(stage / "generator")
        D.save_pretrained(stage / "discriminator")
        export_lean(stage / "generator", tmp)
        export_lean(stage / "discriminator", tmp / "discriminator")
        shutil.rmtree(stage)
        Generator.from_pretrained(tmp)  # both load before anything is replaced
        Discriminator.from_pretrained(tmp / "discriminator")
    logger.info("exported %s (step %d) to %s", checkpoint, step, out)
    return ExportResult(out=out, checkpoint=checkpoint, step=step, generators=folders)
