"""What a user sees when a run cannot start: one line, no traceback, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import errors, local_runner


def _fail(capsys, tmp_path: Path, *args: str) -> str:
    capsys.readouterr()
    status = local_runner.main([*args, f"--output_dir={tmp_path / 'out'}",
                                "--allow_download=false"])
    assert status == errors.FAILED
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("error: ")]
    assert "--verbose" in err and "traceback in" in err
    return line


def test_a_missing_data_path_is_one_line_naming_it(capsys, tmp_path):
    line = _fail(capsys, tmp_path, "--data=/no/such/aclImdb")
    assert line == "error: --data=/no/such/aclImdb: no such file or directory"


def test_a_folder_without_the_aclimdb_layout_is_one_line_naming_it(capsys, tmp_path):
    folder = tmp_path / "reviews"
    folder.mkdir()
    line = _fail(capsys, tmp_path, f"--data={folder}")
    assert str(folder) in line and "no train/ folder" in line


def test_a_file_that_is_not_an_archive_is_one_line_naming_it(capsys, tmp_path):
    bogus = tmp_path / "aclImdb_v1.tar.gz"
    bogus.write_bytes(b"this is not a tar archive")
    line = _fail(capsys, tmp_path, f"--data={bogus}")
    assert str(bogus) in line and "not a readable tar archive" in line


def test_the_traceback_is_kept_for_bug_reports(capsys, tmp_path):
    _fail(capsys, tmp_path, "--data=/no/such/aclImdb")
    [log] = (tmp_path / "out" / "logs").glob("error-*.log")
    assert "Traceback" in log.read_text() and "DataSourceError" in log.read_text()
    assert '"status": "failed"' in (tmp_path / "out" / "last_run.json").read_text()


def test_verbose_prints_the_traceback(capsys, tmp_path):
    status = local_runner.main(["--data=/no/such/aclImdb", f"--output_dir={tmp_path}",
                                "--verbose=true"])
    assert status == errors.FAILED
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [ValueError("boom"), KeyError("x")])
def test_an_unexpected_error_is_reported_as_a_bug_with_its_traceback(bad, capsys, tmp_path):
    assert errors.report(bad, tmp_path, verbose=False) == errors.FAILED
    err = capsys.readouterr().err
    assert f"unexpected {type(bad).__name__}" in err
