"""Build, cache and choose the compiled StyleGAN2 ops.

The C++ (CPU) and CUDA kernels in ``csrc/`` are compiled with ninja by
``torch.utils.cpp_extension.load`` the first time they are needed. Builds are cached under
``$HDVILA_EXTENSIONS_DIR`` (default ``~/.cache/hdvila/torch_extensions``) in a folder whose name
hashes the sources, the torch/CUDA/Python versions and the flags, so a stale build from another
torch or an older source is never picked up (a known pain with ``~/.cache/torch_extensions``).
The sources are compiled from a copy inside that folder (``src/``): ninja records absolute source
paths, so two checkouts of one version (a development tree and an installed copy) that compiled
their own files would each see the other's build as stale and recompile on every alternation.

A server can start the build in a background thread (:func:`build_in_background`) and keep serving
in the meantime: while it runs, ``'auto'`` picks the reference path instead of waiting for it.

A build that fails emits ONE warning per extension and the ops fall back to their plain-PyTorch
reference paths: nothing crashes because a compiler is missing.

Which path runs (``impl``):

- ``'ref'``: the PyTorch reference (always correct, any device, any order of gradients);
- ``'compiled'``: the kernel for the tensor's device (CPU C++ or CUDA), else the reference;
- ``'auto'`` (default): CUDA tensors use the CUDA kernel; CPU tensors use the C++ kernel only for
  the ops listed in :data:`CPU_PREFERS_COMPILED` and dense float32/float64 tensors, chosen by
  measurement (see that constant).

The environment variable ``HDVILA_OPS_IMPL`` (``auto``/``ref``/``compiled``) replaces ``'auto'``,
e.g. ``HDVILA_OPS_IMPL=ref`` to never build anything.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import sysconfig
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch

CSRC = Path(__file__).resolve().parent / "csrc"

#: Sources of each extension, relative to ``csrc/``; headers are part of the cache key too.
SOURCES: dict[str, list[str]] = {"cpu": ["ops_cpu.cpp"], "cuda": ["ops_cuda.cpp", "ops_cuda.cu"]}
HEADERS = ["sg2_math.h"]
# -fopenmp makes at::parallel_for in the CPU kernels use torch's OpenMP threads (without it the
# pragma is ignored and the kernels run on one thread); libgomp is the one torch already loaded.
# -fno-trapping-math lets GCC turn the activations' selects (lrelu, clamp) into vector code.
# Tuples, passed to the loader as fresh lists: cpp_extension.load appends its own flags to the lists
# it is given, which changed the cache key of the next build in the same process (a full rebuild
# into another folder; on the GPU machine a killed rebuild's lock then stalled the next process).
CFLAGS = ("-O3", "-fopenmp", "-fno-trapping-math")
LDFLAGS = ("-fopenmp",)
CUDA_CFLAGS = ("-O3",)

#: Ops whose C++ kernel beats the reference on CPU, so 'auto' uses it for CPU tensors
#: (benchmarks/bench_stylegan2.py; speeds: docs/results.md). The reference convolves the
#: inserted zeros and the dropped samples of up/downsampling; the kernel skips them.
#: Only for dense row-major float32/float64 tensors: for bfloat16 (autocast) and channels-last
#: tensors the oneDNN-backed reference is faster, as the kernels are scalar and need a row-major
#: copy (benchmarks/bench_train_step.py; speeds: docs/results.md).
CPU_PREFERS_COMPILED: frozenset[str] = frozenset({"upfirdn2d", "bias_act"})
CPU_COMPILED_DTYPES = (torch.float32, torch.float64)

IMPLS = ("auto", "ref", "compiled")

_lock = threading.Lock()
_modules: dict[str, ModuleType | None] = {}
_errors: dict[str, BaseException] = {}
_loaded: dict[Path, ModuleType] = {}  # build folder -> module: each build is loaded once per process
_building: set[str] = set()  # kinds being built by build_in_background
BACKGROUND_NICE = 10  # niceness of a background build (Linux: per thread, inherited by the compiler)


class ExtensionBuildError(RuntimeError):
    """A compiled op could not be built or loaded."""


def extensions_dir() -> Path:
    """Folder that caches the builds: ``$HDVILA_EXTENSIONS_DIR`` or ``~/.cache/hdvila/torch_extensions``."""
    env = os.environ.get("HDVILA_EXTENSIONS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hdvila" / "torch_extensions"


def _build_key(kind: str, sources: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sources + [CSRC / name for name in HEADERS]:
        h.update(path.name.encode())
        h.update(path.read_bytes() if path.exists() else b"<missing>")
    flags = [*CFLAGS, *LDFLAGS, *(CUDA_CFLAGS if kind == "cuda" else ())]
    meta = [torch.__version__, str(torch.version.cuda), sys.version, sysconfig.get_platform(), *flags]
    if kind == "cuda":
        meta.append(os.environ.get("TORCH_CUDA_ARCH_LIST", ""))
    h.update("\0".join(meta).encode())
    return h.hexdigest()[:16]


def _ensure_ninja_on_path() -> None:
    """``cpp_extension`` runs ``ninja`` from PATH; a venv's ninja is not there unless activated."""
    if shutil.which("ninja"):
        return
    candidates = [Path(sys.executable).parent]
    try:
        import ninja  # the PyPI package ships the binary

        candidates.append(Path(ninja.BIN_DIR))
    except (ImportError, AttributeError):
        pass
    for folder in candidates:
        if (folder / "ninja").exists():
            os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
            return


