"""StyleGAN2 checkpoints users bring -> our model folders (``config.json`` + ``model.safetensors``).

Sources, recognised by content (not by file extension):

* **NVlabs network pickles** (StyleGAN2-ADA ``.pkl``, also the StyleGAN2 networks of the StyleGAN3
  repository), read by :mod:`generation.stylegan2.legacy` without running anything in them. Our
  networks use NVlabs' parameter names and shapes, so weights are copied unchanged and the
  constructor settings stored in the pickle become our config.
* **rosinality checkpoints** (``stylegan2-pytorch`` ``.pt``: ``{'g_ema': state_dict, 'latent_avg',
  'g', 'd', ...}`` or a bare generator state dict), read with ``torch.load(weights_only=True)``.
  Both codebases store raw weights and apply the equalised-learning-rate gains at run time with the
  same conventions (dense layers: weight * lr_mul / sqrt(fan_in), bias * lr_mul; modulation/affine
  bias stored including its +1 init; modulated convs demodulated; up-sampling convs stored in the same
  orientation, as both ports flip the TF weights), so values are copied and only reshaped
  (``[1,out,in,k,k]`` -> ``[out,in,k,k]``, noise gain ``[1]`` -> ``[]``, ``[1,3,1,1]`` -> ``[3]``...).
  One numerical difference is inherent: rosinality multiplies the weight by 1/sqrt(fan_in) *before*
  demodulation, so its 1e-8 epsilon is effectively fan_in times larger; outputs differ by ~1e-8
  relative, far below fp32 noise of the network itself.
* **model folders** written by this module (or by ``save_pretrained``).

Conditional models (c_dim > 0), StyleGAN3 generators and mmagic checkpoints are refused with a
message that says so.
"""

from __future__ import annotations

import argparse  # only for argparse.Namespace, which rosinality checkpoints store
import json
import math
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hdvila.errors import CheckpointError
from hdvila.modeling_utils import (
    CONFIG_NAME,
    UnsafeCheckpointError,
    compare_state_dict,
    safe_torch_load,
    unwrap_state_dict,
)

from .legacy import NetworkRecord, read_network_pickle, sniff_format
from .projector import w_statistics

__all__ = ["convert_stylegan2", "load_stylegan2", "load_stylegan2_with_info", "ConversionInfo",
           "generator_config_from_nvlabs", "discriminator_config_from_nvlabs",
           "rosinality_generator_to_nvlabs", "rosinality_discriminator_to_nvlabs"]

WHICH = ("G_ema", "G", "D")
_FILTER = [1, 3, 3, 1]


@dataclass
class ConversionInfo:
    """What was read, for the summary the CLI prints."""

    source: str
    source_format: str  # 'model folder' | 'NVlabs pickle' | 'rosinality checkpoint'
    which: str
    notes: list[str] = field(default_factory=list)


def _networks():
    from generation.stylegan2 import Discriminator, DiscriminatorConfig, Generator, StyleGAN2Config

    return Generator, StyleGAN2Config, Discriminator, DiscriminatorConfig


def _check_which(which: str) -> None:
    if which not in WHICH:
        raise CheckpointError(f"which={which!r} is not one of {', '.join(WHICH)}.")


def _fmt_keys(keys, limit: int = 6) -> str:
    keys = list(keys)
    return ", ".join(map(str, keys[:limit])) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


# ----------------------------------------------------------------------------------------------
# NVlabs init_kwargs -> our configs.


_SG3_KWARGS = ("magnitude_ema_beta", "conv_kernel", "use_radial_filters", "first_cutoff", "first_stopband",
               "last_stopband_rel", "margin_size", "output_scale", "num_critical", "filter_size",
               "lrelu_upsampling")
_SG3_LAYER = re.compile(r"^synthesis\.L\d+_\d+_\d+$")


def _stylegan3_evidence(rec: NetworkRecord) -> str | None:
    kw = dict(rec.init_kwargs)
    kw.update(kw.get("synthesis_kwargs") or {})
    found = [k for k in _SG3_KWARGS if k in kw]
    if found:
        return f"settings {', '.join(found)}"
    if "SynthesisInput" in rec.module_classes.values() or rec.source_mentions("class SynthesisInput"):
        return "a SynthesisInput module"
    layers = [p for p in rec.module_classes if _SG3_LAYER.match(p)]
    if layers:
        return f"layers {', '.join(layers[:3])}"
    return None


