"""StyleGAN2 ops: known answers, compiled vs reference, gradients of 1st/2nd order, fallback.

The C++ (CPU) extension is built with ninja here (first run ~30 s, then cached); if it cannot be
built the tests FAIL: a silent fallback would leave the compiled path untested.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from generation.stylegan2.ops import (
    ACTIVATIONS,
    _build,
    bias_act,
    build_extension,
    conv2d_resample,
    downsample2d,
    extensions_dir,
    filter2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)
from generation.stylegan2.ops.conv2d_resample import _conv2d_resample_generic

BOTH = ["ref", "compiled"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (fixture in conftest.py)


@pytest.fixture(scope="module", autouse=True)
def cpu_extension():
    """Build the CPU extension once; a failed build fails every test here (loudly, not a skip)."""
    module = build_extension("cpu")  # raises ExtensionBuildError with the compiler output
    _build._modules["cpu"] = module  # what get_extension would cache
    return module


@pytest.fixture
def isolated_build_cache():
    """Let a test break the build without affecting the others."""
    saved = [(cache, dict(cache)) for cache in (_build._modules, _build._errors, _build._loaded)]
    _build.reset_cache()
    yield
    _build.reset_cache()
    for cache, content in saved:
        cache.update(content)


def ramp() -> torch.Tensor:
    return torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)


# ----------------------------------------------------------------------------------------------
# Known answers: /work/shared/docs/checks.md "StyleGAN2 ops" (values of the NVlabs reference path,
# filter [1,3,3,1], x = arange(16) as 1x1x4x4).

@pytest.mark.parametrize("impl", BOTH)
def test_upsample2d_known_answer(impl):
    y = upsample2d(ramp(), setup_filter([1, 3, 3, 1]), impl=impl)
    assert y.shape == (1, 1, 8, 8)
    torch.testing.assert_close(y[0, 0, 0], torch.tensor([0, .1875, .5625, .9375, 1.3125, 1.6875, 2.0625, 1.6875]))
    torch.testing.assert_close(y[0, 0, -1],
                               torch.tensor([6.75, 9.1875, 9.5625, 9.9375, 10.3125, 10.6875, 11.0625, 8.4375]))


@pytest.mark.parametrize("impl", BOTH)
def test_downsample2d_and_filter2d_known_answers(impl):
    f = setup_filter([1, 3, 3, 1])
    torch.testing.assert_close(downsample2d(ramp(), f, impl=impl)[0, 0],
                               torch.tensor([[2.734375, 3.9375], [7.546875, 8.75]]))
    expected = torch.tensor([[.3125, .75, 1.25, 1.4375], [1.359375, 2.734375, 3.8125, 3.9375],
                             [3.125, 5.875, 7.5, 7.25], [4.109375, 7.546875, 9.3125, 8.75]])
    torch.testing.assert_close(filter2d(ramp(), f, impl=impl)[0, 0], expected)


@pytest.mark.parametrize("impl", BOTH)
def test_upsample2d_of_ones_keeps_interior_constant(impl):
    y = upsample2d(torch.ones(1, 1, 4, 4), setup_filter([1, 3, 3, 1]), impl=impl)[0, 0]
    assert torch.allclose(y[1:-1, 1:-1], torch.ones(6, 6))
    assert torch.allclose(y[0, 1:-1], torch.full([6], .75)) and torch.allclose(y[1:-1, -1], torch.full([6], .75))
    assert y[0, 0].item() == pytest.approx(.5625) and y[-1, -1].item() == pytest.approx(.5625)


@pytest.mark.parametrize("impl", BOTH)
def test_bias_act_known_answers(impl):
    x = torch.tensor([-1.0, 0.0, 2.0]).reshape(1, 3)
    # lrelu defaults: alpha 0.2, gain sqrt(2) (checks.md)
    torch.testing.assert_close(bias_act(x, act="lrelu", impl=impl)[0], torch.tensor([-0.282843, 0.0, 2.828427]))
    b = torch.full([3], 0.5)
    torch.testing.assert_close(bias_act(x, b, act="lrelu", clamp=1, impl=impl)[0],
                               torch.tensor([-0.141421, 0.707107, 1.0]))


def test_setup_filter_conventions():
    f = setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.sum().item() == pytest.approx(1.0)
    assert f[0, 0].item() == pytest.approx(1 / 64) and f[1, 1].item() == pytest.approx(9 / 64)
    assert setup_filter([1] * 8).shape == (8,)  # 8+ taps: separable
    assert setup_filter(None).shape == (1, 1)
    assert setup_filter([1, 3, 3, 1], gain=4).sum().item() == pytest.approx(4.0)


# ----------------------------------------------------------------------------------------------
# Compiled (C++) vs reference on CPU.

UPFIRDN_CASES = [
    dict(up=2, padding=[2, 1, 2, 1], gain=4),
    dict(down=2, padding=[1, 1, 1, 1]),
    dict(up=(2, 1), down=(1, 3), padding=[0, 3, 2, -1], flip_filter=True),
    dict(up=3, down=2, padding=[-1, 2, 1, 0], gain=2.5),
    dict(padding=[-2, 1, 0, -1]),
]


@pytest.mark.parametrize("case", UPFIRDN_CASES)
@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 3, 4, 5, 6, 7, 8], [[1, 2, 0], [0, 3, 1]]])
def test_upfirdn2d_compiled_matches_reference(case, taps):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 12)
    f = setup_filter(taps) if not isinstance(taps[0], list) else torch.tensor(taps, dtype=torch.float32) / 7
    ref = upfirdn2d(x, f, impl="ref", **case)
    out = upfirdn2d(x, f, impl="compiled", **case)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_compiled_matches_reference(act):
    torch.manual_seed(1)
    x = torch.randn(3, 5, 4, 6) * 3
    b = torch.randn(4)
    for kwargs in (dict(), dict(b=b, dim=2, clamp=1.5), dict(b=b, dim=2, alpha=0.3, gain=0.7)):
        ref = bias_act(x, act=act, impl="ref", **kwargs)
        out = bias_act(x, act=act, impl="compiled", **kwargs)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    x.requires_grad_(True)
    gr = torch.autograd.grad(bias_act(x, b, dim=2, act=act, impl="ref").square().sum(), x)[0]
    gc = torch.autograd.grad(bias_act(x, b, dim=2, act=act, impl="compiled").square().sum(), x)[0]
    torch.testing.assert_close(gc, gr, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Gradients in float64, first and second order, both paths.

@pytest.mark.parametrize("impl", BOTH)
@pytest.mark.parametrize("case", [dict(up=2, padding=[2, 1, 2, 1], gain=4), dict(down=2, padding=[1, 1, 1, 1]),
                                  dict(up=(2, 1), down=(1, 2), padding=[1, 0, -1, 2])])
def test_upfirdn2d_gradcheck_and_gradgradcheck(impl, case):
    torch.manual_seed(2)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    f = setup_filter([1, 3, 3, 1]).double()

    def fn(t):
        return upfirdn2d(t, f, impl=impl, **case)

    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


@pytest.mark.parametrize("impl", BOTH)
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_gradcheck_and_gradgradcheck(impl, act):
    torch.manual_seed(3)
    x = (torch.randn(2, 3, 4, dtype=torch.float64) * 2).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    clamp = 2.0 if act in ("lrelu", "swish") else None

    def fn(t, bias):
        return bias_act(t, bias, act=act, clamp=clamp, impl=impl)

    assert gradcheck(fn, (x, b))
    assert gradgradcheck(fn, (x, b))


def test_compiled_bias_act_refuses_third_order():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = bias_act(x, act="tanh", impl="compiled").sum()
    (g,) = torch.autograd.grad(y, x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(gg.sum(), x)


def test_r1_style_double_backward_through_conv2d_resample_compiled_matches_reference():
    """R1 needs d/dw of ||d D(x)/dx||^2: double backward through conv + upfirdn2d + bias_act."""
    torch.manual_seed(4)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    f = setup_filter([1, 3, 3, 1]).double()
    grads = {}
    for impl in BOTH:
        y = conv2d_resample(x, w, f=f, down=2, padding=1, impl=impl)
        y = bias_act(y, act="lrelu", impl=impl)
        (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        grads[impl] = torch.autograd.grad(gx.square().sum(), w)[0]
    assert grads["ref"].abs().sum() > 0
    torch.testing.assert_close(grads["compiled"], grads["ref"])


# ----------------------------------------------------------------------------------------------
# conv2d_resample fast paths vs its defining form.

@pytest.mark.parametrize("kernel,up,down,groups,flip_weight", [
    (3, 2, 1, 1, False), (3, 2, 1, 2, False), (3, 2, 1, 1, True), (3, 1, 2, 1, True), (3, 1, 2, 3, True),
    (1, 2, 1, 1, True), (1, 1, 2, 1, True), (3, 1, 1, 1, True), (3, 2, 2, 1, False), (2, 2, 1, 1, False)])
def test_conv2d_resample_fast_paths_match_generic(kernel, up, down, groups, flip_weight):
    torch.manual_seed(5)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    w = torch.randn(12, 6 // groups, kernel, kernel, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1]).double()
    kwargs = dict(f=f, up=up, down=down, padding=kernel // 2, groups=groups, flip_weight=flip_weight, impl="ref")
    fast = conv2d_resample(x, w, **kwargs)
    torch.testing.assert_close(fast, _conv2d_resample_generic(x, w, **kwargs))
    if kernel % 2:
        assert fast.shape[2:] == (8 * up // down, 8 * up // down)


def test_conv2d_resample_with_identity_weight_is_plain_resampling():
    x = torch.randn(1, 2, 6, 6)
    f = setup_filter([1, 3, 3, 1])
    eye = torch.eye(2).reshape(2, 2, 1, 1)
    torch.testing.assert_close(conv2d_resample(x, eye, f=f, up=2), upsample2d(x, f, impl="ref"))
    torch.testing.assert_close(conv2d_resample(x, eye, f=f, down=2), downsample2d(x, f, impl="ref"))


# ----------------------------------------------------------------------------------------------
# Build cache, implementation choice and the fallback.

def test_cpu_extension_is_cached_under_extensions_dir(cpu_extension):
    assert extensions_dir().resolve() in Path(cpu_extension.__file__).resolve().parents


def test_a_loaded_build_is_not_loaded_again(monkeypatch):
    """A second build_extension of the same build in one process returns the loaded module without
    calling the loader again (on the GPU machine the second call rebuilt the CUDA ops, and a killed
    rebuild's lock stalled the next benchmark)."""
    from torch.utils import cpp_extension

    first = build_extension("cpu")

    def no_second_load(*args, **kwargs):
        raise AssertionError("cpp_extension.load called again for a loaded build")

    monkeypatch.setattr(cpp_extension, "load", no_second_load)
    assert build_extension("cpu") is first
    x = torch.randn(1, 2, 4, 4)
    torch.testing.assert_close(upsample2d(x, setup_filter([1, 3, 3, 1]), impl="compiled"),
                               upsample2d(x, setup_filter([1, 3, 3, 1]), impl="ref"))


def test_loading_leaves_the_build_key_alone(isolated_build_cache):
    """cpp_extension.load appends to the flag lists it is given; the cache key must not change with
    them, or the next build_extension in the process rebuilds into another folder."""
    sources = [_build.CSRC / name for name in _build.SOURCES["cpu"]]
    before = _build._build_key("cpu", sources)
    build_extension("cpu")
    assert _build._build_key("cpu", sources) == before
    assert list(_build._loaded) == [extensions_dir() / f"hdvila_stylegan2_ops_cpu_{before}"]


def test_impl_policy(monkeypatch):
    monkeypatch.delenv("HDVILA_OPS_IMPL", raising=False)
    x = torch.zeros(1)
    with pytest.raises(ValueError, match="impl"):
        _build.resolve("fast", "bias_act", x)
    assert _build.resolve("ref", "bias_act", x) is None
    assert _build.resolve("compiled", "bias_act", torch.zeros(1, device="meta")) is None
    assert _build.resolve("compiled", "bias_act", x) is _build._modules["cpu"]
    monkeypatch.setattr(_build, "CPU_PREFERS_COMPILED", frozenset({"upfirdn2d"}))
    assert _build.resolve("auto", "upfirdn2d", x) is _build._modules["cpu"]
    assert _build.resolve("auto", "bias_act", x) is None
    # bf16 (autocast) and channels-last tensors take the reference on CPU; 'compiled' still forces the kernel.
    assert _build.resolve("auto", "upfirdn2d", x.bfloat16()) is None
    x_cl = torch.zeros(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    assert _build.resolve("auto", "upfirdn2d", x_cl) is None
    assert _build.resolve("auto", "upfirdn2d", x_cl.contiguous()) is _build._modules["cpu"]
    assert _build.resolve("compiled", "upfirdn2d", x_cl) is _build._modules["cpu"]
    monkeypatch.setenv("HDVILA_OPS_IMPL", "ref")
    assert _build.resolve("auto", "upfirdn2d", x) is None


def _ops_outputs(impl):
    torch.manual_seed(6)
    x = torch.randn(2, 3, 6, 6)
    f = setup_filter([1, 3, 3, 1])
    return [upsample2d(x, f, impl=impl), downsample2d(x, f, impl=impl),
            bias_act(x, torch.ones(3), act="lrelu", impl=impl)]


def test_broken_source_warns_once_and_falls_back(tmp_path, monkeypatch, isolated_build_cache):
    broken = tmp_path / "broken.cpp"
    broken.write_text('#error "deliberately broken source for the fallback test"\n')
    monkeypatch.setitem(_build.SOURCES, "cpu", [str(broken)])
    monkeypatch.setenv("HDVILA_EXTENSIONS_DIR", str(tmp_path / "cache"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outs = _ops_outputs("compiled") + _ops_outputs("compiled")
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert "deliberately broken" in messages[0] and "reference" in messages[0]
    assert any(p.name.startswith("hdvila_stylegan2_ops_cpu_") for p in (tmp_path / "cache").iterdir())
    for out, ref in zip(outs, _ops_outputs("ref") * 2):
        torch.testing.assert_close(out, ref)


def test_loader_exception_warns_once_and_falls_back(monkeypatch, isolated_build_cache):
    from torch.utils import cpp_extension

    def no_ninja(*args, **kwargs):
        raise OSError("ninja: command not found (simulated)")

    monkeypatch.setattr(cpp_extension, "load", no_ninja)
    monkeypatch.delenv("HDVILA_OPS_IMPL", raising=False)
    with pytest.warns(RuntimeWarning, match="simulated") as record:
        outs = _ops_outputs("compiled") + _ops_outputs("auto") + _ops_outputs("compiled")
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    for out, ref in zip(outs, _ops_outputs("ref") * 3):
        torch.testing.assert_close(out, ref)


# ----------------------------------------------------------------------------------------------
# CUDA (run on a GPU machine).

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@cuda
def test_cuda_compiled_matches_reference():
    build_extension("cuda")  # fail loudly if the CUDA build breaks
    torch.manual_seed(7)
    x = torch.randn(2, 3, 9, 7, device="cuda")
    f = setup_filter([1, 3, 3, 1], device="cuda")
    for case in UPFIRDN_CASES:
        torch.testing.assert_close(upfirdn2d(x, f, impl="compiled", **case), upfirdn2d(x, f, impl="ref", **case),
                                   rtol=1e-5, atol=1e-5)
    b = torch.randn(3, device="cuda")
    for act in ACTIVATIONS:
        torch.testing.assert_close(bias_act(x, b, act=act, clamp=2.0, impl="compiled"),
                                   bias_act(x, b, act=act, clamp=2.0, impl="ref"), rtol=1e-5, atol=1e-5)
    xh = x.half()
    torch.testing.assert_close(bias_act(xh, b, act="lrelu", impl="compiled"), bias_act(xh, b, act="lrelu", impl="ref"),
                               rtol=1e-2, atol=1e-2)


@pytest.mark.cuda
@cuda
def test_cuda_gradcheck_and_gradgradcheck():
    torch.manual_seed(8)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, device="cuda", requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, device="cuda", requires_grad=True)
    f = setup_filter([1, 3, 3, 1], device="cuda").double()
    assert gradgradcheck(lambda t: upfirdn2d(t, f, up=2, padding=[2, 1, 2, 1], impl="compiled"), (x,))
    assert gradgradcheck(lambda t: upfirdn2d(t, f, down=2, padding=1, impl="compiled"), (x,))
    assert gradgradcheck(lambda t, bb: bias_act(t, bb, act="lrelu", impl="compiled"), (x, b))
    assert gradgradcheck(lambda t, bb: bias_act(t, bb, act="swish", impl="compiled"), (x, b))
    assert math.isfinite(float(bias_act(x, b, act="selu", impl="compiled").sum()))


def test_stale_build_lock_is_removed_only_for_file_baton_torch(tmp_path):
    """Old torch (FileBaton) waits forever on a lock file left by a killed build; new torch keeps
    an OS-level lock on that file, which must be left alone."""
    from types import SimpleNamespace

    lock = tmp_path / "lock"
    lock.write_text("")
    old = _build.time.time() - _build.STALE_LOCK_SECONDS - 5
    os.utime(lock, (old, old))
    _build._remove_stale_lock(tmp_path, SimpleNamespace())  # new torch: no FileBaton
    assert lock.exists()
    file_baton_torch = SimpleNamespace(FileBaton=object)
    with pytest.warns(RuntimeWarning, match="stale build lock"):
        _build._remove_stale_lock(tmp_path, file_baton_torch)
    assert not lock.exists()
    lock.write_text("")  # a fresh lock belongs to a build in progress: keep it
    _build._remove_stale_lock(tmp_path, file_baton_torch)
    assert lock.exists()


# ----------------------------------------------------------------------------------------------
# One build for every checkout, and a build that does not block a server.

def test_build_compiles_a_copy_of_the_sources_inside_its_folder(cpu_extension):
    """ninja records absolute source paths: a build of one checkout's files looks stale to another
    checkout of the same version, which then recompiles on every alternation. Every path the build
    reads must lie inside the build folder, whose key is the sources' content."""
    build_dir = _build.build_folder("cpu")
    ninja_file = (build_dir / "build.ninja").read_text()
    assert str(_build.CSRC) not in ninja_file
    for name in _build.SOURCES["cpu"] + _build.HEADERS:
        assert (build_dir / "src" / name).read_bytes() == (_build.CSRC / name).read_bytes()
        if name.endswith(".cpp"):
            assert str(build_dir / "src" / name) in ninja_file


def test_a_second_checkout_reuses_the_build(tmp_path, monkeypatch, isolated_build_cache):
    """A copy of the sources elsewhere (an installed copy beside a development tree) maps to the same
    build folder and loads it without compiling."""
    import shutil

    from torch.utils import cpp_extension

    build_extension("cpu")
    first = _build.build_folder("cpu")
    so = first / "hdvila_stylegan2_ops_cpu.so"
    stamp = so.stat().st_mtime_ns
    other = tmp_path / "checkout" / "csrc"
    shutil.copytree(_build.CSRC, other)
    monkeypatch.setattr(_build, "CSRC", other)
    _build.reset_cache()
    seen = {}
    real_load = cpp_extension.load

    def spy(**kwargs):
        seen.update(kwargs)
        return real_load(**kwargs)

    monkeypatch.setattr(cpp_extension, "load", spy)
    build_extension("cpu")
    assert _build.build_folder("cpu") == first
    assert all(Path(s).parent == first / "src" for s in seen["sources"])
    assert so.stat().st_mtime_ns == stamp, "the second checkout recompiled the ops"


def test_background_build_serves_the_reference_until_ready(monkeypatch, isolated_build_cache):
    """While build_in_background runs, 'auto' takes the reference path at once (a web server's first
    request must not wait for the compiler); afterwards it takes the built kernel."""
    import threading

    monkeypatch.delenv("HDVILA_OPS_IMPL", raising=False)
    release, started = threading.Event(), threading.Event()
    real = _build.build_extension

    def slow_build(kind):
        started.set()
        assert release.wait(60)
        return real(kind)

    monkeypatch.setattr(_build, "build_extension", slow_build)
    lines = []
    thread = _build.build_in_background("cpu", log=lines.append)
    assert thread is not None and started.wait(60)
    x = torch.randn(1, 2, 4, 4)
    assert _build.resolve("auto", "upfirdn2d", x) is None  # does not wait for the build
    torch.testing.assert_close(upsample2d(x, setup_filter([1, 3, 3, 1])),
                               upsample2d(x, setup_filter([1, 3, 3, 1]), impl="ref"))
    assert _build.build_in_background("cpu", log=lines.append) is None  # one build at a time
    release.set()
    thread.join(120)
    assert not thread.is_alive()
    assert _build.resolve("auto", "upfirdn2d", x) is not None
    assert "reference" in lines[0] and "ready" in lines[-1]
    assert _build.build_in_background("cpu", log=lines.append) is None  # nothing left to build
