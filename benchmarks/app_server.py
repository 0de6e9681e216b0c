"""Start ``hdvila app`` in a subprocess and wait for its page: shared by the benchmarks that time the
web UI (``bench_web_load.py``, ``bench_first_edit.py``).

The port is picked free, then the app binds it; another process can take it in between (the smoke
tests run two benchmarks at once). The app then exits at once, and :func:`start_app` retries on a new
port instead of failing the measurement. Not a benchmark itself (no ``__main__``).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Sequence


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(log_text: str) -> bool:
    text = log_text.lower()
    return "address already in use" in text or "cannot find empty port" in text


def start_app(args: Sequence[str], log: Path, *, env: dict | None = None, cwd: str | Path | None = None,
              timeout: float = 300.0, attempts: int = 3) -> tuple[subprocess.Popen, int, float]:
    """Run ``python -m apps.cli app --port P *args`` (stdout and stderr to ``log``) and wait until
    ``http://127.0.0.1:P/`` answers 200. Returns (the process, P, seconds from its start to the page).
    The caller stops the process. A port taken before the app bound it is retried on a new port, up
    to ``attempts`` starts; any other early exit, or no page within ``timeout`` s, raises SystemExit
    with the end of the log."""
    for attempt in range(attempts):
        port = free_port()
        cmd = [sys.executable, "-m", "apps.cli", "app", "--port", str(port), *args]
        t0 = time.perf_counter()
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while True:
                if proc.poll() is not None:
                    text = log.read_text(errors="replace")
                    if _port_taken(text) and attempt + 1 < attempts:
                        break  # the next attempt picks another port
                    raise SystemExit(f"hdvila app exited with status {proc.returncode}:\n{text[-2000:]}")
                if time.perf_counter() - t0 > timeout:
                    raise SystemExit(f"hdvila app did not answer within {timeout:.0f} s:\n"
                                     f"{log.read_text(errors='replace')[-2000:]}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                        if r.status == 200:
                            return proc, port, time.perf_counter() - t0
                except OSError:
                    time.sleep(0.1)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    raise AssertionError("unreachable: the last attempt returns or raises")
