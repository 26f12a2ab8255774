"""Every bad input in the catalogue (tests/bad_inputs.py, also the table in docs/bad-inputs.md) gets exit code 2
and one line naming what is wrong, before any model loads."""
import pytest

from bad_inputs import CASES, materialise
from peftbench.cli import main


@pytest.mark.parametrize("case", CASES, ids=[c.what for c in CASES])
def test_a_bad_input_gets_one_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = materialise(case, tmp_path)
    capsys.readouterr()  # what building the case printed
    assert main(argv) == case.exit_code
    out, err = capsys.readouterr()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert case.expect in lines[0], lines[0]
    assert "Traceback" not in out + err


def test_the_catalogue_holds_at_least_25_bad_inputs():
    assert len(CASES) >= 25 and len({c.what for c in CASES}) == len(CASES)
