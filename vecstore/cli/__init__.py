"""The ``vec`` command: a thin Typer layer over the vecstore, ingest and query libraries.

Each command parses its arguments, calls one library function and formats the result. Every error vec
raises on purpose (:class:`vecstore.errors.VecError`) is printed on one line and exits with code 1.

Exit codes, so that ``vec ingest ... && next-step`` is safe:

* 0 (EXIT_OK): all done.
* 1 (EXIT_ERROR): an error; nothing was done (a missing input path is found before any work).
* 2 (EXIT_USAGE): a usage error (an unknown option, a number out of range, a word not among its
  choices), found by Click before any work.
* 3 (EXIT_PARTIAL): finished, but some CCDs failed (``vec ingest``: see the ``failures`` table).

Layout: :mod:`~vecstore.cli.app` (the application, the store and config of a call, the error handler),
:mod:`~vecstore.cli.options` (options several commands share), and one module per group of commands,
each registering its commands when imported: :mod:`~vecstore.cli.store`, :mod:`~vecstore.cli.ingest`,
:mod:`~vecstore.cli.query`, :mod:`~vecstore.cli.labels`, :mod:`~vecstore.cli.serve` (the web pages, in
:mod:`vecstore.cli.web`). The demo's steps are in :mod:`~vecstore.cli.demo`.
"""

from __future__ import annotations

from vecstore.cli.app import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, app

# Imported for their commands, in the order `vec --help` lists them.
# isort: off
from vecstore.cli import store  # noqa: E402, F401
from vecstore.cli import ingest  # noqa: E402, F401
from vecstore.cli import query  # noqa: E402, F401
from vecstore.cli import labels  # noqa: E402, F401
from vecstore.cli import analysts, nightly  # noqa: E402, F401
from vecstore.cli import review  # noqa: E402, F401
from vecstore.cli import serve  # noqa: E402, F401

# isort: on

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "app", "main"]


def main() -> None:
    app(prog_name="vec")
