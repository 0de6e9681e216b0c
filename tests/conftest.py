import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``hdvila ARGS...`` in a subprocess (the real console entry point's code path)."""
    return subprocess.run([sys.executable, "-m", "apps.cli", *map(str, args)], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=timeout)


def png_header(path: Path, width: int, height: int) -> Path:
    """A valid PNG of a few dozen bytes whose header says ``width`` x ``height`` (a decompression
    bomb's shape, made without allocating it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def assert_errors_name_each_file_once(proc: subprocess.CompletedProcess, src: Path, expected: dict[str, str]) -> None:
    """A batch command's stderr has one ``error: SRC/NAME ...`` line per entry of ``expected`` (file
    name -> words its message must hold), each naming its file exactly once."""
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == len(expected), proc.stderr
    for name, says in expected.items():
        line = next(line for line in lines if name in line)
        assert line.startswith(f"error: {src / name}") and line.count(name) == 1 and says in line, line


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="module")
def one_thread():
    """Run a test module on one thread: with tiny tensors OpenMP overhead dominates on a busy
    2-core machine. Use ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_training_main(main, argv):
    """Call a training script's ``main(argv)`` in this process, then reset Accelerate's singletons
    (each call builds its own Accelerator)."""
    from accelerate.state import AcceleratorState, GradientState

    try:
        return main(argv)
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


def small_edit_pipeline(folder) -> str:
    """An EditPipeline folder on the bundled generator and hdvila-mini with a small, randomly
    initialised encoder and a mapper whose medium-group output is made non-zero (a visible edit)."""
    from generation.editing.pipeline_edit import EditPipeline
    from generation.presets import demo_vocabulary
    from generation.stylegan2.convert import load_stylegan2
    from hdvila.modeling_hdvila import HDVILAModel
    from hdvila.paths import bundled

    torch.manual_seed(0)
    pipe = EditPipeline.untrained(load_stylegan2(bundled("stylegan2-demo64")),
                                  HDVILAModel.from_pretrained(bundled("hdvila-mini")), vocabulary=demo_vocabulary(),
                                  encoder_kwargs={"channels": 8, "head_channels": 16}, mapper_kwargs={"hidden": 32})
    torch.nn.init.normal_(pipe.mapper.mlps["medium"].out.weight, std=0.5)
    return str(pipe.save_pretrained(folder))
