"""Convert the released ``hdvila_stage2.pt`` (or any state dict with its key names) to a model folder.

Our module names equal the official ones, so the key mapping is the identity; conversion unwraps the
file, casts floating tensors to float32, checks every key and shape against the target config,
reports what does not match, and writes ``config.json`` + ``model.safetensors``. Used by
``hdvila convert hdvila SRC OUT_DIR``.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hdvila.configuration_hdvila import HDVILAConfig
from hdvila.errors import CheckpointError
from hdvila.modeling_hdvila import HDVILAModel

_WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict", "net")
_SHARED_BIAS = ("transformer.cls.predictions.bias", "transformer.cls.predictions.decoder.bias")
_STAGE2_MARKERS = ("transformer.cls.", "transformer.bert.visual_embeddings.", "transformer.bert.pooler2.")


@dataclass
class ConversionReport:
    """What a conversion found; lists hold key names."""

    loaded: int = 0                                          # tensors copied into the model
    cast_to_fp32: int = 0                                    # of those, how many were stored in 16-bit
    missing: list[str] = field(default_factory=list)         # model keys the file lacks
    unexpected: list[str] = field(default_factory=list)      # file keys the model lacks (ignored)
    mismatched: list[str] = field(default_factory=list)      # "key: file shape vs model shape"

    def summary(self) -> str:
        lines = [f"loaded {self.loaded} tensors ({self.cast_to_fp32} cast from 16-bit to float32)"]
        for title, keys in (("missing (kept at initialisation)", self.missing),
                            ("unexpected (ignored)", self.unexpected), ("shape mismatches", self.mismatched)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")
                lines.append(f"{len(keys)} {title}: {shown}")
        return "\n".join(lines)


def load_official_state_dict(src: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and return its flat state dict.

    Accepts a flat ``{name: tensor}`` dict, one wrapped under ``state_dict``/``model``/``module``, and
    names prefixed with ``module.`` (DataParallel). Raises :class:`CheckpointError` for anything else.
    """
    path = Path(src)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found." if not path.exists()
                              else f"{path} is a folder; pass the .pt file (e.g. hdvila_stage2.pt).")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); download it again.")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} is not a plain PyTorch state dict: it does not load as tensors only (it holds "
                              f"pickled Python objects such as a network, or is not a PyTorch file at all). HD-VILA "
                              f"expects the released hdvila_stage2.pt; StyleGAN2 files go through "
                              f"`hdvila convert stylegan2`.") from None
    except (RuntimeError, EOFError, ValueError, AttributeError, TypeError, OSError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({first}); it may be truncated or of "
                              f"another format. HD-VILA expects the released hdvila_stage2.pt.") from None
    for _ in range(3):  # unwrap {"model": {...}} style containers, possibly nested
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict of named tensors.")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{path} holds no tensors (keys: {list(obj)[:8]}); it is not a model checkpoint.")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def convert_state_dict(state: dict[str, torch.Tensor], config: HDVILAConfig, *, strict: bool = True,
                       source: str = "checkpoint") -> tuple[HDVILAModel, ConversionReport]:
    """Build an :class:`HDVILAModel` for ``config`` holding the tensors of ``state`` (float32).

    With ``strict`` (default) missing keys or shape mismatches raise :class:`CheckpointError`; otherwise
    those parameters keep their initialisation. Unexpected keys are always reported and ignored (a
    stage-2 file loads into a stage-1 model this way). A file that shares fewer than half of the model's
    keys is refused as not an HD-VILA checkpoint.
    """
    with torch.device("meta"):
        skeleton = HDVILAModel(config)
    expected = skeleton.state_dict()
    report = ConversionReport()
    report.unexpected = sorted(k for k in state if k not in expected)
    report.missing = sorted(k for k in expected if k not in state)
    report.mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                         for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    matching = len(expected) - len(report.missing) - len(report.mismatched)
    if matching < len(expected) / 2:
        raise CheckpointError(
            f"{source} does not look like an HD-VILA checkpoint for this configuration: only {matching} of "
            f"{len(expected)} expected tensors match by name and shape (file keys start with "
            f"{sorted(state)[:3]}). Check the file and --preset.")
    if strict and (report.missing or report.mismatched):
        raise CheckpointError(f"{source} does not fit the model:\n{report.summary()}")

    converted: dict[str, torch.Tensor] = {}
    bad = {m.split(":")[0] for m in report.mismatched}
    for k in expected:
        if k in state and k not in bad:
            t = state[k]
            if t.is_floating_point() and t.dtype != torch.float32:
                report.cast_to_fp32 += 1
            converted[k] = t.float() if t.is_floating_point() else t.clone()
    report.loaded = len(converted)

    if not report.missing and not report.mismatched:
        model = skeleton
        model.load_state_dict(converted, strict=True, assign=True)
    else:  # some parameters stay at their initialisation: build them for real
        model = HDVILAModel(config)
        model.load_state_dict(converted, strict=False)
    if config.stage == 2:
        # The MLM bias is one tensor under two names; the file may store it once or twice.
        head = model.transformer.cls.predictions
        file_bias = next((converted[k] for k in _SHARED_BIAS if k in converted), None)
        if all(k in converted for k in _SHARED_BIAS) and not torch.equal(converted[_SHARED_BIAS[0]],
                                                                          converted[_SHARED_BIAS[1]]):
            report.mismatched.append(f"{_SHARED_BIAS[0]} and {_SHARED_BIAS[1]} differ in the file; the first is used")
        if file_bias is not None:
            head.bias = torch.nn.Parameter(file_bias.clone(), requires_grad=head.bias.requires_grad)
        head.decoder.bias = head.bias
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise CheckpointError(f"internal error: tensors left uninitialised after conversion: {leftover[:5]}")
    model.eval()
    return model, report


def detect_stage(state: dict[str, torch.Tensor]) -> int:
    """2 when the state dict has multimodal/MLM weights, else 1."""
    return 2 if any(k.startswith(_STAGE2_MARKERS) for k in state) else 1


def convert_hdvila_checkpoint(src: str | os.PathLike, out_dir: str | os.PathLike, preset: str = "large", *,
                              config: HDVILAConfig | None = None, stage: int | None = None, strict: bool = True,
                              verbose: bool = True) -> ConversionReport:
    """Convert an official checkpoint ``src`` into the model folder ``out_dir``.

    The architecture is ``HDVILAConfig.preset(preset)`` (or ``config``) with ``stage`` taken from the
    file unless given. Prints (with ``verbose``) and returns the :class:`ConversionReport`. Nothing is
    written when conversion fails; the folder's files are replaced atomically when it succeeds.
    """
    state = load_official_state_dict(src)
    stage = detect_stage(state) if stage is None else stage
    config = HDVILAConfig.preset(preset) if config is None else config
    if config.stage != stage:
        config = dataclasses.replace(config, stage=stage)
    model, report = convert_state_dict(state, config, strict=strict, source=str(src))
    if verbose:
        print(f"{src} -> {out_dir} (stage {stage})\n{report.summary()}")
    model.save_pretrained(out_dir)
    return report
