"""``hdvila fd`` and ``hdvila eval-judge``: the measurement commands print their tables, and bad
arguments or paths end in one error line with exit status 2."""

import pytest

from apps.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_eval_judge_prints_accuracy_per_attribute(capsys):
    assert main(["eval-judge", "--n", "20"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "%" in line]
    assert [r.split("|")[1].strip() for r in rows] == ["shape", "color", "background", "size", "pattern"]
    assert all(0 <= float(r.split("|")[2].strip().rstrip("%")) <= 100 for r in rows)
    assert main(["eval-judge", "--n", "0"]) == 2
    assert "--n must be" in capsys.readouterr().err


def test_fd_rows_for_the_floor_and_each_generator(capsys):
    assert main(["fd", "checkpoints/stylegan2-demo64", "--samples", "16"]) == 0
    out = capsys.readouterr().out.splitlines()
    floor, gen = (float(line.rsplit("|", 2)[1]) for line in out[2:4])
    assert out[3].startswith("| checkpoints/stylegan2-demo64 |") and floor >= 0 and gen >= 0
    assert main(["fd", "no/such/generator"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
