"""Convert the released ``hdvila_stage2.pt`` (or any state dict with its key names) to a model folder.

Our module names equal the official ones, so the key mapping is the identity; conversion unwraps the
file, casts floating tensors to float32, checks every key and shape against the target config,
reports what does not match, and writes ``config.json`` + ``model.safetensors``. Used by
``hdvila convert hdvila SRC OUT_DIR``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hdvila.configuration_hdvila import HDVILAConfig
from hdvila.errors import CheckpointError
from hdvila.modeling_hdvila import HDVILAModel
from hdvila.modeling_utils import (
    StateDictDiff,
    UnsafeCheckpointError,
    compare_state_dict,
    safe_torch_load,
    unwrap_state_dict,
)

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
    """Read a checkpoint with :func:`~hdvila.modeling_utils.safe_torch_load` and return its flat state dict.

    Accepts a flat ``{name: tensor}`` dict, one wrapped under ``state_dict``/``model``/``module``/...,
    and names prefixed with ``module.`` (DataParallel). Nothing in the file is executed. Raises
    :class:`CheckpointError` for anything else (a file of pickled objects, a truncated download, an
    HTML page saved as ``.pt``, a file without tensors).
    """
    path = Path(src)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; pass the .pt file (e.g. hdvila_stage2.pt).")
    try:
        obj = safe_torch_load(path)
    except UnsafeCheckpointError as e:
        raise CheckpointError(f"{path} is not a plain PyTorch state dict: it asks for {e.global_name}, so it holds "
                              f"pickled Python objects (such as a whole network), not only tensors; nothing in it "
                              f"was run. HD-VILA expects the released hdvila_stage2.pt; StyleGAN2 files go through "
                              f"`hdvila convert stylegan2`.") from None
    except CheckpointError as e:
        raise CheckpointError(f"{e} HD-VILA expects the released hdvila_stage2.pt.") from None
    state = unwrap_state_dict(obj, _WRAPPER_KEYS)
    if state is None:
        what = f"a {type(obj).__name__}" if not isinstance(obj, dict) else f"no tensors (keys: {list(obj)[:8]})"
        raise CheckpointError(f"{path} holds {what}, not a state dict of named tensors; it is not a model "
                              f"checkpoint. HD-VILA expects the released hdvila_stage2.pt.")
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
    diff = compare_state_dict(expected, state)
    report = ConversionReport(missing=diff.missing, unexpected=diff.unexpected, mismatched=diff.mismatched)
    matching = len(expected) - len(report.missing) - len(report.mismatched)
    if matching < len(expected) / 2:
        raise CheckpointError(
            f"{source} does not look like an HD-VILA checkpoint for this configuration: only {matching} of "
            f"{len(expected)} expected tensors match by name and shape (file keys start with "
            f"{sorted(state)[:3]}). Check the file and --preset.")
    if strict and (report.missing or report.mismatched):
        misfit = StateDictDiff(report.missing, [], report.mismatched)  # unexpected keys are ignored anyway
        raise CheckpointError(f"{source} does not fit the model as configured ({misfit.summary(8)}); nothing was "
                              f"written. Check --preset, or pass --non-strict (strict=False) to convert anyway: the "
                              f"missing and mismatched tensors then keep their initialisation.")

    converted: dict[str, torch.Tensor] = {}
    bad = diff.mismatched_names
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
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out} exists and is a file; pass a folder to write the model into.")
    state = load_official_state_dict(src)
    stage = detect_stage(state) if stage is None else stage
    config = HDVILAConfig.preset(preset) if config is None else config
    if config.stage != stage:
        config = dataclasses.replace(config, stage=stage)
    model, report = convert_state_dict(state, config, strict=strict, source=str(src))
    model.save_pretrained(out)
    if verbose:
        print(f"{src} -> {out_dir} (stage {stage})\n{report.summary()}")
    return report
