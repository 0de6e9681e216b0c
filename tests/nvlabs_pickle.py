"""Test helper: write pickles in the NVlabs network-pickle format with our own code.

NVlabs pickles every network through ``torch_utils.persistence``: a module object reduces to
``_reconstruct_persistent_obj(meta)`` with ``meta = dict(type='class', version, module_src,
class_name, state)``, ``state`` being the module's ``__dict__``. Here fake ``torch_utils.persistence``
and ``dnnlib.util`` modules are put into ``sys.modules`` only while a pickle is written, so that
``pickle`` names those globals exactly as an NVlabs file does; no NVlabs code is involved, and the
files are read back only by the safe reader under test.
"""

from __future__ import annotations

import collections
import contextlib
import pickle
import sys
import types
from typing import Any, Iterator

import numpy as np
import torch

PERSISTENCE_VERSION = 6
FAKE_SOURCE = "# source text of the module that defined {name} (kept as text, never executed)\n"


def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called: only its name is pickled
    raise RuntimeError("test helper stand-in must not be called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    """Pickles as ``dnnlib.util.EasyDict``."""


EasyDict.__module__ = "dnnlib.util"
EasyDict.__qualname__ = "EasyDict"


class Persistent:
    """An object that pickles the way an NVlabs persistent module does."""

    def __init__(self, class_name: str, state: dict, module_src: str | None = None):
        self.meta = dict(type="class", version=PERSISTENCE_VERSION,
                         module_src=module_src if module_src is not None else FAKE_SOURCE.format(name=class_name),
                         class_name=class_name, state=state)

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


class Payload:
    """Pickles as a call of ``func(*args)``: what a malicious file does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@contextlib.contextmanager
def fake_nvlabs_modules() -> Iterator[None]:
    """Register ``torch_utils.persistence`` and ``dnnlib.util`` in ``sys.modules`` while pickling;
    remove them afterwards."""
    mods: dict[str, types.ModuleType] = {}

    def module(name: str) -> types.ModuleType:
        if name not in mods:
            mods[name] = types.ModuleType(name)
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(module(parent), child, mods[name])
        return mods[name]

    module("torch_utils.persistence")._reconstruct_persistent_obj = _reconstruct_persistent_obj
    module("dnnlib.util").EasyDict = EasyDict
    module("dnnlib").EasyDict = EasyDict
    clashes = [n for n in mods if n in sys.modules]
    if clashes:
        raise RuntimeError(f"modules {clashes} already exist; cannot fake them")
    sys.modules.update(mods)
    try:
        yield
    finally:
        for name in mods:
            sys.modules.pop(name, None)


def _hooks() -> dict:
    names = ("_backward_hooks", "_forward_hooks", "_forward_pre_hooks", "_state_dict_hooks",
             "_load_state_dict_pre_hooks")
    return {n: collections.OrderedDict() for n in names}


def module_state(module: torch.nn.Module, *, init_kwargs: dict | None = None, extra: dict | None = None,
                 children: dict | None = None) -> dict:
    """The ``__dict__`` NVlabs would pickle for ``module``: torch bookkeeping, parameters, buffers,
    child modules (given, already converted), constructor settings and some plain attributes."""
    state: dict[str, Any] = {"training": False}
    state["_parameters"] = collections.OrderedDict(module._parameters)
    state["_buffers"] = collections.OrderedDict(module._buffers)
    state["_non_persistent_buffers_set"] = set(module._non_persistent_buffers_set)
    state.update(_hooks())
    state["_modules"] = collections.OrderedDict(children or {})
    state["_init_args"] = ()
    state["_init_kwargs"] = EasyDict(init_kwargs or {})
    # NVlabs modules keep numpy scalars such as weight_gain = 1 / np.sqrt(fan_in) in __dict__.
    state["weight_gain"] = np.float64(0.125)
    state["act_gain"] = np.float32(1.4142135)
    state["channels_last"] = False
    state.update(extra or {})
    return state


def to_persistent(module: torch.nn.Module, *, init_kwargs: dict | None = None, class_name: str | None = None,
                  plain_torch: tuple[str, ...] = (), prefix: str = "", extra: dict | None = None,
                  module_src: str | None = None) -> Any:
    """Convert ``module`` and its children to objects that pickle as NVlabs does.

    Children whose dotted path is listed in ``plain_torch`` are pickled as ordinary
    ``torch.nn.ModuleList`` objects (standard pickle of a torch class), the rest as persistent objects.
    """
    children = {name: to_persistent(child, plain_torch=plain_torch, prefix=f"{prefix}{name}.")
                for name, child in module._modules.items() if child is not None}
    path = prefix[:-1]
    if path and path in plain_torch:
        plain = torch.nn.ModuleList()
        plain._parameters.update(module._parameters)
        plain._buffers.update(module._buffers)
        plain._modules.update(children)  # type: ignore[arg-type]  # children may be persistent objects
        return plain
    state = module_state(module, init_kwargs=init_kwargs, children=children, extra=extra)
    return Persistent(class_name or type(module).__name__, state, module_src)


def dump(obj: Any, path, protocol: int = 4) -> None:
    with fake_nvlabs_modules(), open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def nvlabs_generator_kwargs(cfg, nested: bool = True) -> dict:
    """Constructor settings as an NVlabs Generator records them (from one of our configs).

    ``nested=True``: stylegan2-ada-pytorch (``synthesis_kwargs={...}``); ``False``: the StyleGAN3
    repository's StyleGAN2 generator, whose synthesis settings sit at the top level."""
    mapping = EasyDict(num_layers=cfg.mapping_layers, lr_multiplier=cfg.mapping_lr_multiplier,
                       w_avg_beta=cfg.w_avg_beta)
    synthesis = EasyDict(channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                         num_fp16_res=cfg.num_fp16_res, conv_clamp=cfg.conv_clamp, architecture=cfg.architecture)
    kw = EasyDict(z_dim=cfg.z_dim, w_dim=cfg.w_dim, mapping_kwargs=mapping, c_dim=cfg.c_dim,
                  img_resolution=cfg.img_resolution, img_channels=cfg.img_channels)
    if nested:
        kw["synthesis_kwargs"] = synthesis
    else:
        kw.update(synthesis)
        kw["fused_modconv_default"] = "inference_only"
    return kw


def nvlabs_discriminator_kwargs(cfg) -> dict:
    return EasyDict(c_dim=cfg.c_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels,
                    architecture=cfg.architecture, channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                    num_fp16_res=cfg.num_fp16_res, conv_clamp=cfg.conv_clamp,
                    block_kwargs=EasyDict(freeze_layers=0), mapping_kwargs=EasyDict(),
                    epilogue_kwargs=EasyDict(mbstd_group_size=cfg.mbstd_group_size))


def write_network_pickle(path, *, G=None, D=None, G_ema=None, g_kwargs=None, d_kwargs=None,
                         plain_torch: tuple[str, ...] = (), protocol: int = 4, extra_entries: dict | None = None,
                         **kwargs) -> None:
    """Write ``dict(training_set_kwargs, G, D, G_ema, augment_pipe)`` like an NVlabs snapshot."""
    data: dict[str, Any] = {"training_set_kwargs": EasyDict(class_name="training.dataset.ImageFolderDataset",
                                                            path="~/datasets/demo.zip", use_labels=False,
                                                            max_size=1000, xflip=False, resolution=32)}
    for key, net, kw in (("G", G, g_kwargs), ("D", D, d_kwargs), ("G_ema", G_ema, g_kwargs)):
        data[key] = None if net is None else to_persistent(net, init_kwargs=kw, plain_torch=plain_torch, **kwargs)
    aug = torch.nn.Module()
    aug.register_buffer("p", torch.zeros([]))
    data["augment_pipe"] = to_persistent(aug, init_kwargs=EasyDict(xflip=1, rotate90=1), class_name="AugmentPipe")
    data.update(extra_entries or {})
    dump(data, path, protocol=protocol)
