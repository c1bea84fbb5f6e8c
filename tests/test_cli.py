"""The command line's help reads the registries it lists: the downstream tasks and the variants."""

from typer.testing import CliRunner

from sparta.cli import app
from sparta.variants import VARIANTS

WIDE = {"COLUMNS": "250", "TERMINAL_WIDTH": "250"}


def test_evaluate_help_lists_the_task_table():
    from sparta.evaluation import TASKS

    result = CliRunner().invoke(app, ["evaluate", "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert f"comma-separated task names ({', '.join(TASKS)}); default: all" in result.output


def test_reproduce_help_lists_the_variants():
    result = CliRunner().invoke(app, ["reproduce", "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert f"Variants: {', '.join(VARIANTS)}." in result.output
