"""Device and dtype policy, in one place: CUDA when present, else CPU; fp32 on CPU.

Half precision is only used on CUDA; asking for it on a CPU falls back to fp32 with a warning,
because CPU half-precision kernels are slow or missing for convolutions.
"""

from __future__ import annotations

import os
import warnings

import torch

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def get_device(name: str | torch.device | None = None) -> torch.device:
    """``None``/"auto" -> cuda:0 when available, else cpu; otherwise the named device.

    A name that is not a device, a device type other than cpu and cuda (``meta``, ``mps``, ...), or
    CUDA on a machine without it raises a one-line ``UserError`` with what to do.
    """
    from hdvila.errors import UserError

    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UserError(f"device {name!r} is not a device name; use cpu, cuda or cuda:N (or auto).") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"device {name!r}: only cpu and cuda are supported; use cpu, cuda or cuda:N (or auto).")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available here; use --device cpu.")
    return dev


def get_dtype(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Resolve a dtype name ("auto", "fp32", "fp16", "bf16") for ``device``; "auto" is fp32 on CPU
    and fp16 on CUDA."""
    if isinstance(name, torch.dtype):
        dtype = name
    elif name is None or name == "auto":
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    else:
        if name not in _DTYPES:
            raise ValueError(f"unknown dtype {name!r}; choose from auto, fp32, fp16, bf16")
        dtype = _DTYPES[name]
    if device.type == "cpu" and dtype != torch.float32:
        warnings.warn(f"{dtype} requested on CPU; using float32 instead", stacklevel=2)
        dtype = torch.float32
    return dtype


def suggested_cpu_threads(processes: int = 1) -> int:
    """Threads per process for CPU work: the cores this process may use, divided among ``processes``
    local processes, and no more than the cores other programs leave idle (1-minute load average).

    Oversubscribed threads wait for each other at every parallel region, so on a machine busy with
    other jobs fewer threads are faster; on an idle machine this returns all cores (speeds:
    docs/results.md).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    processes = max(1, processes)
    try:
        idle = cpus - os.getloadavg()[0]
    except (AttributeError, OSError):
        idle = cpus
    return max(1, min(cpus // processes, int(idle + 0.5) // processes))


#: Kinds of CPU work :func:`use_cpu_threads` knows.
CPU_WORK = ("render", "compute")


def use_cpu_threads(work: str = "compute", processes: int = 1) -> int:
    """Set torch's intra-op thread count for this process by the kind of ``work``; returns it.

    The one place that decides CPU threads for the commands:

    - ``"render"``: 1 thread per rendering process. Rendering and encoding the demo domain works on
      one small frame at a time, and the H.264 encoder runs its own threads beside torch's, so
      more torch threads only add waiting (oversubscription);
    - ``"compute"``: :func:`suggested_cpu_threads` for ``processes`` local processes (model
      forward/backward passes on large tensors, where threads pay off while cores are idle).
    """
    if work not in CPU_WORK:
        raise ValueError(f"work must be one of {CPU_WORK}, got {work!r}")
    threads = 1 if work == "render" else suggested_cpu_threads(processes)
    torch.set_num_threads(threads)
    return threads
