"""``vec review``: the next exposures worth inspecting, and the line that records each verdict."""

from __future__ import annotations

import getpass
from pathlib import Path

import typer

from vecstore.cli.app import app, echo_json, invocation
from vecstore.cli.options import json_flag, rule_option


@app.command()
def review(
    ctx: typer.Context,
    n: int = typer.Option(10, "-n", "--number", min=1, help="How many exposures to list."),
    html: Path | None = typer.Option(None, "--html", help="Also write a page with thumbnails."),
    analyst: str | None = typer.Option(
        None, "--analyst", help="Name put in the `vec labels add` lines [default: your login name]."
    ),
    rule: str | None = rule_option("Use the newest model trained for this rule [default: the current one]."),
    as_json: bool = json_flag(),
) -> None:
    """The unlabelled exposures most worth a look: unknown CCDs, near-threshold votes, split neighbours,
    rare categories (the score is documented in query/review.py)."""
    from query.reports.review import review_page
    from query.review import format_review, review_queue
    from vecstore.models import Model

    run = invocation(ctx)
    with run.open() as store:
        model = Model.for_rule(store, rule)
        queue = review_queue(store, model, run.config.classify, n, analyst=analyst or _login())
        page = review_page(store, queue, html) if html is not None else None
    if as_json:
        echo_json([e.as_dict() for e in queue.entries])
        return
    typer.echo(format_review(queue))
    if page is not None:
        typer.echo(f"\npage: {page}")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "NAME"
