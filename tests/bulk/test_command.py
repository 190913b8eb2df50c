"""``catdog bulk`` as a command: help, the missing extra, pass-through options, bad inputs.

These run without Beam where they can: the CLI and the API's container must not need it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from catdog.cli import main
from tests.conftest import CAT_PHOTOS

NO_BEAM = "import sys; sys.modules['apache_beam'] = None; "  # `import apache_beam` now fails


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)


def test_help_lists_bulk_and_the_cli_never_imports_beam():
    result = run_python(
        "import sys, contextlib, io\n"
        "from catdog.cli import main\n"
        "buffer = io.StringIO()\n"
        "with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print('bulk' in buffer.getvalue(), 'apache_beam' in sys.modules)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]


def test_without_the_extra_bulk_says_how_to_install_it(tmp_path):
    result = run_python(NO_BEAM + "from catdog.cli import main; "
                        f"sys.exit(main(['bulk', {str(CAT_PHOTOS[0])!r}, '--out', {str(tmp_path)!r}]))")
    assert result.returncode == 2, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "pip install 'catdog[bulk]'" in lines[0]
    assert "Traceback" not in result.stderr


def test_other_commands_still_refuse_unknown_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", str(CAT_PHOTOS[0]), "--no-such-option"])
    assert info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_bulk_needs_out(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bulk", str(CAT_PHOTOS[0])])
    assert info.value.code == 2
    assert "--out" in capsys.readouterr().err


def test_a_missing_input_is_a_one_line_error(tmp_path, capsys):
    pytest.importorskip("apache_beam", reason="needs the bulk extra")
    assert main(["bulk", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"catdog: error: No such file or folder: {tmp_path / 'nowhere'}"


def test_an_unknown_output_format_is_refused_before_the_job(tmp_path):
    pytest.importorskip("apache_beam", reason="needs the bulk extra")
    from catdog.bulk.pipeline import BulkError, BulkJob, run

    with pytest.raises(BulkError, match="unknown output format"):
        run(BulkJob(inputs=[str(CAT_PHOTOS[0])], out=str(tmp_path), formats=["xlsx"]))
    assert not any(tmp_path.iterdir())


def test_a_bad_beam_option_is_a_one_line_error_before_anything_is_written(tmp_path, capsys):
    pytest.importorskip("apache_beam", reason="needs the bulk extra")
    out = tmp_path / "out"
    assert main(["bulk", str(CAT_PHOTOS[0]), "--out", str(out), "--direct_running_mode=bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("catdog: error: Beam pipeline option: argument --direct_running_mode: invalid choice")
    assert "\n" not in err
    assert not out.exists()