def _refuse_conditional(c_dim: Any, what: str, source: str) -> None:
    if c_dim:
        raise CheckpointError(f"{source}: {what} is conditional (c_dim={c_dim}: it takes class labels); "
                              f"conditional models are not supported. Convert an unconditional StyleGAN2 "
                              f"model (c_dim=0).")


def _require(kw: dict, name: str, what: str, source: str) -> Any:
    if name not in kw:
        raise CheckpointError(f"{source}: {what} does not record its {name} setting; it is not an NVlabs "
                              f"StyleGAN2 network pickle this converter understands.")
    return kw[name]


def _same_filter(f: Any) -> bool:
    return f is None or list(f) == _FILTER


def generator_config_from_nvlabs(rec: NetworkRecord, source: str = "the pickle") -> tuple[Any, list[str]]:
    """Map a Generator's NVlabs constructor settings to :class:`StyleGAN2Config`.

    Returns the config and notes (settings that were ignored). Raises :class:`CheckpointError` for
    StyleGAN3, conditional generators and settings our Generator does not implement.
    """
    what = f"{rec.key!r}"
    evidence = _stylegan3_evidence(rec)
    if evidence:
        raise CheckpointError(f"{source}: {what} is a StyleGAN3 generator ({evidence}); StyleGAN3 is not "
                              f"supported. Only StyleGAN2 and StyleGAN2-ADA generators can be converted.")
    if rec.class_name == "Discriminator":
        raise CheckpointError(f"{source}: {what} holds a Discriminator where a generator is expected. "
                              f"Pass --which D (which='D') to convert the discriminator.")
    if rec.class_name != "Generator":
        raise CheckpointError(f"{source}: {what} holds a {rec.class_name}, not a StyleGAN2 Generator.")
    kw = dict(rec.init_kwargs)
    synthesis = dict(kw.pop("synthesis_kwargs", None) or {})
    mapping = dict(kw.pop("mapping_kwargs", None) or {})
    top = {k: kw.pop(k) for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels") if k in kw}
    synthesis.update(kw)  # StyleGAN3-repository StyleGAN2 generators keep synthesis settings at the top
    _refuse_conditional(top.get("c_dim", 0), what, source)
    z_dim, w_dim = _require(top, "z_dim", what, source), _require(top, "w_dim", what, source)
    notes: list[str] = []

    def unsupported(setting: str, value: Any) -> CheckpointError:
        return CheckpointError(f"{source}: {what} uses {setting}={value!r}, which our StyleGAN2 Generator "
                               f"does not implement.")

    for name in ("embed_features", "layer_features"):
        if mapping.get(name) not in (None, w_dim):
            raise unsupported(f"mapping_kwargs.{name}", mapping[name])
    if mapping.get("activation", "lrelu") != "lrelu":
        raise unsupported("mapping_kwargs.activation", mapping["activation"])
    if mapping.get("w_avg_beta", 0.995) is None:
        raise unsupported("mapping_kwargs.w_avg_beta", None)
    if not _same_filter(synthesis.get("resample_filter")):
        raise unsupported("resample_filter", synthesis["resample_filter"])
    if synthesis.get("use_noise", True) is not True:
        raise unsupported("use_noise", synthesis["use_noise"])
    if synthesis.get("activation", "lrelu") != "lrelu":
        raise unsupported("activation", synthesis["activation"])
    if synthesis.get("kernel_size", 3) != 3:
        raise unsupported("kernel_size", synthesis["kernel_size"])
    known_m = {"num_layers", "lr_multiplier", "w_avg_beta", "embed_features", "layer_features", "activation"}
    known_s = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture", "resample_filter",
               "use_noise", "activation", "kernel_size"}
    harmless = {"fused_modconv_default", "fp16_channels_last", "channels_last"}
    ignored = sorted(f"mapping_kwargs.{k}" for k in set(mapping) - known_m) + sorted(set(synthesis) - known_s)
    if ignored:
        notes.append("ignored settings: " + ", ".join(k for k in ignored if k not in harmless)
                     if set(ignored) - harmless else "ignored run-time settings: " + ", ".join(ignored))
    _, StyleGAN2Config, _, _ = _networks()
    img_resolution = _require(top, "img_resolution", what, source)
    img_channels = _require(top, "img_channels", what, source)
    cfg = _make_config(lambda: StyleGAN2Config(
        z_dim=int(z_dim), c_dim=0, w_dim=int(w_dim), img_resolution=int(img_resolution),
        img_channels=int(img_channels),
        mapping_layers=int(mapping.get("num_layers", 8)),
        mapping_lr_multiplier=float(mapping.get("lr_multiplier", 0.01)),
        w_avg_beta=float(mapping.get("w_avg_beta", 0.995)),
        channel_base=int(synthesis.get("channel_base", 32768)),
        channel_max=int(synthesis.get("channel_max", 512)),
        num_fp16_res=int(synthesis.get("num_fp16_res", 0)),
        conv_clamp=None if synthesis.get("conv_clamp") is None else float(synthesis["conv_clamp"]),
        architecture=str(synthesis.get("architecture", "skip")),
    ), what, source)
    return cfg, notes