def _cpp_extension():
    # Importing it on a machine without a CUDA runtime logs "No CUDA runtime is found"; that is
    # expected for CPU builds and not worth a line in every user's console.
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        logger.setLevel(level)
    return cpp_extension


#: A build lock older than this is left over from a killed build (torch would wait on it forever).
STALE_LOCK_SECONDS = 600


def _remove_stale_lock(build_dir: Path, cpp_extension) -> None:
    """Older torch (FileBaton) treats the mere existence of ``lock`` as "a build is running", so a
    killed build blocks every later one forever. Newer torch holds an OS-level lock on that file
    instead (it stays on disk and must not be deleted); then there is nothing to do."""
    if getattr(cpp_extension, "FileBaton", None) is None:
        return
    lock = build_dir / "lock"
    try:
        if time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
            lock.unlink()
            warnings.warn(f"removed a stale build lock {lock} left by an interrupted build", RuntimeWarning,
                          stacklevel=4)
    except FileNotFoundError:
        pass


def build_folder(kind: str) -> Path:
    """The cache folder of the ``kind`` build for these sources, this torch and these flags."""
    sources = [CSRC / name for name in SOURCES[kind]]
    return extensions_dir() / f"hdvila_stylegan2_ops_{kind}_{_build_key(kind, sources)}"


def _copy_sources(kind: str, build_dir: Path) -> Path:
    """``build_dir/src`` holding the sources and headers of ``kind``; a file already there is left
    alone (the folder's key is their content, so it matches), since a rewrite would touch its mtime
    and make ninja recompile."""
    from hdvila.atomic import atomic_write_bytes

    src = build_dir / "src"
    for file in SOURCES[kind] + HEADERS:
        data = (CSRC / file).read_bytes()
        target = src / Path(file).name
        if not target.is_file() or target.read_bytes() != data:
            atomic_write_bytes(target, data)
    return src


