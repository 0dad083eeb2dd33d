"""Options more than one command takes, declared once (as sqlite-utils' ``output_options``): name, type,
range and the words of their help; a command only says what the option is for, where that differs.

Config knobs flow into commands by name: an option named like a knob of a config section (``--batch-size``
-> ``[ingest] batch_size``) overrides that knob when given; :func:`given` collects them, so no command
copies config fields into its options by hand.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

RULES_HELP = "calibrated: thresholds chosen by cross-validation; paper: Luo et al.'s 0.9 cut"


def given(ctx: typer.Context, target: Any) -> dict[str, Any]:
    """The options of this command that the user gave (not None) and that ``target`` (a dataclass or its
    class) has a field for, with paths as text: what overrides the config section."""
    names = {f.name for f in dataclasses.fields(target)}
    return {
        name: str(value) if isinstance(value, Path) else value
        for name, value in ctx.params.items()
        if name in names and value is not None
    }


def one_of(*words: str):
    """A callback that accepts only ``words`` (or no value): any other is a usage error (exit 2)."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in words:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(words)}")
        return value

    return check


def accepted_by(section: type, name: str):
    """A callback refusing what the config knob ``section.name`` refuses, as a usage error (exit 2): the
    option and the knob accept the same words, checked by the same rule."""
    accepts = next(f for f in dataclasses.fields(section) if f.name == name).metadata["accepts"]

    def check(value: Any) -> Any:
        problem = None if value is None else accepts.problem(value)
        if problem:
            raise typer.BadParameter(f"{value!r}: {problem} [config: {section.NAME}.{name}]")
        return value

    return check


def choice_option(default: str | None, flag: str, *words: str, help: str = "", short: str = "") -> Any:
    """An option that takes one of ``words``; its help lists them."""
    names = (flag, short) if short else (flag,)
    listed = " | ".join(words)
    return typer.Option(
        default, *names, callback=one_of(*words), help=f"{listed}{'. ' if help else ''}{help}"
    )


def rule_option(help: str) -> Any:
    return choice_option(None, "--rule", "calibrated", "paper", help=help)


def json_flag(what: str = "JSON instead of text") -> Any:
    return typer.Option(False, "--json", help=f"Print {what}.")


def _text(value: Path | None) -> str | None:
    return None if value is None else str(value)


def weights_option(purpose: str = "") -> Any:
    """The library takes the weights file's path as text (as the config holds it)."""
    return typer.Option(
        None,
        "--weights",
        callback=_text,
        help=f"Weights file of the embedder (Meta's or timm's layout){purpose}.",
    )


def embedder_option(default_help: str) -> Any:
    return typer.Option(None, "--embedder", help=f"Registered embedder [{default_help}].")


def seed_option(default: int | None = 0, what: str = "") -> Any:
    return typer.Option(default, "--seed", min=0, help=f"Random seed{what}.")


def workers_option(default: int | None) -> Any:
    return typer.Option(default, "--workers", min=0, help="DataLoader processes reading FITS.")


def k_option(help: str) -> Any:
    return typer.Option(None, "-k", min=1, help=help)


def run_option(help: str) -> Any:
    return typer.Option(None, "--run", min=1, help=help)


def output_option(help: str = "Write to a file.") -> Any:
    return typer.Option(None, "--output", "-o", help=help)


def exposures_option(default: int, help: str) -> Any:
    return typer.Option(default, "--exposures", "-n", min=1, help=help)


def probability_cut(value: float | None) -> float | None:
    """A probability cut in (0, 1]: 0 would call every CCD bad, above 1 none."""
    if value is not None and not 0.0 < value <= 1.0:
        raise typer.BadParameter(f"{value} is not in (0, 1]")
    return value


def ccd_shape(text: str | tuple[int, int]) -> tuple[int, int]:
    """``ROWSxCOLS`` -> (rows, cols); a usage error (exit 2) otherwise."""
    if isinstance(text, tuple):
        return text
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected ROWSxCOLS such as 4094x2046") from None
    if rows < 1 or cols < 1:
        raise typer.BadParameter(f"{text!r}: expected ROWSxCOLS of at least 1 pixel each, such as 4094x2046")
    return rows, cols


def ccd_shape_option(default: str, help: str) -> Any:
    return typer.Option(default, "--ccd-shape", callback=ccd_shape, help=f"ROWSxCOLS of each CCD ({help}).")