def _make_config(build, what: str, source: str) -> Any:
    try:
        return build()
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: {what} records settings our networks cannot take ({e}).") from None


def discriminator_config_from_nvlabs(rec: NetworkRecord, source: str = "the pickle") -> tuple[Any, list[str]]:
    """Map a Discriminator's NVlabs constructor settings to :class:`DiscriminatorConfig`."""
    what = f"{rec.key!r}"
    if rec.class_name == "Generator":
        raise CheckpointError(f"{source}: {what} holds a Generator where a discriminator is expected. "
                              f"Pass --which G_ema or G to convert a generator.")
    if rec.class_name != "Discriminator":
        raise CheckpointError(f"{source}: {what} holds a {rec.class_name}, not a StyleGAN2 Discriminator.")
    kw = dict(rec.init_kwargs)
    _refuse_conditional(kw.get("c_dim", 0), what, source)
    block = dict(kw.get("block_kwargs") or {})
    epilogue = dict(kw.get("epilogue_kwargs") or {})
    notes: list[str] = []

    def unsupported(setting: str, value: Any) -> CheckpointError:
        return CheckpointError(f"{source}: {what} uses {setting}={value!r}, which our StyleGAN2 Discriminator "
                               f"does not implement.")

    for group, name in ((block, "activation"), (epilogue, "activation")):
        if group.get(name, "lrelu") != "lrelu":
            raise unsupported(name, group[name])
    if not _same_filter(block.get("resample_filter")):
        raise unsupported("block_kwargs.resample_filter", block["resample_filter"])
    if block.get("freeze_layers"):
        notes.append(f"ignored training setting block_kwargs.freeze_layers={block['freeze_layers']}")
    known = {"c_dim", "img_resolution", "img_channels", "architecture", "channel_base", "channel_max",
             "num_fp16_res", "conv_clamp", "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs"}
    extra = sorted(set(kw) - known)
    if extra:
        notes.append("ignored settings: " + ", ".join(extra))
    group_size = epilogue.get("mbstd_group_size", 4)
    _, _, _, DiscriminatorConfig = _networks()
    img_resolution = _require(kw, "img_resolution", what, source)
    img_channels = _require(kw, "img_channels", what, source)
    cfg = _make_config(lambda: DiscriminatorConfig(
        c_dim=0, img_resolution=int(img_resolution), img_channels=int(img_channels),
        architecture=str(kw.get("architecture", "resnet")),
        channel_base=int(kw.get("channel_base", 32768)),
        channel_max=int(kw.get("channel_max", 512)),
        num_fp16_res=int(kw.get("num_fp16_res", 0)),
        conv_clamp=None if kw.get("conv_clamp") is None else float(kw["conv_clamp"]),
        mbstd_group_size=None if group_size is None else int(group_size),
        mbstd_num_channels=int(epilogue.get("mbstd_num_channels", 1)),
    ), what, source)
    return cfg, notes


