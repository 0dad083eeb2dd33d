"""The ``vec`` command: a thin Typer layer over the vecstore, ingest and query libraries.

Each command parses its arguments, calls one library function and formats the result. Every error vec
raises on purpose (:class:`vecstore.errors.VecError`) is printed on one line and exits with code 1.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import typer
from typer.core import TyperGroup

from vecstore.config import Config, load_config
from vecstore.errors import VecError


class _VecGroup(TyperGroup):
    """Turns a VecError anywhere below into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VecError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


app = typer.Typer(
    cls=_VecGroup,
    help="vec: an embedding store and search tool that finds bad exposures in astronomical imaging surveys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


class _Context:
    def __init__(self, store: Path, config_path: Path | None):
        self.store = store
        self.config_path = config_path

    @property
    def config(self) -> Config:
        return load_config(self.config_path)


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
    store = store or Path(os.environ.get("VEC_STORE") or "vecstore")
    ctx.obj = _Context(store, config)


def _obj(ctx: typer.Context) -> _Context:
    return ctx.obj


@app.command()
def init(ctx: typer.Context) -> None:
    """Create an empty store (a directory with a DuckDB catalog)."""
    from vecstore.store import Store

    obj = _obj(ctx)
    with Store.create(obj.store, config=obj.config) as store:
        typer.echo(f"store ready at {store.path}")


@app.command()
def info(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    verify: bool = typer.Option(False, "--verify", help="Read every embedding part and check ids."),
) -> None:
    """Counts, provenance, model versions and disk use of the store."""
    from vecstore.info import format_info, store_info
    from vecstore.store import Store

    obj = _obj(ctx)
    with Store.open(obj.store, config=obj.config) as store:
        result = store_info(store, verify=verify)
    typer.echo(json.dumps(result, indent=1, default=str) if as_json else format_info(result))


@app.command()
def sql(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="SQL over the catalog tables (exposures, ccds, labels, ...)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | csv | json | parquet"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to a file (needed for parquet)."),
    write: bool = typer.Option(False, "--write", help="Allow statements that change the store."),
) -> None:
    """Run SQL (DuckDB) over the store's catalog. Read-only unless --write."""
    from vecstore.sql import render, run_sql

    obj = _obj(ctx)
    table = run_sql(obj.store, query, write=write, timeout_s=obj.config.store.lock_timeout_s)
    if table is None:
        typer.echo("ok")
        return
    text = render(table, fmt, output)
    if text is not None:
        typer.echo(text)


@app.command()
def ingest(
    ctx: typer.Context,
    sources: list[Path] = typer.Argument(
        ...,
        help="Directories of CP images (*.fits.fz, *.fits), survey-ccds FITS tables, or text lists of files.",
    ),
    release: str = typer.Option(..., "--release", help="Release tag stored with every CCD, e.g. dr10."),
    embedder: str | None = typer.Option(
        None, "--embedder", help="Registered embedder [config: ingest.embedder]."
    ),
    preset: str | None = typer.Option(None, "--preset", help="Preprocess preset (default: the embedder's)."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file (Meta's or timm's layout)."),
    devices: str | None = typer.Option(None, "--devices", help="cpu | cpu:N | cuda | cuda:0,1,..."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="CCDs per forward pass and commit."),
    workers: int | None = typer.Option(None, "--workers", help="DataLoader processes reading FITS."),
    ccds_per_exposure: int | None = typer.Option(
        None, "--ccds-per-exposure", help="Embed this many CCDs per exposure (seeded draw; the paper: 20)."
    ),
    all_ccds: bool = typer.Option(
        False, "--all-ccds", help="Embed every CCD (overrides --ccds-per-exposure)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the per-exposure CCD draw."),
    on_bad_ccd: str | None = typer.Option(
        None, "--on-bad-ccd", help="skip (record a failure) | error (stop)."
    ),
    image_root: Path | None = typer.Option(None, "--image-root", help="Root of image_filename in tables."),
    engine: str = typer.Option("local", "--engine", help="local | ray"),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster: auto | HOST:PORT (--engine ray)."
    ),
    ray_cpus: int | None = typer.Option(
        None, "--ray-cpus", help="CPUs of the local Ray instance started when --engine ray has no --address."
    ),
) -> None:
    """Embed every CCD of the sources that the store does not have yet (resumable), with a progress bar."""
    from ingest.engine import IngestOptions
    from ingest.engine import ingest as run_ingest
    from vecstore.store import Store

    obj = _obj(ctx)
    cfg = obj.config.ingest
    per_exposure = (
        0 if all_ccds else (cfg.ccds_per_exposure if ccds_per_exposure is None else ccds_per_exposure)
    )
    options = IngestOptions(
        release=release,
        embedder=embedder or cfg.embedder,
        preset=preset or cfg.preset or None,
        weights=str(weights) if weights else (cfg.weights or None),
        devices=devices or cfg.devices,
        batch_size=batch_size or cfg.batch_size,
        workers=cfg.workers if workers is None else workers,
        ccds_per_exposure=per_exposure,
        seed=cfg.seed if seed is None else seed,
        on_bad_ccd=on_bad_ccd or cfg.on_bad_ccd,
        image_root=str(image_root) if image_root else None,
        index_save_every_s=cfg.index_save_every_s,
    )
    with Store.create(obj.store, config=obj.config) as store, _ProgressBar("ingest", "CCD") as bar:
        if engine == "ray":
            from ingest.ray_engine import ingest_ray

            summary = ingest_ray(
                store,
                [str(s) for s in sources],
                options,
                address=address,
                num_cpus=ray_cpus,
                progress=bar.update,
            )
        elif engine == "local":
            summary = run_ingest(store, [str(s) for s in sources], options, progress=bar.update)
        else:
            raise VecError(f"unknown engine {engine!r}: choose local or ray")
    typer.echo(
        f"ingested {summary.ingested:,} CCDs, skipped {summary.skipped:,} already in the store, "
        f"failed {summary.failed:,} ({summary.rate:.1f} CCDs/s, run {summary.run_id})"
    )
    for path, hdu, reason in summary.failures[:20]:
        typer.echo(f"  failed: {path} [{hdu}]: {reason}", err=True)
    if summary.failed > 20:
        typer.echo(
            f'  ... {summary.failed - 20} more: vec sql "SELECT * FROM failures WHERE run_id = '
            f'{summary.run_id}"',
            err=True,
        )


class _ProgressBar:
    """A tqdm bar on stderr (rate and ETA) fed by the library's progress(done, total, ...) callbacks."""

    def __init__(self, description: str, unit: str):
        self.description, self.unit, self.bar = description, unit, None

    def __enter__(self) -> _ProgressBar:
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


@app.command()
def merge(
    ctx: typer.Context,
    dest: Path = typer.Argument(..., help="Store to merge into; created if missing."),
    sources: list[Path] = typer.Argument(..., help="Stores to fold into DEST (opened read-only)."),
    chunk_rows: int = typer.Option(4096, "--chunk-rows", help="CCDs per commit into DEST."),
) -> None:
    """Fold stores built separately (e.g. one per node) into DEST; re-running adds only what is missing."""
    from vecstore.merge import merge_stores

    obj = _obj(ctx)
    with _ProgressBar("merge", "CCD") as bar:
        summary = merge_stores(dest, sources, config=obj.config, chunk_rows=chunk_rows, progress=bar.update)
    typer.echo(summary.describe())


labels_app = typer.Typer(
    cls=_VecGroup, help="Import label lists and summarise them.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(labels_app, name="labels")


@labels_app.command("import")
def labels_import(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Label files or DELVE directories."),
    source: str | None = typer.Option(
        None, "--source", help="decals-badexp | delve | des-fits | ccd-cuts (detected when unambiguous)."
    ),
    categories: Path | None = typer.Option(
        None, "--categories", help="Rules file (configs/categories.toml)."
    ),
) -> None:
    """Import legacypipe bad_expid lists, DELVE/DES exclude lists or survey-ccds ccd_cuts as labels."""
    from ingest.categories import CategoryRules
    from ingest.label_import import import_labels
    from vecstore.store import Store

    obj = _obj(ctx)
    rules = CategoryRules.load(categories)
    with Store.open(obj.store, writable=True, config=obj.config) as store:
        for path in paths:
            result = import_labels(store, path, source, rules)
            typer.echo(
                f"{path}: {result.n_records:,} labels ({result.source}), {result.n_added:,} new, "
                f"{result.n_ignored:,} ignored by rule, {sum(n for *_, n in result.unmapped):,} unmapped"
            )
            for warning in result.warnings[:20]:
                typer.echo(f"  warning: {warning}", err=True)
            if len(result.warnings) > 20:
                typer.echo(f"  ... and {len(result.warnings) - 20} more warnings", err=True)


@labels_app.command("summary")
def labels_summary(ctx: typer.Context) -> None:
    """CCDs per category and source (the paper's Table 2) and the reasons no rule maps."""
    from query.labels import format_summary, labels_summary
    from vecstore.store import Store

    obj = _obj(ctx)
    with Store.open(obj.store, config=obj.config) as store:
        typer.echo(format_summary(labels_summary(store)))


def main() -> None:
    app(prog_name="vec")


if __name__ == "__main__":
    sys.exit(main())
