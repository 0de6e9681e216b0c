"""Every command that writes checks its output paths before any work: an output whose folder cannot
be created or written is one line (``error: ...``, exit status 2), no traceback, nothing written
(apps/cli.py ``OUTPUTS``, :func:`hdvila.atomic.check_writable`)."""

from __future__ import annotations

import pytest

from apps.cli import COMMANDS, main

# command -> argv with {out} where the output path goes (other arguments need not exist: the check
# comes first).
WRITERS = {
    "demo-data": ["{out}"],
    "convert": ["hdvila", "missing.pt", "{out}"],
    "export": ["missing-checkpoint", "{out}"],
    "invert": ["missing.png", "{out}"],
    "assemble-edit": ["{out}", "--encoder", "e", "--mapper", "m"],
    "edit": ["missing.png", "{out}", "--prompt", "make it blue"],
    "upscale": ["missing.png", "{out}"],
    "eval-edit": ["--json", "{out}"],
    "score-mapper": ["missing-mapper", "--json", "{out}"],
    "eval-sr": ["--figure", "{out}"],
    "eval-guide": ["--json", "{out}"],
    "eval-retrieval": ["--annotations", "a.json", "--videos", "v", "--format", "msrvtt", "--json", "{out}"],
    "search": ["videos", "a query", "--json", "{out}"],
    "app": ["--cache-dir", "{out}"],
}
WRITES_NOTHING = {"judge", "fd", "eval-judge"}  # they print to stdout


def test_every_command_is_classified():
    assert set(COMMANDS) == set(WRITERS) | WRITES_NOTHING


@pytest.mark.parametrize("command", sorted(WRITERS))
@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_unwritable_output_is_one_line_before_any_work(command, where, tmp_path, capsys):
    if where == "proc":
        out = "/proc/hdvila-nope/out.png"  # /proc takes no new files, not even as root
    else:
        (tmp_path / "a-file").write_text("x")
        out = str(tmp_path / "a-file" / "sub" / "out.png")
    argv = [command] + [a.format(out=out) for a in WRITERS[command]]
    before = sorted(tmp_path.rglob("*"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert out in err and "Traceback" not in err
    assert ("is a file" in err) if where == "under-a-file" else ("cannot write" in err)
    assert sorted(tmp_path.rglob("*")) == before


def test_check_writable_accepts_new_folders_and_leaves_nothing(tmp_path):
    from hdvila.atomic import check_writable

    check_writable(tmp_path / "new" / "deeper" / "out.png")
    check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []
