"""``vec serve``: the store in a browser (pages and JSON; the one write is an analyst's label)."""

from __future__ import annotations

import getpass

import typer

from vecstore.cli.app import app, invocation

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (another is reachable by others)."
    ),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    analyst: str | None = typer.Option(
        None, "--analyst", help="Name the label forms start with [default: your login name]."
    ),
    map_sample: int = typer.Option(
        1000, "--map-sample", min=10, max=20000, help="CCDs drawn for the survey's 2-D map (t-SNE)."
    ),
) -> None:
    """Browse the survey, exposures on the focal plane, CCDs and their look-alikes, the review queue;
    record verdicts as an analyst. Pages at http://HOST:PORT/, JSON under /api/ (see the README)."""
    import uvicorn

    from vecstore.cli.web.app import create_app

    run = invocation(ctx)
    web = create_app(run.store, run.config, host=host, analyst=analyst or _login(), map_sample=map_sample)
    if host not in LOOPBACK:
        typer.echo(
            f"warning: listening on {host}: anyone who can reach it can read the store and add labels",
            err=True,
        )
    typer.echo(f"serving store {run.store} at http://{host}:{port}/  (Ctrl-C stops)")
    uvicorn.run(web, host=host, port=port, log_level="warning")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
