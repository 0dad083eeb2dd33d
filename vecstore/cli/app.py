"""The Typer application every command module registers on, and what commands share around their body:
the store and config of the invocation, the one error handler, the progress bar."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from vecstore.config import Config, load_config
from vecstore.errors import VecError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


class _VecGroup(TyperGroup):
    """Turns a VecError anywhere below into one line on stderr and EXIT_ERROR."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except VecError as exc:
            typer.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_ERROR)


def _typer(help: str) -> typer.Typer:
    return typer.Typer(
        cls=_VecGroup,
        help=help,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        add_completion=False,
    )


app = _typer(
    "vec: an embedding store and search tool that finds bad exposures in astronomical imaging surveys."
)
labels_app = _typer("Import label lists and summarise them.")
app.add_typer(labels_app, name="labels")


class Invocation:
    """The store and config every command of one ``vec`` call works on (the root options)."""

    def __init__(self, store: Path, config_path: Path | None):
        self.store = store
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        """The config, read and checked once (unknown keys and values out of range are errors)."""
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def open(self, *, writable: bool = False):
        """The store, which must exist."""
        from vecstore.store import Store

        return Store.open(self.store, writable=writable, config=self.config)

    def create(self):
        """The store, created if missing."""
        from vecstore.store import Store

        return Store.create(self.store, config=self.config)


@app.callback()
def _root(
    ctx: typer.Context,
    store: Path = typer.Option(
        None,
        "--store",
        "-s",
        help="Store directory. Default: $VEC_STORE, else ./vecstore.",
        show_default=False,
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="TOML file overlaying configs/default.toml (unknown keys are errors).",
        envvar="VEC_CONFIG",
    ),
) -> None:
    ctx.obj = Invocation(store or Path(os.environ.get("VEC_STORE") or "vecstore"), config)


def invocation(ctx: typer.Context) -> Invocation:
    return ctx.obj


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=1, default=str))


class ProgressBar:
    """A tqdm bar on stderr (rate and ETA) fed by the library's progress(done, total, ...) callbacks."""

    def __init__(self, description: str, unit: str):
        self.description, self.unit, self.bar = description, unit, None

    def __enter__(self) -> ProgressBar:
        return self

    def update(self, done: int, total: int, *_: object) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(
                total=total,
                desc=self.description,
                unit=self.unit,
                dynamic_ncols=True,
                disable=None if sys.stderr.isatty() else True,
            )
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
