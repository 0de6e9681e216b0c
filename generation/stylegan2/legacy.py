"""Read NVlabs StyleGAN2(-ADA) network pickles without running anything in them.

An NVlabs network pickle (``network-snapshot-*.pkl``, ``ffhq.pkl``) is a plain :mod:`pickle` of
``dict(training_set_kwargs, G, D, G_ema, augment_pipe)``. Each network is written through NVlabs'
``torch_utils.persistence``: it reduces to ``_reconstruct_persistent_obj(meta)`` where ``meta`` holds
the source code of the module that defined the class, the class name and the object's ``__dict__``
(``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``...). NVlabs' own loader ``exec()``s
that source code, and ``pickle.load`` on any such file runs whatever the file asks for.

:func:`read_network_pickle` never does either. Its unpickler answers every global the file names
from a fixed table of inert stand-ins:

* the persistence hook and ``dnnlib.EasyDict`` become plain records (the embedded source is kept as
  text and never run);
* tensors are rebuilt from their storages, and each storage (written by ``torch.save`` inside the
  pickle) is read with ``torch.load(weights_only=True)``;
* ``torch.nn`` module classes become inert records holding their ``__dict__`` (nothing is imported);
* ``collections.OrderedDict``, sets, numpy numeric scalars / arrays / dtypes and torch dtypes are
  rebuilt from data only.

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``...) stops the load with a
:class:`~hdvila.errors.CheckpointError` before it is called: nothing in the file is executed.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from hdvila.errors import CheckpointError

__all__ = [
    "NetworkRecord",
    "NetworkPickle",
    "PersistentRecord",
    "TorchModuleRecord",
    "read_network_pickle",
    "restricted_load",
    "sniff_format",
]

ZIP_MAGIC = b"PK\x03\x04"
_MAX_DEPTH = 64


# ----------------------------------------------------------------------------------------------
# Inert records the unpickler builds instead of the objects the file describes.


class PersistentRecord:
    """What an NVlabs persistent object (``_reconstruct_persistent_obj(meta)``) becomes: data only."""

    __slots__ = ("class_name", "module_src", "version", "state")

    def __init__(self, class_name: str, module_src: str, version: Any, state: dict):
        self.class_name = class_name
        self.module_src = module_src
        self.version = version
        self.state = state

    def __setstate__(self, state: Any) -> None:  # BUILD on a record is never legitimate
        raise CheckpointError("the pickle tries to modify a network record after building it")

    def __repr__(self) -> str:
        return f"<persistent {self.class_name}>"


class TorchModuleRecord:
    """What a plain ``torch.nn`` module in the pickle becomes: its class name and ``__dict__``."""

    torch_class: str = "torch.nn.modules.module.Module"

    def __init__(self) -> None:
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError(f"{self.torch_class} in the pickle has a state of type "
                                  f"{type(state).__name__}, not a dict")
        self.state = dict(state)

    @property
    def class_name(self) -> str:
        return self.torch_class.rsplit(".", 1)[-1]

    def __repr__(self) -> str:
        return f"<torch module {self.torch_class}>"


_TORCH_MODULE_RECORDS: dict[str, type] = {}


def _torch_module_record_class(qualified: str) -> type:
    cls = _TORCH_MODULE_RECORDS.get(qualified)
    if cls is None:
        cls = type(qualified.rsplit(".", 1)[-1] + "Record", (TorchModuleRecord,), {"torch_class": qualified})
        _TORCH_MODULE_RECORDS[qualified] = cls
    return cls


class EasyDictRecord(dict):
    """Stand-in for ``dnnlib.EasyDict`` (a dict with attribute access): a plain dict here."""

    def __setstate__(self, state: Any) -> None:
        if state:
            raise CheckpointError("an EasyDict in the pickle carries unexpected object state")


class _NumpyDtypeRecord:
    """Stand-in for ``numpy.dtype(name, align, copy)`` plus its pickled state (byte order)."""

    _NAME = re.compile(r"^[?biufc][0-9]{0,2}$")

    def __init__(self, name: Any = None, align: Any = False, copy: Any = True):
        if not isinstance(name, str) or not self._NAME.match(name):
            raise CheckpointError(f"the pickle holds a numpy dtype {name!r}; only numeric dtypes are allowed")
        self.name = name
        self.byteorder = "="

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]
        else:
            raise CheckpointError("the pickle holds a numpy dtype with an unexpected state")

    def to_numpy(self) -> np.dtype:
        order = "" if self.byteorder == "|" else self.byteorder
        return np.dtype(order + self.name)


class _NumpyArrayRecord:
    """Stand-in for ``numpy.core.multiarray._reconstruct(ndarray, ...)``: numeric data only."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        try:
            _version, shape, dtype, fortran, raw = state
        except (TypeError, ValueError):
            raise CheckpointError("the pickle holds a numpy array with an unexpected state") from None
        self.array = _numpy_from_bytes(raw, dtype, shape, "F" if fortran else "C")