# ----------------------------------------------------------------------------------------------
# rosinality state dicts -> NVlabs names.


def _ros_kernel(up: bool) -> torch.Tensor:
    f = torch.tensor(_FILTER, dtype=torch.float32)
    k = f[None, :] * f[:, None]
    return k / k.sum() * (4 if up else 1)


def _infer_channel_layout(channels: dict[int, int], what: str, source: str) -> tuple[int, int]:
    """channel_base/channel_max with min(base // res, max) == channels[res] for every resolution."""
    cmax = max(channels.values())
    candidates = {c * r for r, c in channels.items() if c < cmax} | {cmax * max(channels)}
    for base in [32768, 16384] + sorted(candidates):  # NVlabs' usual values first when they fit
        if all(min(base // r, cmax) == c for r, c in channels.items()):
            return base, cmax
    shown = ", ".join(f"{r}: {c}" for r, c in sorted(channels.items()))
    raise CheckpointError(f"{source}: the {what}'s channel counts per resolution ({shown}) do not follow "
                          f"min(channel_base / resolution, channel_max), which our networks need.")


class _Taker:
    """Pop tensors from a state dict by name, with clear errors; remembers what was used."""

    def __init__(self, state: dict, what: str, source: str):
        self.state, self.what, self.source = dict(state), what, source

    def has(self, key: str) -> bool:
        return key in self.state

    def take(self, key: str, shape: tuple | None = None) -> torch.Tensor:
        if key not in self.state:
            raise CheckpointError(f"{self.source}: the rosinality {self.what} has no {key!r}; the checkpoint is "
                                  f"incomplete or uses a different layout.")
        t = self.state.pop(key)
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{self.source}: {key!r} is a {type(t).__name__}, not a tensor.")
        if shape is not None and t.numel() != math.prod(shape):
            raise CheckpointError(f"{self.source}: {key!r} has shape {tuple(t.shape)}, expected "
                                  f"{tuple(shape)} elements' worth.")
        t = t.detach().to(torch.float32)
        return t.reshape(shape) if shape is not None else t

    def kernel(self, key: str, up: bool) -> None:
        if key in self.state:
            k = self.take(key)
            if k.shape != (4, 4) or not torch.allclose(k, _ros_kernel(up), atol=1e-6):
                raise CheckpointError(f"{self.source}: {key!r} is a custom blur kernel; only the standard "
                                      f"[1, 3, 3, 1] filter is supported.")

    def leftover(self) -> None:
        if self.state:
            raise CheckpointError(f"{self.source}: the rosinality {self.what} has entries a StyleGAN2 "
                                  f"{self.what} does not: {_fmt_keys(sorted(self.state))}. It may be another "
                                  f"model (e.g. SWAGAN) that cannot be converted.")


def rosinality_generator_to_nvlabs(
        state: dict, latent_avg: torch.Tensor | None = None,
        source: str = "the checkpoint") -> tuple[Any, "OrderedDict[str, torch.Tensor]", list[str]]:
    """Rename a rosinality generator state dict to NVlabs names.

    Returns ``(config, state_dict, notes)``; ``state_dict`` lacks ``resample_filter`` buffers (fixed
    [1,3,3,1]) and, if the checkpoint had none, ``mapping.w_avg`` (see :func:`_finish_generator`).
    """
    _, StyleGAN2Config, _, _ = _networks()
    t = _Taker(state, "generator", source)
    notes: list[str] = []
    n_mlp = 0
    while t.has(f"style.{n_mlp + 1}.weight"):
        n_mlp += 1
    if n_mlp == 0 or not t.has("input.input"):
        raise CheckpointError(f"{source}: not a rosinality StyleGAN2 generator (no style.1.weight / input.input).")
    w_dim, z_dim = t.state["style.1.weight"].shape[1], t.state["style.1.weight"].shape[1]
    n_blocks = 0
    while t.has(f"to_rgbs.{n_blocks}.conv.weight"):
        n_blocks += 1
    resolution = 2 ** (n_blocks + 2)
    const = t.state["input.input"]
    img_channels = t.state["to_rgb1.conv.weight"].shape[1] if t.has("to_rgb1.conv.weight") else 3
    channels = {4: const.shape[1]}
    for j in range(n_blocks):
        key = f"convs.{2 * j}.conv.weight"
        if not t.has(key):
            raise CheckpointError(f"{source}: the rosinality generator has no {key!r}.")
        channels[2 ** (j + 3)] = t.state[key].shape[1]
    base, cmax = _infer_channel_layout(channels, "generator", source)

    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for i in range(n_mlp):
        w = t.take(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.weight"] = w
        out[f"mapping.fc{i}.bias"] = t.take(f"style.{i + 1}.bias", (w.shape[0],))

    def modulated(src: str, dst: str, w: torch.Tensor) -> None:
        """Weight [1,out,in,k,k] -> [out,in,k,k] and the modulation -> the layer's affine."""
        out[f"{dst}.weight"] = w[0]
        out[f"{dst}.affine.weight"] = t.take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = t.take(f"{src}.conv.modulation.bias", (w.shape[2],))

    def styled(src: str, dst: str, noise_key: str, res: int) -> None:
        w = t.take(f"{src}.conv.weight")
        if w.dim() != 5 or w.shape[0] != 1:
            raise CheckpointError(f"{source}: {src}.conv.weight has shape {tuple(w.shape)}, expected [1,out,in,k,k].")
        out[f"{dst}.bias"] = t.take(f"{src}.activate.bias", (w.shape[1],))
        modulated(src, dst, w)
        out[f"{dst}.noise_strength"] = t.take(f"{src}.noise.weight", ())
        if t.has(noise_key):
            out[f"{dst}.noise_const"] = t.take(noise_key, (res, res))
        t.kernel(f"{src}.conv.blur.kernel", up=True)

    def torgb(src: str, dst: str) -> None:
        w = t.take(f"{src}.conv.weight")
        if w.dim() != 5 or w.shape[0] != 1:
            raise CheckpointError(f"{source}: {src}.conv.weight has shape {tuple(w.shape)}, expected [1,3,in,1,1].")
        out[f"{dst}.bias"] = t.take(f"{src}.bias", (w.shape[1],))
        modulated(src, dst, w)
        t.kernel(f"{src}.upsample.kernel", up=True)

    out["synthesis.b4.const"] = t.take("input.input", tuple(const.shape[1:]))
    styled("conv1", "synthesis.b4.conv1", "noises.noise_0", 4)
    torgb("to_rgb1", "synthesis.b4.torgb")
    for j in range(n_blocks):
        res = 2 ** (j + 3)
        styled(f"convs.{2 * j}", f"synthesis.b{res}.conv0", f"noises.noise_{2 * j + 1}", res)
        styled(f"convs.{2 * j + 1}", f"synthesis.b{res}.conv1", f"noises.noise_{2 * j + 2}", res)
        torgb(f"to_rgbs.{j}", f"synthesis.b{res}.torgb")
    t.leftover()
    if latent_avg is not None:
        out["mapping.w_avg"] = latent_avg.detach().to(torch.float32).reshape(-1)
    cfg = _make_config(lambda: StyleGAN2Config(
        z_dim=int(z_dim), c_dim=0, w_dim=int(w_dim), img_resolution=resolution, img_channels=int(img_channels),
        mapping_layers=n_mlp, mapping_lr_multiplier=0.01, w_avg_beta=0.995, channel_base=base, channel_max=cmax,
        num_fp16_res=0, conv_clamp=None, architecture="skip"), "the generator", source)
    notes.append("mapping lr multiplier taken as 0.01 (rosinality's default; it is not stored in checkpoints)")
    return cfg, out, notes


def rosinality_discriminator_to_nvlabs(
        state: dict, source: str = "the checkpoint") -> tuple[Any, "OrderedDict[str, torch.Tensor]", list[str]]:
    """Rename a rosinality discriminator state dict to NVlabs names (resnet architecture)."""
    _, _, _, DiscriminatorConfig = _networks()
    t = _Taker(state, "discriminator", source)
    if not (t.has("convs.0.0.weight") and t.has("final_conv.0.weight")):
        raise CheckpointError(f"{source}: not a rosinality StyleGAN2 discriminator (no convs.0.0.weight / "
                              f"final_conv.0.weight).")
    n_res = 0
    while t.has(f"convs.{n_res + 1}.conv1.0.weight"):
        n_res += 1
    resolution = 2 ** (n_res + 2)
    img_channels = t.state["convs.0.0.weight"].shape[1]
    channels = {4: t.state["final_conv.0.weight"].shape[0]}
    for k in range(1, n_res + 1):
        channels[resolution >> (k - 1)] = t.state[f"convs.{k}.conv1.0.weight"].shape[0]
    base, cmax = _infer_channel_layout(channels, "discriminator", source)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    out[f"b{resolution}.fromrgb.weight"] = t.take("convs.0.0.weight")
    out[f"b{resolution}.fromrgb.bias"] = t.take("convs.0.1.bias")
    for k in range(1, n_res + 1):
        res, src = resolution >> (k - 1), f"convs.{k}"
        out[f"b{res}.conv0.weight"] = t.take(f"{src}.conv1.0.weight")
        out[f"b{res}.conv0.bias"] = t.take(f"{src}.conv1.1.bias")
        t.kernel(f"{src}.conv2.0.kernel", up=False)
        out[f"b{res}.conv1.weight"] = t.take(f"{src}.conv2.1.weight")
        out[f"b{res}.conv1.bias"] = t.take(f"{src}.conv2.2.bias")
        t.kernel(f"{src}.skip.0.kernel", up=False)
        out[f"b{res}.skip.weight"] = t.take(f"{src}.skip.1.weight")
    conv = t.take("final_conv.0.weight")
    mbstd_channels = conv.shape[1] - conv.shape[0]  # final conv reads features + minibatch-stddev maps
    out["b4.conv.weight"] = conv
    out["b4.conv.bias"] = t.take("final_conv.1.bias")
    out["b4.fc.weight"] = t.take("final_linear.0.weight")
    out["b4.fc.bias"] = t.take("final_linear.0.bias")
    out["b4.out.weight"] = t.take("final_linear.1.weight")
    out["b4.out.bias"] = t.take("final_linear.1.bias")
    t.leftover()
    cfg = _make_config(lambda: DiscriminatorConfig(
        c_dim=0, img_resolution=resolution, img_channels=int(img_channels), architecture="resnet",
        channel_base=base, channel_max=cmax, num_fp16_res=0, conv_clamp=None, mbstd_group_size=4,
        mbstd_num_channels=int(mbstd_channels)), "the discriminator", source)
    return cfg, out, []


# ----------------------------------------------------------------------------------------------
# Building models.


def _load_into(model: torch.nn.Module, state: dict, source: str, what: str,
               fill_from_model: tuple[str, ...] = ()) -> None:
    """Copy ``state`` into ``model`` strictly; keys whose last part is in ``fill_from_model`` may be
    missing (they keep the model's own values, e.g. the fixed resample filters)."""
    own = model.state_dict()
    diff = compare_state_dict(own, state, optional=lambda k: k.rsplit(".", 1)[-1] in fill_from_model)
    if not diff.ok:
        raise CheckpointError(f"{source}: the {what}'s weights do not match the settings it records ("
                              f"{diff.summary(4)}). The file may come from a modified StyleGAN2.")
    full = {k: (state[k] if k in state else v) for k, v in own.items()}
    with torch.no_grad():
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in full.items()}, strict=True)
    model.eval()


def _from_nvlabs(path: Path, which: str, info: ConversionInfo):
    pkl = read_network_pickle(path)
    if which not in pkl.networks:
        present = [k for k in pkl.networks]
        raise CheckpointError(f"{path} has no {which} network (it holds {', '.join(present) or 'none'}). "
                              f"Pass --which {present[0] if present else 'G_ema'}.")
    rec = pkl.networks[which]
    if which == "D":
        cfg, notes = discriminator_config_from_nvlabs(rec, str(path))
    else:
        cfg, notes = generator_config_from_nvlabs(rec, str(path))
    Generator, _, Discriminator, _ = _networks()
    model = Discriminator(cfg) if which == "D" else Generator(cfg)
    info.notes += notes
    _load_into(model, rec.state_dict, str(path), "generator" if which != "D" else "discriminator")
    return model


# Prefixes of the globals a torch.save of whole NVlabs networks asks for.
_NVLABS_GLOBALS = ("torch_utils.", "training.networks", "dnnlib.")


def _torch_load(path: Path) -> Any:
    """``torch.load`` through the project's safe loader, with StyleGAN2-specific refusals."""
    try:
        # rosinality training checkpoints store the argparse.Namespace of their options.
        return safe_torch_load(path, allowed_globals=(argparse.Namespace,))
    except UnsafeCheckpointError as e:
        if e.global_name.startswith(_NVLABS_GLOBALS):
            raise CheckpointError(f"{path} holds whole NVlabs network objects saved with torch.save, which cannot "
                                  f"be read without running their code. Convert the original network pickle "
                                  f"(.pkl) instead.") from None
        raise CheckpointError(f"refusing to load {path}: the checkpoint asks for {e.global_name}, which a StyleGAN2 "
                              f"checkpoint never needs (it may hold whole objects or be malicious). Nothing "
                              f"in it was run.") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _from_rosinality(path: Path, which: str, info: ConversionInfo):
    obj = _torch_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is a PyTorch checkpoint holding a {type(obj).__name__}, not a rosinality "
                              f"StyleGAN2 checkpoint (a dict with g_ema, g, d).")
    keys = [str(k) for k in obj]
    if any("generator_ema" in k or "constant_input" in k for k in keys) or any(
            _is_state_dict(v) and any("constant_input" in str(k) for k in v) for v in obj.values()):
        raise CheckpointError(f"{path} looks like an mmagic/mmediting StyleGAN2 checkpoint; mmagic checkpoints "
                              f"are not supported. Convert an NVlabs .pkl or rosinality .pt instead.")
    if _is_state_dict(obj) and "style.1.weight" in unwrap_state_dict(obj, ()):
        sections = {"G_ema": obj, "G": obj}
    else:
        sections = {"G_ema": obj.get("g_ema"), "G": obj.get("g"), "D": obj.get("d")}
    section = sections.get(which)
    if not _is_state_dict(section):
        present = [w for w, v in sections.items() if _is_state_dict(v)]
        if not present:
            raise CheckpointError(f"{path} is a PyTorch checkpoint but not a rosinality StyleGAN2 checkpoint: "
                                  f"it holds {_fmt_keys(keys) or 'nothing'}, not g_ema / g / d.")
        raise CheckpointError(f"{path} has no {which} network (rosinality key "
                              f"{ {'G_ema': 'g_ema', 'G': 'g', 'D': 'd'}[which]!r}); it holds "
                              f"{', '.join(present)}. Pass --which {present[0]}.")
    state = unwrap_state_dict(section, ())
    Generator, _, Discriminator, _ = _networks()
    if which == "D":
        if "style.1.weight" in state:
            raise CheckpointError(f"{path}: 'd' holds a generator where a discriminator is expected.")
        cfg, sd, notes = rosinality_discriminator_to_nvlabs(state, str(path))
        model = Discriminator(cfg)
        _load_into(model, sd, str(path), "discriminator", fill_from_model=("resample_filter",))
    else:
        if "convs.0.0.weight" in state and "final_conv.0.weight" in state:
            raise CheckpointError(f"{path}: the {which} entry holds a discriminator where a generator is "
                                  f"expected. Pass --which D.")
        latent = obj.get("latent_avg")  # average W of the released (EMA) generator
        w = state.get("style.1.weight")
        if not (isinstance(latent, torch.Tensor) and isinstance(w, torch.Tensor) and latent.numel() == w.shape[0]):
            latent = None
        cfg, sd, notes = rosinality_generator_to_nvlabs(state, latent, str(path))
        model = Generator(cfg)
        fill = ("resample_filter", "w_avg", "noise_const")
        _load_into(model, sd, str(path), "generator", fill_from_model=fill)
        if not any(k.endswith("noise_const") for k in sd):
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for name, buf in model.named_buffers():
                    if name.endswith("noise_const"):
                        buf.copy_(torch.randn(buf.shape, generator=g))
            notes.append("the checkpoint has no stored noise maps; fixed ones were drawn with seed 0")
        if "mapping.w_avg" not in sd:
            with torch.no_grad():
                model.mapping.w_avg.copy_(w_statistics(model)[0])
            notes.append("the checkpoint has no latent_avg; w_avg was estimated from 10,000 mapped z (seed 0)")
    info.notes += notes
    return model


