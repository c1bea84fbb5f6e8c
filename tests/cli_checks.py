"""The CLI's contract for bad input, checked in-process: exit status 2, one `error:` line, no traceback."""

from __future__ import annotations

from typer.testing import CliRunner

from sparta.cli import app


def flat(text: str) -> str:
    """Whitespace removed: rich wraps (and folds long paths) at 80 columns when stderr is not a terminal."""
    return "".join(text.split())


def cli_fails(args: list, *expected: str) -> str:
    """Run ``sparta ARGS``; it must exit 2 with one error line naming all of ``expected``. Returns that line."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    error = result.stderr[result.stderr.index("error: "):]
    assert error.rstrip("\n").count("\n") == 0 and "Traceback" not in result.output, error
    for text in expected:
        assert flat(text) in flat(error), error
    return error
