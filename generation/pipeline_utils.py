"""The pipeline base: components registered by name, saved and loaded as one folder, diffusers-style.

A pipeline (``SRPipeline``, ``EditPipeline``) takes its components in ``__init__`` and registers
them; ``__call__(..., output_type='pil'|'np'|'pt', return_dict=True)`` checks its inputs
(``check_inputs``), runs the algorithm and returns a :class:`PipelineOutput` dataclass with
``.images`` and the pipeline's other fields (``return_dict=False``: the same fields as a tuple, in
their order, by :meth:`PipelineOutput.to_tuple`; ``[0]`` is the images). Both pipelines are
deterministic, so their calls take no random ``generator=`` argument: in this package ``generator``
is the StyleGAN2 component (``pipe.generator``). A saved pipeline is a folder::

    pipeline_index.json      {"_class_name": "generation.superres.pipeline_sr.SRPipeline",
                              "sr_model": "generation.superres.modeling_sr.SRModel", ...,
                              "hdvila": null}        (null: an optional component left out)
    sr_model/  generator/  hdvila/  processor/       one folder per component, written by its own
                                                     save_pretrained

Why not ``diffusers.DiffusionPipeline`` itself: its loader only saves and loads classes of the
libraries it knows (diffusers, transformers, onnxruntime, ...; ``LOADABLE_CLASSES``). Given this
package's models it logs "... of type <class 'generation.stylegan2.networks.Generator'> cannot be
saved", writes ``[null, null]`` for them in ``model_index.json``, and ``from_pretrained`` then fails
with "expected ['generator'], but only set() were passed"; custom classes load only as remote code.
So this base keeps its surface (``register_modules``, ``save_pretrained``, ``from_pretrained`` with
component overrides, ``.to``, ``.device``, ``progress_bar``, ``set_progress_bar_config``, output
dataclasses) and loads components from this package only: a class named in the index must live in
a module under ``hdvila.`` or ``generation.``, so a folder from elsewhere cannot make us import
arbitrary code.

Image outputs (:meth:`Pipeline.postprocess`) follow diffusers for 'pil' and 'np', and the project's
tensor convention for 'pt': 'pil' a list of RGB ``PIL.Image``; 'np' float32 [N, H, W, 3] in [0, 1];
'pt' float [N, 3, H, W] in [-1, 1] (diffusers' 'pt' is [0, 1]; here every image tensor, the input of
:func:`hdvila.videoio.write_video` and :func:`hdvila.tensors.to_pil` included, is [-1, 1]).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TypeVar

import torch

from hdvila.atomic import atomic_dir
from hdvila.errors import CheckpointError, UserError

INDEX_NAME = "pipeline_index.json"
ALLOWED_MODULE_PREFIXES = ("hdvila.", "generation.")
OUTPUT_TYPES = ("pil", "np", "pt")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")

P = TypeVar("P", bound="Pipeline")


@dataclass
class PipelineOutput:
    """What a pipeline returns: ``images`` as the call's ``output_type`` (see the module docstring).
    Subclasses add fields (with defaults). ``return_dict=False`` returns :meth:`to_tuple`, never a
    tuple built by hand."""

    images: Any

    def to_tuple(self) -> tuple:
        """Every field, in declaration order (``images`` first, then the subclass's fields): what
        ``__call__(..., return_dict=False)`` returns."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))


def class_path(obj: Any) -> str:
    """``"module.Class"`` of ``obj``'s class, as the index records it."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def import_component_class(name: str, where: str = INDEX_NAME) -> type:
    """The class ``"module.Class"`` from a module of this package; anything else is refused with a
    :class:`~hdvila.errors.UserError`, before anything is imported."""
    if not isinstance(name, str) or not _DOTTED.match(name) or not name.startswith(ALLOWED_MODULE_PREFIXES):
        raise UserError(f"{where} names the class {name!r}; pipelines load only classes of this package "
                        f"(modules under {' or '.join(ALLOWED_MODULE_PREFIXES)}). Pass the component yourself "
                        f"as an override if you trust it.")
    module_name, _, cls_name = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise CheckpointError(f"{where} names {name}, but {module_name} cannot be imported ({e}); the folder was "
                              f"written by another version of this package.") from None
    cls = getattr(module, cls_name, None)
    if not inspect.isclass(cls) or not callable(getattr(cls, "from_pretrained", None)):
        raise CheckpointError(f"{where} names {name}, which is not a loadable class (no from_pretrained) in this "
                              f"version of the package.")
    return cls


class Pipeline:
    """Base of every pipeline. Subclasses call ``self.register_modules(name=component, ...)`` in
    ``__init__`` (None for an optional component left out), may override :meth:`check_components`
    (called after loading, to refuse components that do not fit together) and define
    ``check_inputs(...)``, called first in ``__call__``, raising :class:`~hdvila.errors.UserError`
    for bad arguments before any work is done."""

    def __init__(self) -> None:
        self._component_names: list[str] = []
        self._progress_bar_config: dict[str, Any] = {}

    # ---- components ---------------------------------------------------------------------------
    def register_modules(self, **components: Any) -> None:
        """Register components by name; each becomes an attribute (``pipe.generator``)."""
        for name, component in components.items():
            if name.startswith("_") or name in ("components", "device", "config"):
                raise ValueError(f"{name!r} cannot be a component name")
            if name not in self._component_names:
                self._component_names.append(name)
            setattr(self, name, component)

    @property
    def components(self) -> dict[str, Any]:
        """{name: component} in registration order (None for one left out)."""
        return {name: getattr(self, name) for name in self._component_names}

    def check_components(self) -> None:
        """Hook called by :meth:`from_pretrained` after loading (and overriding): raise a
        :class:`~hdvila.errors.UserError` if the components do not fit together."""

    def check_inputs(self, *args: Any, **kwargs: Any) -> None:
        """Convention: subclasses validate ``__call__``'s arguments here, raising a UserError. A flag
        (a bool such as ``EditPipeline``'s ``latents_given``) is keyword-only (``*, flag: bool``) and
        passed by name, ``check_inputs(..., latents_given=False)``, never as a bare positional
        ``True``/``False``."""

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={type(c).__name__ if c is not None else None}" for n, c in self.components.items())
        return f"{type(self).__name__}({parts})"

    # ---- devices ------------------------------------------------------------------------------
    def to(self: P, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> P:
        """Move every ``torch.nn.Module`` component to ``device`` (and ``dtype``); returns self."""
        for component in self.components.values():
            if isinstance(component, torch.nn.Module):
                component.to(device=device, dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        """The device of the first module component with parameters or buffers (CPU if none)."""
        for component in self.components.values():
            if isinstance(component, torch.nn.Module):
                t = next(component.parameters(), None)
                if t is None:
                    t = next(component.buffers(), None)
                if t is not None:
                    return t.device
        return torch.device("cpu")

    # ---- progress -----------------------------------------------------------------------------
    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """tqdm options for :meth:`progress_bar` (e.g. ``disable=True``, ``desc=...``)."""
        self._progress_bar_config = dict(kwargs)

    def progress_bar(self, iterable: Iterable | None = None, **kwargs: Any):
        """A tqdm bar over ``iterable`` (or with ``total=``), with the configured options."""
        from tqdm.auto import tqdm

        return tqdm(iterable, **{**self._progress_bar_config, **kwargs})

    # ---- outputs ------------------------------------------------------------------------------
    @staticmethod
    def postprocess(images: torch.Tensor, output_type: str = "pil"):
        """images [N, 3, H, W] in [-1, 1] (any device or float dtype) -> 'pil': list of N RGB images;
        'np': float32 array [N, H, W, 3] in [0, 1]; 'pt': float32 CPU tensor [N, 3, H, W] in [-1, 1]."""
        if output_type not in OUTPUT_TYPES:
            raise UserError(f"output_type must be one of {', '.join(map(repr, OUTPUT_TYPES))}, got {output_type!r}.")
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a tensor [N, 3, H, W], got "
                             f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
        images = images.detach().float().cpu().clamp(-1, 1)
        if output_type == "pt":
            return images
        unit = ((images + 1) / 2).permute(0, 2, 3, 1).contiguous()
        if output_type == "np":
            return unit.numpy()
        from PIL import Image

        from hdvila.tensors import unit_to_uint8

        arrays = unit_to_uint8(images).permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(a, mode="RGB") for a in arrays]

    # ---- files --------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        """Write the pipeline folder (see the module docstring) atomically: ``save_directory`` is
        replaced as a whole, the index written last. With ``dtype`` (e.g. ``torch.float16``, for
        bundling) every model component's floating-point weights are stored as ``dtype``
        (:func:`hdvila.modeling_utils.export_lean`; they load back as the model's fp32). Returns the folder."""
        index: dict[str, Any] = {"_class_name": class_path(self)}
        for name, component in self.components.items():
            if component is None:
                index[name] = None
                continue
            path = class_path(component)
            if not path.startswith(ALLOWED_MODULE_PREFIXES):
                raise UserError(f"component {name!r} is a {path}; a pipeline folder can hold only classes of this "
                                f"package (modules under {' or '.join(ALLOWED_MODULE_PREFIXES)}), which "
                                f"from_pretrained can load back.")
            if not callable(getattr(component, "save_pretrained", None)):
                raise TypeError(f"component {name!r} ({path}) has no save_pretrained method")
            index[name] = path
        with atomic_dir(save_directory, merge=False, last=(INDEX_NAME,)) as tmp:
            for name, component in self.components.items():
                if component is not None:
                    component.save_pretrained(tmp / name)
                    if dtype is not None and (tmp / name / "model.safetensors").is_file():
                        from hdvila.modeling_utils import export_lean

                        export_lean(tmp / name, tmp / name, dtype)
            (tmp / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        return Path(save_directory)

    @classmethod
    def read_index(cls, directory: str | os.PathLike) -> dict[str, Any]:
        """``directory/pipeline_index.json`` as a dict; a missing or damaged one raises a CheckpointError."""
        directory = Path(directory)
        if not directory.is_dir():
            raise CheckpointError(f"pipeline folder not found: {directory}" if not directory.exists() else
                                  f"{directory} is a file; a pipeline is a folder with {INDEX_NAME} and one "
                                  f"folder per component.")
        path = directory / INDEX_NAME
        if not path.is_file():
            hint = (" It holds a single model (config.json): load it with its model class, or pass it as a "
                    "component." if (directory / "config.json").is_file() else "")
            raise CheckpointError(f"{path} is missing: {directory} is not a saved pipeline folder (write one with "
                                  f"save_pretrained).{hint}")
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path} is not valid JSON ({e}); the pipeline folder is damaged.") from None
        if not isinstance(index, dict) or not all(isinstance(v, (str, type(None))) for v in index.values()):
            raise CheckpointError(f"{path} must map component names to class names (\"module.Class\" or null); "
                                  f"the pipeline folder is damaged.")
        return index

    @classmethod
    def from_pretrained(cls: type[P], directory: str | os.PathLike, **overrides: Any) -> P:
        """Load a folder written by :meth:`save_pretrained`. ``overrides`` replace components by name
        (e.g. ``generator=load_stylegan2("ffhq.pkl")``; their folders are not read). Called on this
        base class, it builds the pipeline class the index names. Every problem (missing folder or
        index, foreign or unknown class, missing component folder, components that do not fit)
        raises a :class:`~hdvila.errors.UserError` saying what to do."""
        directory = Path(directory)
        index = cls.read_index(directory)
        where = str(directory / INDEX_NAME)
        pipeline_cls = cls
        named = index.pop("_class_name", None)
        if cls is Pipeline:
            if named is None:
                raise CheckpointError(f"{where} does not name its pipeline class; load it with that class.")
            pipeline_cls = import_component_class(named, where)
        elif named is not None and named.rpartition(".")[2] != cls.__name__:
            raise CheckpointError(f"{directory} holds a {named.rpartition('.')[2]}, not a {cls.__name__}; load it "
                                  f"with that class.")
        index = {k: v for k, v in index.items() if not k.startswith("_")}
        params = inspect.signature(pipeline_cls.__init__).parameters
        unknown = sorted(set(overrides) - set(index) - set(params))
        if unknown:
            raise UserError(f"{pipeline_cls.__name__} has no component(s) {unknown}; its components are "
                            f"{sorted(index)}.")
        components: dict[str, Any] = {}
        for name, class_name in index.items():
            if name in overrides:
                components[name] = overrides[name]
            elif class_name is None:
                components[name] = None
            else:
                components[name] = _load_component(directory, name, class_name, where)
        for name, value in overrides.items():
            components.setdefault(name, value)
        missing = [n for n, p in params.items() if n != "self" and p.default is inspect.Parameter.empty
                   and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in components]
        if missing:
            raise CheckpointError(f"{where} lists no component {missing} that {pipeline_cls.__name__} needs; the "
                                  f"folder is incomplete (pass them as overrides, or save the pipeline again).")
        pipe = pipeline_cls(**components)
        pipe.check_components()
        return pipe


def _load_component(directory: Path, name: str, class_name: str, where: str) -> Any:
    """One component from ``directory/name`` with its class's ``from_pretrained``."""
    component_cls = import_component_class(class_name, where)
    folder = directory / name
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is missing: {where} lists the component {name!r} ({class_name}) but the "
                              f"folder has no {name}/ subfolder; the pipeline folder is incomplete.")
    try:
        return component_cls.from_pretrained(folder)
    except UserError as e:
        raise CheckpointError(f"component {name!r} of {directory}: {e}") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"component {name!r} of {directory} cannot be loaded from {folder} "
                              f"({type(e).__name__}: {str(e)[:200]}); the folder is damaged.") from None


__all__ = ["ALLOWED_MODULE_PREFIXES", "INDEX_NAME", "OUTPUT_TYPES", "Pipeline", "PipelineOutput", "class_path",
           "import_component_class"]


# ---- the input policy of the image pipelines ---------------------------------------------------------
def image_to_tensor(image: Any, label: str) -> torch.Tensor:
    """One image (PIL, path, bytes, uint8 HWC array, or a [3, H, W] / [1, 3, H, W] tensor in [-1, 1])
    -> float [3, H, W] in [-1, 1]. Files go through :func:`hdvila.imageio.load_image` (any mode to
    RGB, the 40 MP limit, clear errors); a tensor of another shape, or with NaN or infinite values,
    is refused."""
    from hdvila.errors import InputFileError
    from hdvila.imageio import load_image
    from hdvila.tensors import pil_to_tensor

    if isinstance(image, torch.Tensor):
        t = image[0] if image.ndim == 4 and image.shape[0] == 1 else image
        if t.ndim != 3 or t.shape[0] != 3:
            raise InputFileError(f"{label}: a tensor image must be [3, H, W] in [-1, 1], got {tuple(image.shape)}.")
        if not torch.isfinite(t).all():
            raise InputFileError(f"{label}: the tensor has NaN or infinite values.")
        return t.float()
    return pil_to_tensor(load_image(image, name=label))


#: The longest side an input may have against its shortest: a centred square keeps at least a quarter
#: of it. A longer strip (e.g. 4000x8 px) is refused: its crop would be a sliver of what the user sent.
MAX_ASPECT = 4.0


def fit_to_square(t: torch.Tensor, size: int, label: str, target: str, *, min_side: int = 1,
                  task: str = "process") -> tuple[torch.Tensor, str]:
    """The one input policy of every image command (edit, upscale, invert; the web UI too):
    [3, H, W] in [-1, 1] -> ([3, size, size], note), centre-cropped to a square and resized
    (antialiased bicubic), never stretched; the note (empty when nothing was done) says what was done
    and why: "LABEL: WxH px is not TARGET; centre-cropped to SxS and resized to RxR." ``target``
    names the expected size, e.g. "the model's 16x16 input". An image with a side under ``min_side``
    or longer than :data:`MAX_ASPECT` times its width is refused with an
    :class:`~hdvila.errors.InputFileError` naming ``task`` ("edit", "upscale", ...)."""
    import torch.nn.functional as F

    from hdvila.errors import InputFileError

    h, w = t.shape[-2:]
    if min(h, w) < min_side:
        raise InputFileError(f"{label} is {w}x{h} px: too small to {task} (at least {min_side} px a side).")
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise InputFileError(f"{label} is {w}x{h} px, a strip of {max(h, w) / min(h, w):.0f}:1: its centred square "
                             f"would keep {100 * min(h, w) / max(h, w):.1f}% of it. Crop it to the part you want to "
                             f"{task} (at most {MAX_ASPECT:g}:1) and try again.")
    if (h, w) == (size, size):
        return t.clamp(-1, 1), ""
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    t = t[:, top:top + side, left:left + side]
    t = F.interpolate(t[None], size=(size, size), mode="bicubic", antialias=True, align_corners=False)[0]
    note = (f"{label}: {w}x{h} px is not {target}; " + (f"centre-cropped to {side}x{side} and " if h != w else "")
            + f"resized to {size}x{size}.")
    return t.clamp(-1, 1), note
