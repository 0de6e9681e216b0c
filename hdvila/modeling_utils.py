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
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, TypeVar

import torch
from huggingface_hub import PyTorchModelHubMixin

from hdvila.atomic import atomic_dir
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

        Files are written to a temporary folder beside the target and moved in with ``os.replace``
        (weights first, config last; :func:`hdvila.atomic.atomic_dir`), so an interrupted save never
        leaves a truncated file under the final name. Other entries of the folder are kept.
        """
        with atomic_dir(save_directory, merge=True) as tmp:
            super().save_pretrained(tmp, config=dataclasses.asdict(self.config), **kwargs)
            (tmp / "README.md").unlink(missing_ok=True)  # the hub mixin's generic model card: noise here

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
    # Tied tensors are saved under one name; any alias of a stored tensor counts as present.
    by_storage: dict[int, list[str]] = {}
    for k, v in own.items():
        by_storage.setdefault(v.untyped_storage().data_ptr() if v.numel() else id(v), []).append(k)
    stored_alias = {n for names in by_storage.values() if any(a in state for a in names) for n in names}
    diff = compare_state_dict(own, state, optional=lambda k: k in stored_alias or k.startswith(allow_missing))
    if not diff.ok:
        raise CheckpointError(f"{path} does not match {type(model).__name__} as configured: {diff.summary()}. "
                              f"Check that config.json belongs to these weights.")
    model.load_state_dict(state, strict=False)


def tensors_digest(tensors, length: int = 16) -> str:
    """``length`` hex digits of a SHA-256 over the bytes of ``tensors`` in order, floating-point ones
    as float16 (so a model and its fp16 export agree). What a model records about another it was
    trained with (a generator, a guide, an encoder), to refuse a different one later."""
    import hashlib

    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu", torch.float16 if t.is_floating_point() else t.dtype)
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:length]


def export_lean(model_dir: str | os.PathLike, out_dir: str | os.PathLike, dtype: torch.dtype = torch.float16) -> Path:
    """Copy a saved model folder with its floating-point weights stored as ``dtype`` (for bundling:
    half the bytes). BatchNorm running statistics stay fp32; :func:`load_weights` casts everything
    back to the model's fp32 parameters. Written through :func:`hdvila.atomic.atomic_dir` (weights
    first, config last), so an interrupted export never leaves a config without its weights."""
    from safetensors.torch import load_file, save_file

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (model_dir / name).is_file():
            raise CheckpointError(f"{model_dir / name} is missing: {model_dir} is not a saved model folder.")
    state = load_file(str(model_dir / WEIGHTS_NAME))
    lean = {k: (v.to(dtype) if v.is_floating_point() and "running_" not in k else v) for k, v in state.items()}
    with atomic_dir(out_dir, merge=True) as tmp:
        save_file(lean, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        shutil.copyfile(model_dir / CONFIG_NAME, tmp / CONFIG_NAME)
    return out_dir


@dataclasses.dataclass
class StateDictDiff:
    """How a state dict differs from what a model expects (names only, shapes in ``mismatched``)."""

    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]  # "name: file (shape) vs model (shape)"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def mismatched_names(self) -> set[str]:
        return {m.split(":", 1)[0] for m in self.mismatched}

    def summary(self, limit: int = 5) -> str:
        """One line: counts and the first ``limit`` names of each kind of difference."""
        parts = []
        for title, keys in (("shape mismatch(es)", self.mismatched), ("missing key(s)", self.missing),
                            ("unexpected key(s)", self.unexpected)):
            if keys:
                more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
                parts.append(f"{len(keys)} {title}: " + ("; " if title.startswith("shape") else ", ").join(keys[:limit])
                             + more)
        return "; ".join(parts) if parts else "no differences"


def compare_state_dict(expected: Mapping[str, Any], found: Mapping[str, Any], *,
                       optional: Callable[[str], bool] = lambda name: False) -> StateDictDiff:
    """Compare ``found`` (e.g. a file's tensors) with ``expected`` (e.g. ``model.state_dict()``).

    Values need only a ``.shape``. Keys of ``expected`` for which ``optional(name)`` is true may be
    absent from ``found`` without counting as missing. Lists are sorted, so reports are stable.
    """
    missing = sorted(k for k in expected if k not in found and not optional(k))
    unexpected = sorted(k for k in found if k not in expected)
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
                  for k, v in sorted(found.items()) if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    return StateDictDiff(missing, unexpected, mismatched)


class UnsafeCheckpointError(CheckpointError):
    """``torch.load(weights_only=True)`` refused a global: the file holds pickled objects, not just
    tensors. ``global_name`` is what it asked for (e.g. ``torch_utils.persistence...``), so callers
    can say what kind of file it is."""

    def __init__(self, message: str, global_name: str):
        super().__init__(message)
        self.global_name = global_name


def safe_torch_load(path: str | os.PathLike, *, allowed_globals: tuple[type, ...] = (), what: str = "checkpoint"
                    ) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with every failure a :class:`CheckpointError`.

    Nothing in the file is executed: only tensors, containers and ``allowed_globals`` are rebuilt.
    A missing, empty, truncated or foreign file (an HTML error page saved as ``.pt`` makes
    ``torch.load`` raise ``KeyError``, ``IndexError`` or ``struct.error``) is "not a readable
    PyTorch {what}"; a file that needs other Python objects raises :class:`UnsafeCheckpointError`.
    """
    import pickle
    import re
    import warnings

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} file not found." if not path.exists()
                              else f"{path} is a folder, not a {what} file.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); download or copy it again.")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore", UserWarning)
            with torch.serialization.safe_globals(list(allowed_globals)):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        if m is None:  # e.g. "Unsupported operand 60": not a pickle at all (an HTML page, random bytes)
            raise CheckpointError(f"{path} is not a readable PyTorch {what}: its bytes are not a PyTorch pickle; it "
                                  f"may be truncated or of another format (an HTML error page saved by a failed "
                                  f"download looks like this).") from None
        asked = re.sub(r"^(posix|nt)\.", "os.", m.group(1))
        raise UnsafeCheckpointError(f"refusing to load {path}: it asks for {asked}, so it holds pickled Python "
                                    f"objects, not only tensors. Nothing in it was run.", asked) from None
    except Exception as e:  # torch.load on a foreign file raises almost anything (KeyError, struct.error, ...)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch {what} ({type(e).__name__}: {first}); it may be "
                              f"truncated or of another format.") from None


def unwrap_state_dict(obj: Any, wrapper_keys: tuple[str, ...] = ("state_dict", "model", "module"),
                      prefix: str = "module.") -> dict[str, torch.Tensor] | None:
    """The flat ``{name: tensor}`` dict inside ``obj``, or None when there is none.

    Unwraps up to three levels of ``{"state_dict": {...}}``-style containers (first of
    ``wrapper_keys`` present) and strips a ``prefix`` every name carries (DataParallel's
    ``module.``). Non-tensor entries of the flat dict are dropped.
    """
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in wrapper_keys if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict):
        return None
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        return None
    if prefix and all(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state
