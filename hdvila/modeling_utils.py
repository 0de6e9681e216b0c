"""One model-file mechanism for every model in the project.

Every model is a ``torch.nn.Module`` with a dataclass config and saves/loads as a folder holding
``config.json`` and ``model.safetensors``. We build on ``huggingface_hub.PyTorchModelHubMixin``:
of the three usual mechanisms it is the only one that fits both a BERT-based video-language model
and a StyleGAN2 generator without dragging in a model family's assumptions (transformers'
``PreTrainedModel`` expects text-model conventions such as weight tying and generation config;
diffusers' ``ModelMixin`` expects diffusion components), and it gives users ``push_to_hub`` and
hub ids on machines that have a network. Its loader is lenient (``strict=False`` by default, hub
look-ups for any string), so :meth:`PretrainedModel.from_pretrained` validates the local folder
first and loads strictly, turning every problem into a :class:`~hdvila.errors.CheckpointError`
that names the file and what to do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from huggingface_hub import PyTorchModelHubMixin

from hdvila.atomic import _umask
from hdvila.errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

T = TypeVar("T", bound="PretrainedModel")


class PretrainedModel(torch.nn.Module, PyTorchModelHubMixin):
    """Base class: subclasses set ``config_class`` (a dataclass with a ``model_type`` field) and
    take ``config`` as their only constructor argument."""

    config_class: ClassVar[type]
    # State-dict key prefixes whose weights come from elsewhere (e.g. a frozen pretrained text tower
    # shipped by a pip package): they are not written by save_pretrained and may be absent on load.
    # An instance may override it when the prefixes depend on its config.
    external_weight_prefixes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def model_type(cls) -> str:
        return cls.config_class.model_type  # dataclass default

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:  # type: ignore[override]
        """Write ``config.json`` and ``model.safetensors`` to ``save_directory``.

        Files are written to a temporary folder beside the target and moved in one by one with
        ``os.replace``, so an interrupted save never leaves a truncated file under the final name.
        """
        target = Path(save_directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}.", dir=target.parent))
        try:
            super().save_pretrained(tmp, config=dataclasses.asdict(self.config), **kwargs)
            (tmp / "README.md").unlink(missing_ok=True)  # the hub mixin's generic model card: noise here
            target.mkdir(parents=True, exist_ok=True)
            # Weights first, config last: a folder with a config always has its matching weights.
            names = sorted(os.listdir(tmp), key=lambda n: n == CONFIG_NAME)
            for name in names:
                os.chmod(tmp / name, 0o666 & ~_umask())  # mkdtemp and safetensors create private files
                os.replace(tmp / name, target / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _save_pretrained(self, save_directory: Path) -> None:
        """Write the weights (minus external ones), storing tensors shared by several names once."""
        from safetensors.torch import save_file

        state, seen = {}, set()
        for name, tensor in self.state_dict().items():
            if name.startswith(self.external_weight_prefixes):
                continue
            key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
            if tensor.numel() and key in seen:
                continue  # a tied alias: load_weights accepts any one name of a shared tensor
            seen.add(key)
            state[name] = tensor.detach().contiguous().cpu()
        save_file(state, str(Path(save_directory) / WEIGHTS_NAME), metadata={"format": "pt"})

    @classmethod
    def read_config(cls, directory: str | os.PathLike) -> Any:
        """Read and validate ``directory/config.json``; returns an instance of ``config_class``."""
        directory = Path(directory)
        if not directory.exists():
            raise CheckpointError(f"Model folder not found: {directory}. Pass the folder that holds "
                                  f"{CONFIG_NAME} and {WEIGHTS_NAME}.")
        if not directory.is_dir():
            raise CheckpointError(f"{directory} is a file, not a model folder. Models are folders with "
                                  f"{CONFIG_NAME} and {WEIGHTS_NAME}; convert other checkpoints first "
                                  f"with `hdvila convert`.")
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise CheckpointError(f"{config_path} is missing: {directory} is not a saved model folder.")
        try:
            raw = json.loads(config_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{config_path} is not valid JSON ({e}); the model folder is damaged.") from None
        if not isinstance(raw, dict):
            raise CheckpointError(f"{config_path} must hold a JSON object; the model folder is damaged.")
        found = raw.get("model_type")
        if found != cls.model_type():
            raise CheckpointError(f"{directory} holds a model of type {found!r}, but {cls.__name__} needs "
                                  f"{cls.model_type()!r}. Pass a folder saved by {cls.__name__}.")
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        unknown = sorted(set(raw) - fields)
        if unknown:
            raise CheckpointError(f"{config_path} has settings {unknown} that {cls.__name__} does not know; "
                                  f"it was written by a different version or model.")
        try:
            return cls.config_class(**raw)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{config_path} is not a valid {cls.config_class.__name__}: {e}") from None

    @classmethod
    def from_pretrained(cls: type[T], pretrained_model_name_or_path: str | os.PathLike,  # type: ignore[override]
                        *, map_location: str | torch.device = "cpu", **kwargs: Any) -> T:
        """Load a model folder written by :meth:`save_pretrained` (local paths only).

        Raises :class:`CheckpointError` for a missing folder or file, another model type, or weights
        whose names or shapes do not match the config.
        """
        directory = Path(pretrained_model_name_or_path)
        config = cls.read_config(directory)
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{weights} is missing: the model folder has a config but no weights.")
        model = cls(config, **kwargs)
        load_weights(model, weights, map_location=map_location, allow_missing=model.external_weight_prefixes)
        model.eval()
        return model


def load_weights(model: torch.nn.Module, path: str | os.PathLike, map_location: str | torch.device = "cpu",
                 allow_missing: tuple[str, ...] = ()) -> None:
    """Load a safetensors file into ``model`` strictly, with a readable report on any mismatch.

    Tensors that the model shares (tied weights) may be stored once; ``allow_missing`` lists key
    prefixes the model may lack in the file (e.g. frozen parts loaded from elsewhere).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}). The download or copy "
                              f"may be truncated; save the model again.") from None
    own = model.state_dict()
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and own[k].shape != v.shape]
    unexpected = sorted(k for k in state if k not in own)
    # Tied tensors are saved under one name; any alias of a stored tensor counts as present.
    by_storage: dict[int, list[str]] = {}
    for k, v in own.items():
        by_storage.setdefault(v.untyped_storage().data_ptr() if v.numel() else id(v), []).append(k)
    missing = []
    for names in by_storage.values():
        if not any(n in state for n in names):
            missing.extend(n for n in names if not n.startswith(allow_missing))
    if mismatched or unexpected or missing:
        parts = []
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es): " + "; ".join(mismatched[:5]))
        if missing:
            parts.append(f"{len(missing)} missing key(s): " + ", ".join(sorted(missing)[:5]))
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): " + ", ".join(unexpected[:5]))
        raise CheckpointError(f"{path} does not match {type(model).__name__} as configured: " + "; ".join(parts)
                              + ". Check that config.json belongs to these weights.")
    model.load_state_dict(state, strict=False)


def export_lean(model_dir: str | os.PathLike, out_dir: str | os.PathLike, dtype: torch.dtype = torch.float16) -> Path:
    """Copy a saved model folder with its floating-point weights stored as ``dtype`` (for bundling:
    half the bytes). BatchNorm running statistics stay fp32; :func:`load_weights` casts everything
    back to the model's fp32 parameters. Files are written beside ``out_dir`` and moved in, weights
    first and config last, so an interrupted export never leaves a config without its weights."""
    from safetensors.torch import load_file, save_file

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (model_dir / name).is_file():
            raise CheckpointError(f"{model_dir / name} is missing: {model_dir} is not a saved model folder.")
    state = load_file(str(model_dir / WEIGHTS_NAME))
    lean = {k: (v.to(dtype) if v.is_floating_point() and "running_" not in k else v) for k, v in state.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}.", dir=out_dir.parent))
    try:
        save_file(lean, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        shutil.copyfile(model_dir / CONFIG_NAME, tmp / CONFIG_NAME)
        for name in (WEIGHTS_NAME, CONFIG_NAME):
            os.chmod(tmp / name, 0o666 & ~_umask())
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
