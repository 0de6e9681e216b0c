"""Widen a trained StyleGAN2 generator or discriminator without changing what it computes.

A network trained with a small ``channel_base`` can go on training with more channels per layer
(Net2Net-style growth, Chen et al. 2016): :func:`widen` copies every trained weight into a wider network
of the same architecture so that its outputs are unchanged, and the new channels start from the wider
network's own initialisation. The new channels' outgoing weights start at zero, so they change nothing
until training moves them; the new channels' incoming weights are random, so their gradients differ
and they do not learn copies of each other.

Per layer type (``in``/``out`` = input/output channels, primes for the wider network):

- ``SynthesisLayer`` (modulated, demodulated conv): the weight's old block is copied, new input
  columns are zero. Demodulation divides each output channel by the norm of its weights, which the
  zero columns leave alone, so no rescaling is needed.
- ``ToRGBLayer``, ``Conv2dLayer``, ``FullyConnectedLayer`` (equalised learning rate: runtime gain
  ``1/sqrt(fan_in)``): as above, with the old block multiplied by ``sqrt(in'/in)`` to undo the smaller
  gain of the wider fan-in.
- Minibatch std averages over the discriminator's 4x4 channels, so a discriminator that has it can
  only be widened where its 4x4 channels stay the same (channel_max unchanged, as is usual).
- Biases and the 4x4 ``const``: old entries copied, new ones keep their initial values.

Mapping networks, noise strengths and filters must match in shape (widening changes ``channel_base``
and ``channel_max`` only). Output agreement is tested to float32 rounding in tests/test_stylegan2_widen.py.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from generation.stylegan2.layers import Conv2dLayer, FullyConnectedLayer, SynthesisLayer, ToRGBLayer
from generation.stylegan2.networks import Discriminator, Generator

WIDENABLE = ("channel_base", "channel_max")


def _copy_block(dst: torch.Tensor, src: torch.Tensor, gain: float) -> None:
    """dst[:out, :in] = src * gain and dst[:out, in:] = 0 (dims 0/1 = out/in); 1-D: dst[:out] = src."""
    out = src.shape[0]
    if src.ndim == 1:
        dst[:out] = src
        return
    dst[:out].zero_()
    dst[:out, : src.shape[1]] = src * gain


def _widen_weight(dst_layer: nn.Module, src_layer: nn.Module, name: str, demodulated: bool) -> None:
    dst, src = getattr(dst_layer, name), getattr(src_layer, name)
    if dst.ndim != src.ndim or any(d < s for d, s in zip(dst.shape, src.shape)):
        raise ValueError(f"cannot widen {type(src_layer).__name__}.{name} {tuple(src.shape)} into {tuple(dst.shape)}: "
                         "the target must be at least as wide in every dimension")
    if dst.ndim > 1 and dst.shape[2:] != src.shape[2:]:
        raise ValueError(f"kernel sizes differ: {tuple(src.shape)} vs {tuple(dst.shape)}")
    gain = 1.0 if demodulated or dst.ndim == 1 else math.sqrt(dst.shape[1] / src.shape[1])
    _copy_block(dst.data, src.data, gain)


def _widen_module(dst: nn.Module, src: nn.Module) -> None:
    demodulated = isinstance(src, SynthesisLayer)
    _widen_weight(dst, src, "weight", demodulated)
    if getattr(src, "bias", None) is not None:
        _widen_weight(dst, src, "bias", demodulated)


@torch.no_grad()
def widen(src: Generator | Discriminator, seed: int = 0, **config_changes) -> Generator | Discriminator:
    """A wider copy of ``src`` computing the same function (to float32 rounding).

    src: a trained ``Generator`` or ``Discriminator``; config_changes: ``channel_base`` and/or
    ``channel_max`` (each >= the source's). ``seed`` fixes the new channels' initial values (use the
    same seed for a generator and its EMA copy so their new channels start equal). Returns a new
    module in eval mode on the CPU; ``src`` is not changed.
    """
    bad = set(config_changes) - set(WIDENABLE)
    if bad:
        raise ValueError(f"widen changes only {', '.join(WIDENABLE)}; got {', '.join(sorted(bad))}")
    for k, v in config_changes.items():
        if v < getattr(src.config, k):
            raise ValueError(f"{k} {v} is narrower than the source's {getattr(src.config, k)}")
    config = dataclasses.replace(src.config, **config_changes)
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(seed)
        dst = type(src)(config).eval()
    if isinstance(src, Discriminator) and src.b4.mbstd is not None and dst.b4.fc.weight.shape != src.b4.fc.weight.shape:
        raise ValueError("this widening changes the discriminator's 4x4 channels, and its minibatch-std feature is "
                         "a mean over those channels, so the output would change. "
                         "Keep min(channel_base / 4, channel_max) "
                         f"at {src.b4.fc.weight.shape[0]} (usually: leave channel_max as it is), or widen a "
                         "discriminator without minibatch std (mbstd_num_channels=0)")
    src_modules = dict(src.named_modules())
    handled: set[str] = set()
    for name, d in dst.named_modules():
        s = src_modules.get(name)
        if s is None:
            raise ValueError(f"the wider network has a module {name!r} the source lacks")
        if isinstance(d, (SynthesisLayer, ToRGBLayer, Conv2dLayer, FullyConnectedLayer)):
            _widen_module(d, s)
            handled.update(f"{name}.{p}" if name else p for p in ("weight", "bias"))
    for pname, p in dst.named_parameters():
        if pname in handled:
            continue
        sp = src.get_parameter(pname)
        if pname.endswith("const"):
            p.data[: sp.shape[0]] = sp.data
        elif p.shape == sp.shape:
            p.data.copy_(sp.data)
        else:
            raise ValueError(f"{pname}: {tuple(sp.shape)} -> {tuple(p.shape)} is not a widenable parameter")
    for bname, b in dst.named_buffers():
        sb = src.get_buffer(bname)
        if b.shape != sb.shape:
            raise ValueError(f"buffer {bname}: {tuple(sb.shape)} -> {tuple(b.shape)} cannot be widened")
        b.copy_(sb)
    return dst