def _from_folder(path: Path, which: str, info: ConversionInfo):
    Generator, _, Discriminator, _ = _networks()
    config_path = path / CONFIG_NAME
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None  # from_pretrained below gives the precise message
    if model_type == Discriminator.model_type():
        if which != "D":
            raise CheckpointError(f"{path} holds a StyleGAN2 discriminator, but a generator was asked for "
                                  f"(which={which!r}). Pass which='D' or a generator folder.")
        return Discriminator.from_pretrained(path)
    if which == "D" and model_type == Generator.model_type():
        raise CheckpointError(f"{path} holds a StyleGAN2 generator, but which='D' asks for a discriminator.")
    return Generator.from_pretrained(path)


def load_stylegan2_with_info(path: str | os.PathLike, which: str = "G_ema"):
    """Like :func:`load_stylegan2`, also returning a :class:`ConversionInfo` (format, notes)."""
    _check_which(which)
    path = Path(path)
    fmt = sniff_format(path)
    names = {"folder": "model folder", "pickle": "NVlabs pickle", "zip": "rosinality checkpoint",
             "torch-legacy": "rosinality checkpoint"}
    info = ConversionInfo(str(path), names[fmt], which)
    if fmt == "folder":
        model = _from_folder(path, which, info)
    elif fmt == "pickle":
        model = _from_nvlabs(path, which, info)
    else:
        model = _from_rosinality(path, which, info)
    model.eval()
    return model, info