def build_extension(kind: str) -> ModuleType:
    """Compile (or load from the cache) the ``kind`` ('cpu' or 'cuda') extension; raises
    :class:`ExtensionBuildError` with the compiler's message on failure. A build loaded once in this
    process is returned again without calling the loader (no caching of failures)."""
    cpp_extension = _cpp_extension()

    if kind not in SOURCES:
        raise ValueError(f"unknown extension kind {kind!r}; expected one of {sorted(SOURCES)}")
    sources = [CSRC / name for name in SOURCES[kind]]
    name = f"hdvila_stylegan2_ops_{kind}"
    build_dir = build_folder(kind)
    if build_dir in _loaded:
        return _loaded[build_dir]
    # A first build takes minutes; say so, or the command looks hung (the loader itself is silent).
    fresh = not (build_dir / f"{name}.so").is_file()
    started = time.perf_counter()
    if fresh:
        print(f"building StyleGAN2 {kind} ops (one time) in {build_dir} ...", file=sys.stderr, flush=True)
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_lock(build_dir, cpp_extension)
        src = _copy_sources(kind, build_dir)
        _ensure_ninja_on_path()
        module = cpp_extension.load(
            name=name, sources=[str(src / s.name) for s in sources], build_directory=str(build_dir),
            extra_cflags=list(CFLAGS), extra_ldflags=list(LDFLAGS),
            extra_cuda_cflags=list(CUDA_CFLAGS) if kind == "cuda" else None, extra_include_paths=[str(src)],
            with_cuda=(kind == "cuda"), verbose=False)
    except Exception as e:  # compiler errors surface as RuntimeError, missing tools as OSError etc.
        raise ExtensionBuildError(f"building the StyleGAN2 {kind} ops in {build_dir} failed: "
                                  f"{type(e).__name__}: {_tail(str(e))}") from e
    if fresh:
        print(f"built the StyleGAN2 {kind} ops in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    _loaded[build_dir] = module
    return module


def _tail(message: str, lines: int = 12) -> str:
    parts = message.strip().splitlines()
    return "\n".join(parts[-lines:]) if len(parts) > lines else message.strip()


def get_extension(kind: str, wait: bool = True) -> ModuleType | None:
    """The ``kind`` extension, built on first use; ``None`` (after one warning) if it cannot be built.
    With ``wait=False``, ``None`` while a background build (:func:`build_in_background`) is running."""
    if not wait and kind in _building:
        return None
    with _lock:
        if kind in _modules:
            return _modules[kind]
        _load_or_warn(kind)
        return _modules[kind]


def _load_or_warn(kind: str) -> None:
    """Build ``kind`` into ``_modules`` (None after one warning on failure); called holding ``_lock``."""
    try:
        module: ModuleType | None = build_extension(kind)
    except ExtensionBuildError as e:
        module = None
        _errors[kind] = e
        warnings.warn(
            f"{e}\nFalling back to the (slower) PyTorch reference implementation of the StyleGAN2 ops; "
            f"results are the same. To fix the build, install ninja and a C++ compiler"
            f"{' and the CUDA toolkit (nvcc) matching torch.version.cuda' if kind == 'cuda' else ''}; "
            f"to silence this, set HDVILA_OPS_IMPL=ref.", RuntimeWarning, stacklevel=4)
    _modules[kind] = module


def build_in_background(device: str | torch.device = "cpu", log=None) -> threading.Thread | None:
    """Build (or load) the extension that ``'auto'`` uses on ``device`` in a daemon thread, and return
    the thread; until it is done, ``'auto'`` runs the reference path instead of waiting for the
    compiler (a web server answers its first request in seconds, not after a 20-90 s build).
    ``log(message)`` (default: print to stderr) hears when the build starts and ends. ``None`` when
    there is nothing to build: the extension is already loaded, or the policy never uses it."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    kind = torch.device(device).type
    impl = os.environ.get("HDVILA_OPS_IMPL", "auto") or "auto"
    if kind not in SOURCES or impl == "ref" or kind in _modules or kind in _building:
        return None

    def run() -> None:
        started = time.perf_counter()
        try:  # this thread and the compiler it starts yield the CPU to the requests being served
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        except (AttributeError, OSError):  # not on this platform, or not allowed
            pass
        try:
            with _lock:
                if kind not in _modules:
                    _load_or_warn(kind)
        finally:
            _building.discard(kind)
        if _modules.get(kind) is not None:
            log(f"StyleGAN2 {kind} ops ready after {time.perf_counter() - started:.0f} s; "
                "using the compiled ops from now on")

    _building.add(kind)
    log(f"preparing the StyleGAN2 {kind} ops in the background; the PyTorch reference ops serve until they are ready")
    thread = threading.Thread(target=run, name=f"hdvila-ops-build-{kind}", daemon=True)
    thread.start()
    return thread


def last_error(kind: str) -> BaseException | None:
    """The error of the failed build of ``kind`` in this process, if any."""
    return _errors.get(kind)


def reset_cache() -> None:
    """Forget loaded and failed builds in this process (tests; after fixing a toolchain)."""
    with _lock:
        _modules.clear()
        _errors.clear()
        _loaded.clear()


def prepare(device: str | torch.device = "cpu") -> ModuleType | None:
    """Build or load now the extension that ``'auto'`` (or ``HDVILA_OPS_IMPL``) would use for dense
    float32 tensors on ``device``, so that a first build happens here and not inside timed work
    (the projector calls it before it starts its clock). Returns that module, or ``None`` when the
    reference path will run (or the build failed, after its one warning)."""
    op = min(CPU_PREFERS_COMPILED, default="upfirdn2d")  # on CPU only these ops ever use a kernel
    return resolve("auto", op, torch.empty(1, device=device))


def resolve(impl: str, op: str, x: torch.Tensor) -> ModuleType | None:
    """The compiled module ``op`` should use for tensor ``x`` under ``impl``, or ``None`` for the
    reference path."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        impl = os.environ.get("HDVILA_OPS_IMPL", "auto") or "auto"
        if impl not in IMPLS:
            raise ValueError(f"HDVILA_OPS_IMPL must be one of {IMPLS}, got {impl!r}")
    if impl == "ref":
        return None
    kind = x.device.type
    if kind not in ("cpu", "cuda"):
        return None
    if impl == "auto" and kind == "cpu" and (op not in CPU_PREFERS_COMPILED or x.dtype not in CPU_COMPILED_DTYPES
                                             or not x.is_contiguous()):
        return None
    return get_extension(kind, wait=impl != "auto")
