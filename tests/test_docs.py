"""Docs checked by tests: every command has help and appears in the README; the README's set-up is what
CI runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from vecstore.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands(group, prefix: str = "") -> list[tuple[str, object]]:
    found = []
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        found.append((full, command))
        if hasattr(command, "commands"):  # a group (typer vendors its own click: no isinstance)
            found += _commands(command, full + " ")
    return found


COMMANDS = _commands(get_command(app))


def test_there_are_commands():
    names = {name for name, _ in COMMANDS}
    assert {
        "init",
        "info",
        "sql",
        "ingest",
        "labels import",
        "labels summary",
        "train",
        "evaluate",
        "classify",
        "similar",
        "export",
        "simulate",
        "demo",
        "merge",
    } <= names


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_has_help_and_is_in_the_readme(name, command):
    assert (command.help or "").strip(), f"`vec {name}` has no help text"
    result = CliRunner().invoke(app, [*name.split(), "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    assert f"vec {name}" in README, f"`vec {name}` is not documented in README.md"


def test_readme_setup_commands_are_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make demo" in README and "make test" in README
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert "vec --store demo-store demo" in makefile and "pytest" in makefile