def _numpy_from_bytes(raw: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    if not isinstance(dtype, _NumpyDtypeRecord):
        raise CheckpointError("the pickle holds a numpy array of a non-numeric dtype (object arrays are refused)")
    if not isinstance(raw, (bytes, bytearray)):
        raise CheckpointError("the pickle holds a numpy array without raw numeric data")
    if not (isinstance(shape, tuple) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise CheckpointError("the pickle holds a numpy array with an invalid shape")
    arr = np.frombuffer(bytes(raw), dtype=dtype.to_numpy())
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise CheckpointError("the pickle holds a numpy array whose data does not match its shape")
    return arr.reshape(shape, order=order).copy()


class _Marker:
    """A named placeholder for a class the file may mention only as an argument (e.g. torch.Tensor)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError(f"the pickle tries to modify {self.name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise CheckpointError(f"the pickle tries to call {self.name} directly")

    def __repr__(self) -> str:
        return self.name


class _StandIn:
    """A callable the unpickler hands out for an allowed global. It is not the real function, so the
    file can neither call anything else through it nor modify it (BUILD on it is refused)."""

    __slots__ = ("name", "_fn")

    def __init__(self, name: str, fn):
        self.name = name
        self._fn = fn

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError(f"the pickle tries to modify {self.name}")

    def __repr__(self) -> str:
        return f"<stand-in for {self.name}>"


# ----------------------------------------------------------------------------------------------
# Stand-in functions.


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict):
        raise CheckpointError("a persistent object in the pickle has no metadata dict")
    if meta.get("type") != "class":
        raise CheckpointError(f"a persistent object in the pickle has type {meta.get('type')!r}; only "
                              f"'class' objects are known")
    class_name, src, state = meta.get("class_name"), meta.get("module_src", ""), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(src, str):
        raise CheckpointError("a persistent object in the pickle has no class name or source text")
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise CheckpointError(f"persistent object {class_name} in the pickle has a state of type "
                              f"{type(state).__name__}, not a dict")
    return PersistentRecord(class_name, src, meta.get("version"), dict(state))


class _Storage:
    """A storage read from the pickle: untyped bytes plus the element type."""

    __slots__ = ("data", "dtype")

    def __init__(self, data: torch.UntypedStorage, dtype: torch.dtype):
        self.data, self.dtype = data, dtype

    def __setstate__(self, state: Any) -> None:
        raise CheckpointError("the pickle tries to modify a tensor storage")

    def numel(self) -> int:
        return self.data.nbytes() // self.dtype.itemsize


def _load_storage_from_bytes(data: Any) -> _Storage:
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError("a tensor storage in the pickle is not stored as bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage deprecation notices
            storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
            if isinstance(storage, torch.TypedStorage):
                return _Storage(storage.untyped(), storage.dtype)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"a tensor storage in the pickle asks for something other than tensor "
                              f"data, so it was refused ({_first_line(e)}); nothing in it was run") from None
    except (RuntimeError, EOFError, ValueError, OSError, TypeError) as e:
        raise CheckpointError(f"a tensor storage in the pickle is truncated or damaged ({_first_line(e)})") from None
    if isinstance(storage, torch.UntypedStorage):
        return _Storage(storage, torch.uint8)
    raise CheckpointError(f"a tensor storage in the pickle holds a {type(storage).__name__}, not a storage")


def _check_tensor_args(storage: Any, offset: Any, size: Any, stride: Any) -> None:
    if not isinstance(storage, _Storage):
        raise CheckpointError("a tensor in the pickle is not built from a tensor storage")
    ints = lambda xs: isinstance(xs, (tuple, list, torch.Size)) and all(  # noqa: E731
        isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in xs)
    if not (isinstance(offset, int) and offset >= 0 and ints(size) and ints(stride) and len(size) == len(stride)):
        raise CheckpointError("a tensor in the pickle has an invalid offset, size or stride")
    if all(s > 0 for s in size):
        last = offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= storage.numel():
            raise CheckpointError("a tensor in the pickle reaches past the end of its storage (damaged file)")


def _empty_hooks(hooks: Any, what: str) -> None:
    if hooks:
        raise CheckpointError(f"a {what} in the pickle carries hooks (code), which are refused")


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
    _check_tensor_args(storage, offset, size, stride)
    t = torch.empty((0,), dtype=storage.dtype)
    t.set_(storage.data, offset, tuple(size), tuple(stride))
    return t


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    _empty_hooks(backward_hooks, "tensor")
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = True, backward_hooks: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("a parameter in the pickle does not hold a tensor")
    _empty_hooks(backward_hooks, "parameter")
    return data


def _rebuild_parameter_with_state(data: Any, requires_grad: Any, backward_hooks: Any, state: Any) -> torch.Tensor:
    if state:
        raise CheckpointError("a parameter in the pickle carries extra Python state, which is refused")
    return _rebuild_parameter(data, requires_grad, backward_hooks)


_TENSOR_TYPES = {"torch.Tensor": _Marker("torch.Tensor"),
                 "torch.nn.parameter.Parameter": _Marker("torch.nn.parameter.Parameter")}


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> torch.Tensor:
    if func not in (_ALLOWED["torch._utils._rebuild_tensor_v2"], _ALLOWED["torch._utils._rebuild_tensor"],
                    _ALLOWED["torch._utils._rebuild_parameter"]):
        raise CheckpointError("a tensor in the pickle is rebuilt by something other than a tensor function")
    if new_type not in _TENSOR_TYPES.values():
        raise CheckpointError("a tensor in the pickle has a custom tensor subclass, which is refused")
    if state:
        raise CheckpointError("a tensor in the pickle carries extra Python state, which is refused")
    if not isinstance(args, tuple):
        raise CheckpointError("a tensor in the pickle has invalid rebuild arguments")
    return func(*args)


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, _NumpyDtypeRecord) or not isinstance(data, (bytes, bytearray)):
        raise CheckpointError("the pickle holds a numpy scalar that is not numeric")
    arr = np.frombuffer(bytes(data), dtype=dtype.to_numpy())
    if arr.size != 1:
        raise CheckpointError("the pickle holds a damaged numpy scalar")
    return arr[0]


def _numpy_reconstruct(cls: Any, shape: Any = None, dtype_code: Any = None) -> _NumpyArrayRecord:
    if cls is not _NDARRAY:
        raise CheckpointError("the pickle rebuilds a numpy array subclass, which is refused")
    return _NumpyArrayRecord()


def _numpy_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    return _numpy_from_bytes(buf, dtype, shape, "F" if order == "F" else "C")


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise CheckpointError("the pickle encodes bytes in an unexpected way")
    return text.encode("latin1")


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    if isinstance(cls, type) and issubclass(cls, (TorchModuleRecord, EasyDictRecord)) and base in (object, dict):
        obj = cls()
        if base is dict and state:
            obj.update(state)
        return obj
    raise CheckpointError("the pickle reconstructs an object of an unexpected class")


_NDARRAY = _Marker("numpy.ndarray")

_ALLOWED: dict[str, Any] = {
    "torch_utils.persistence._reconstruct_persistent_obj": _StandIn("_reconstruct_persistent_obj",
                                                                    _reconstruct_persistent_obj),
    "dnnlib.util.EasyDict": EasyDictRecord,
    "dnnlib.EasyDict": EasyDictRecord,
    "torch.storage._load_from_bytes": _StandIn("torch.storage._load_from_bytes", _load_storage_from_bytes),
    "torch._utils._rebuild_tensor": _StandIn("torch._utils._rebuild_tensor", _rebuild_tensor),
    "torch._utils._rebuild_tensor_v2": _StandIn("torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2),
    "torch._utils._rebuild_parameter": _StandIn("torch._utils._rebuild_parameter", _rebuild_parameter),
    "torch._utils._rebuild_parameter_with_state": _StandIn("torch._utils._rebuild_parameter_with_state",
                                                           _rebuild_parameter_with_state),
    "torch._tensor._rebuild_from_type_v2": _StandIn("torch._tensor._rebuild_from_type_v2", _rebuild_from_type_v2),
    **_TENSOR_TYPES,
    "torch.Size": torch.Size,
    "collections.OrderedDict": collections.OrderedDict,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.dict": dict,
    "builtins.list": list,
    "builtins.tuple": tuple,
    "builtins.object": object,
    "builtins.bytearray": bytearray,
    "builtins.complex": complex,
    "_codecs.encode": _StandIn("_codecs.encode", _codecs_encode),
    "copyreg._reconstructor": _StandIn("copyreg._reconstructor", _copyreg_reconstructor),
    "numpy.dtype": _NumpyDtypeRecord,
    "numpy.ndarray": _NDARRAY,
}
for _np in ("numpy.core", "numpy._core"):
    _ALLOWED[f"{_np}.multiarray.scalar"] = _StandIn("numpy scalar", _numpy_scalar)
    _ALLOWED[f"{_np}.multiarray._reconstruct"] = _StandIn("numpy array", _numpy_reconstruct)
    _ALLOWED[f"{_np}.numeric._frombuffer"] = _StandIn("numpy array", _numpy_frombuffer)

_TORCH_DTYPES = {name for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)}
_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
_SHOWN_AS = {"posix": "os", "nt": "os"}
_TORCH_NN_CLASS = re.compile(r"^torch\.nn\.modules\.[a-z_][a-z0-9_.]*$")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        module = _MODULE_ALIASES.get(module, module)
        qualified = f"{module}.{name}"
        allowed = _ALLOWED.get(qualified)
        if allowed is not None:
            return allowed
        if module == "torch" and name in _TORCH_DTYPES:
            return getattr(torch, name)
        if _TORCH_NN_CLASS.match(module) and name.isidentifier() and name[:1].isupper():
            return _torch_module_record_class(qualified)
        shown = f"{_SHOWN_AS.get(module, module)}.{name}"
        raise CheckpointError(
            f"refusing to load {self._source}: the pickle asks for {shown}, which a StyleGAN2 network "
            f"pickle never needs (the file may be malicious). Nothing in it was run.")

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError(f"refusing to load {self._source}: the pickle refers to external objects "
                              f"({str(pid)[:60]}), which a StyleGAN2 network pickle never does.")


def restricted_load(file: BinaryIO, source: str = "the file") -> Any:
    """Unpickle ``file`` with the inert stand-ins above; returns records, dicts, tensors and numbers.

    Raises :class:`CheckpointError` for a global outside the table (nothing is called), and for a
    truncated or damaged stream.
    """
    try:
        return _RestrictedUnpickler(file, source).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError) as e:
        raise CheckpointError(f"{source} is truncated or damaged: the pickle stream ends early or is "
                              f"corrupt ({_first_line(e)}). Download or copy it again.") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError, OverflowError,
            UnicodeDecodeError, MemoryError, RecursionError) as e:
        raise CheckpointError(f"{source} is damaged: it could not be read as a network pickle "
                              f"({type(e).__name__}: {_first_line(e)}).") from None


# ----------------------------------------------------------------------------------------------
# From records to networks.


def _plain(obj: Any, depth: int = 0) -> Any:
    """Records -> plain Python values (dicts, lists, numbers, strings; numpy values -> Python)."""
    if depth > _MAX_DEPTH:
        raise CheckpointError("the pickle nests settings too deeply")
    if isinstance(obj, dict):
        return {k: _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v, depth + 1) for v in obj) if not isinstance(obj, torch.Size) else list(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, _NumpyArrayRecord):
        return obj.array.tolist() if obj.array is not None else None
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


@dataclass
class NetworkRecord:
    """One network read from a pickle: NVlabs class name, constructor settings and weights."""

    key: str
    class_name: str
    init_kwargs: dict
    state_dict: "collections.OrderedDict[str, torch.Tensor]"
    module_classes: dict[str, str] = field(default_factory=dict)  # dotted path -> class name ('' = root)
    module_src: str = ""

    def source_mentions(self, text: str) -> bool:
        return text in self.module_src


@dataclass
class NetworkPickle:
    path: str
    keys: list[str]
    networks: dict[str, NetworkRecord]
    training_set_kwargs: dict | None = None


def _module_state(record: Any) -> dict:
    if isinstance(record, (PersistentRecord, TorchModuleRecord)):
        return record.state
    raise CheckpointError(f"expected a network module, found {type(record).__name__}")


def _flatten(record: Any, key: str, source: str) -> NetworkRecord:
    state_dict: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
    classes: dict[str, str] = {}
    seen: set[int] = set()

    def walk(rec: Any, prefix: str, depth: int) -> None:
        if depth > _MAX_DEPTH or id(rec) in seen:
            raise CheckpointError(f"{source}: network {key!r} has a module tree that loops or nests too deeply")
        seen.add(id(rec))
        st = _module_state(rec)
        classes[prefix[:-1]] = rec.class_name
        skip = st.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            entries = st.get(group) or {}
            if not isinstance(entries, dict):
                raise CheckpointError(f"{source}: {prefix or key} has a malformed {group} table")
            for name, t in entries.items():
                if t is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(t, torch.Tensor):
                    raise CheckpointError(f"{source}: {prefix}{name} is a {type(t).__name__}, not a tensor")
                state_dict[prefix + name] = t
        modules = st.get("_modules") or {}
        if not isinstance(modules, dict):
            raise CheckpointError(f"{source}: {prefix or key} has a malformed _modules table")
        for name, child in modules.items():
            if child is not None:
                walk(child, f"{prefix}{name}.", depth + 1)

    walk(record, "", 0)
    root_state = _module_state(record)
    kwargs = root_state.get("_init_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{source}: network {key!r} has no readable constructor settings")
    src = record.module_src if isinstance(record, PersistentRecord) else ""
    return NetworkRecord(key=key, class_name=record.class_name, init_kwargs=_plain(kwargs),
                         state_dict=state_dict, module_classes=classes, module_src=src)


NETWORK_KEYS = ("G", "D", "G_ema")


def sniff_format(path: str | os.PathLike) -> str:
    """'folder', 'zip' (torch.save), 'torch-legacy' (old torch.save), 'pickle'; raises otherwise."""
    p = Path(path)
    if p.is_dir():
        return "folder"
    if not p.exists():
        raise CheckpointError(f"{p} does not exist. Pass an NVlabs network pickle (.pkl), a rosinality "
                              f"checkpoint (.pt) or a converted model folder.")
    with open(p, "rb") as f:
        head = f.read(64)
    if not head:
        raise CheckpointError(f"{p} is empty (0 bytes); the download or copy did not finish.")
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head[:1] == b"\x80" and len(head) >= 2 and 2 <= head[1] <= 5:
        # Old-style torch.save files begin with a pickled magic number (a long int).
        if (head[2:3] == b"\x8a" and head[3:4] == b"\x0a"
                and head[4:14] == (0x1950A86A20F9469CFC6C).to_bytes(10, "little")):
            return "torch-legacy"
        return "pickle"
    kind = _describe_bytes(head)
    raise CheckpointError(f"{p} is not a network pickle or PyTorch checkpoint ({kind}). Pass an NVlabs "
                          f"StyleGAN2 .pkl, a rosinality .pt or a converted model folder.")


def _describe_bytes(head: bytes) -> str:
    known = {b"\x89PNG": "it is a PNG image", b"\xff\xd8\xff": "it is a JPEG image", b"GIF8": "it is a GIF image",
             b"\x1f\x8b": "it is gzip-compressed", b"<": "it looks like HTML/XML text",
             b"{": "it looks like JSON text", b"version https://git-lfs": "it is a Git LFS pointer, not the data"}
    for magic, what in known.items():
        if head.startswith(magic):
            return what
    text = head.decode("utf-8", errors="ignore")  # a multi-byte character may be cut at the end
    if len(text) >= len(head) // 2 and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "it looks like text"
    return f"it starts with bytes {head[:8].hex(' ')}"


def read_network_pickle(path: str | os.PathLike) -> NetworkPickle:
    """Read an NVlabs network pickle safely; networks come back as :class:`NetworkRecord`.

    A pickle holding a single network object (not the usual dict) is accepted under key ``"G"``,
    ``"D"`` by its class name.
    """
    path = Path(path)
    fmt = sniff_format(path)
    if fmt != "pickle":
        raise CheckpointError(f"{path} is a torch.save checkpoint, not an NVlabs network pickle.")
    with open(path, "rb") as f:
        obj = restricted_load(f, str(path))
    if isinstance(obj, (PersistentRecord, TorchModuleRecord)):
        key = "D" if obj.class_name == "Discriminator" else "G"
        return NetworkPickle(str(path), [key], {key: _flatten(obj, key, str(path))})
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is a pickle but not a StyleGAN2 network pickle: it holds a "
                              f"{type(obj).__name__}, not a dict with G, D and G_ema.")
    keys = [str(k) for k in obj.keys()]
    networks = {}
    for key in NETWORK_KEYS:
        value = obj.get(key)
        if isinstance(value, (PersistentRecord, TorchModuleRecord)):
            networks[key] = _flatten(value, key, str(path))
    if not networks:
        shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "") if keys else "no keys"
        raise CheckpointError(f"{path} is a pickle but not a StyleGAN2 network pickle: it holds a dict "
                              f"with {shown}, but no network under G, D or G_ema.")
    tsk = obj.get("training_set_kwargs")
    return NetworkPickle(str(path), keys, networks, _plain(tsk) if isinstance(tsk, dict) else None)