def load_stylegan2(path: str | os.PathLike, which: str = "G_ema"):
    """Load a StyleGAN2 network from a model folder, an NVlabs ``.pkl`` or a rosinality ``.pt``.

    ``which``: ``'G_ema'`` (default, the generator to sample from), ``'G'`` or ``'D'``. Returns our
    :class:`Generator` or :class:`Discriminator` in eval mode, on the CPU, in fp32. Never runs code
    from the file; raises :class:`~hdvila.errors.CheckpointError` with the reason otherwise.
    """
    return load_stylegan2_with_info(path, which)[0]


def _summary(model: torch.nn.Module, info: ConversionInfo, out_dir: Path | None) -> str:
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    res = cfg.img_resolution
    lines = [f"converted {info.source} ({info.source_format}, {info.which})"
             + (f" -> {out_dir}" if out_dir is not None else "")]
    if cfg.model_type.endswith("discriminator"):
        lines.append(f"  StyleGAN2 discriminator: {res}x{res}, {cfg.img_channels} channels, architecture "
                     f"{cfg.architecture}, {params:,} parameters")
    else:
        num_ws = getattr(model, "num_ws", None) or 2 * int(math.log2(res)) - 2
        lines.append(f"  StyleGAN2 generator: {res}x{res}, {cfg.img_channels} channels, {params:,} parameters, "
                     f"num_ws {num_ws}, z_dim {cfg.z_dim}, w_dim {cfg.w_dim}, {cfg.mapping_layers} mapping layers")
    lines += [f"  note: {n}" for n in info.notes]
    return "\n".join(lines)


def convert_stylegan2(src: str | os.PathLike, out_dir: str | os.PathLike, which: str = "G_ema"):
    """``hdvila convert stylegan2 SRC OUT_DIR [--which G_ema|G|D]``: write ``config.json`` and
    ``model.safetensors`` to ``out_dir`` and print a short summary. Returns the model.

    Everything is read and checked before anything is written, so a refused or damaged source leaves
    no output folder behind.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out} exists and is a file; pass a folder to write the model into.")
    model, info = load_stylegan2_with_info(src, which)
    model.save_pretrained(out)
    print(_summary(model, info, out))
    return model
