"""The ``vec`` command: a thin Typer layer over the vecstore, ingest and query libraries.

Each command parses its arguments, calls one library function and formats the result. Every error vec
raises on purpose (:class:`vecstore.errors.VecError`) is printed on one line and exits with code 1.

Exit codes, so that ``vec ingest ... && next-step`` is safe:

* 0 (EXIT_OK): all done.
* 1 (EXIT_ERROR): an error; nothing was done (a missing input path is found before any work).
* 2 (EXIT_USAGE): a usage error (unknown option, a number out of range), from Click.
* 3 (EXIT_PARTIAL): finished, but some CCDs failed (``vec ingest``: see the ``failures`` table).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

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
    """Counts, provenance, model versions, embedding parts and disk use of the store."""
    from vecstore.compact import format_parts
    from vecstore.info import format_info, store_info
    from vecstore.store import Store

    obj = _obj(ctx)
    with Store.open(obj.store, config=obj.config) as store:
        result = store_info(store, verify=verify)
        result["parts"] = store.parts_summary()
    if as_json:
        typer.echo(json.dumps(result, indent=1, default=str))
    else:
        typer.echo(format_info(result) + "\n" + format_parts(result["parts"]))


@app.command()
def compact(
    ctx: typer.Context,
    target_rows: int = typer.Option(
        0, "--target-rows", help="Rows per merged part; 0 = [store] compact_target_rows of the config."
    ),
) -> None:
    """Merge small embedding parts into large ones; safe to interrupt, readers keep working meanwhile."""
    from vecstore.store import Store

    obj = _obj(ctx)
    with Store.open(obj.store, writable=True, config=obj.config) as store:
        result = store.compact(target_rows or None)
    typer.echo(result.describe())


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
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="CCDs per forward pass and commit."
    ),
    workers: int | None = typer.Option(None, "--workers", min=0, help="DataLoader processes reading FITS."),
    ccds_per_exposure: int | None = typer.Option(
        None,
        "--ccds-per-exposure",
        min=0,
        help="Embed this many CCDs per exposure (seeded draw; the paper: 20; 0 = all).",
    ),
    all_ccds: bool = typer.Option(
        False, "--all-ccds", help="Embed every CCD (overrides --ccds-per-exposure)."
    ),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Seed of the per-exposure CCD draw."),
    on_bad_ccd: str | None = typer.Option(
        None, "--on-bad-ccd", help="skip (record a failure) | error (stop)."
    ),
    image_root: Path | None = typer.Option(None, "--image-root", help="Root of image_filename in tables."),
    engine: str = typer.Option("local", "--engine", help="local | ray"),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster: auto | HOST:PORT (--engine ray)."
    ),
    ray_cpus: int | None = typer.Option(
        None,
        "--ray-cpus",
        min=1,
        help="CPUs of the local Ray instance started when --engine ray has no --address.",
    ),
) -> None:
    """Embed every CCD of the sources that the store does not have yet (resumable), with a progress bar.

    Exit 0: all done; 3: done, but some CCDs failed (rows of the failures table); 1: nothing ingested.
    """
    from ingest.engine.local import IngestOptions, check_sources_exist
    from ingest.engine.local import ingest as run_ingest
    from vecstore.store import Store

    if engine not in ("local", "ray"):
        raise VecError(f"unknown engine {engine!r}: choose local or ray")
    check_sources_exist(sources)
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
            from ingest.engine.ray import ingest_ray

            summary = ingest_ray(
                store,
                [str(s) for s in sources],
                options,
                address=address,
                num_cpus=ray_cpus,
                progress=bar.update,
            )
        else:
            summary = run_ingest(store, [str(s) for s in sources], options, progress=bar.update)
    _report_ingest(summary)


def _report_ingest(summary) -> None:
    """The summary line, the first failures, and the exit code: EXIT_PARTIAL if some CCDs failed,
    EXIT_ERROR if every CCD failed (none ingested now or before)."""
    typer.echo(
        f"ingested {summary.ingested:,} CCDs, skipped {summary.skipped:,} already in the store, "
        f"failed {summary.failed:,} ({summary.rate:.1f} CCDs/s, run {summary.run_id})"
    )
    if not summary.failed:
        return
    for path, hdu, reason in summary.failures[:20]:
        typer.echo(f"  failed: {path} [{hdu}]: {reason}", err=True)
    see = f'vec sql "SELECT * FROM failures WHERE run_id = {summary.run_id}"'
    if summary.ingested + summary.skipped == 0:
        raise VecError(f"nothing ingested: all inputs failed ({summary.failed:,} failures); see: {see}")
    typer.echo(f"  {summary.failed:,} failed (exit code {EXIT_PARTIAL}); all of them: {see}", err=True)
    raise typer.Exit(EXIT_PARTIAL)


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
    chunk_rows: int = typer.Option(4096, "--chunk-rows", min=1, help="CCDs per commit into DEST."),
) -> None:
    """Fold stores built separately (e.g. one per node) into DEST; re-running adds only what is missing."""
    from vecstore.merge import merge_stores

    obj = _obj(ctx)
    with _ProgressBar("merge", "CCD") as bar:
        summary = merge_stores(dest, sources, config=obj.config, chunk_rows=chunk_rows, progress=bar.update)
    typer.echo(summary.describe())


@app.command()
def train(
    ctx: typer.Context,
    rule: str | None = typer.Option(
        None,
        "--rule",
        help="calibrated (thresholds chosen by cross-validation) | paper (Luo et al.) "
        "[config: classify.rule].",
    ),
    good_from: str | None = typer.Option(
        None,
        "--good-from",
        help="Exposures known to be good: a file of expnums, release:TAG, or a WHERE on the exposures table "
        "[config: train.good_from; default: unlabelled, uncut exposures].",
    ),
    tune: bool = typer.Option(
        False,
        "--tune",
        help="With --rule paper: search the paper's space (HalvingRandomSearchCV, grouped CV).",
    ),
    n_iter: int = typer.Option(40, "--n-iter", min=1, help="Candidates drawn by --tune."),
) -> None:
    """A new model: the reference CCDs the k-NN votes with, their post-processor and the decision rule."""
    from query.train import describe_training
    from query.train import train as run_train
    from vecstore.store import Store

    obj = _obj(ctx)
    with Store.open(obj.store, writable=True, config=obj.config) as store:
        result = run_train(store, obj.config, rule=rule, good_from=good_from, tune=tune, n_iter=n_iter)
    typer.echo(describe_training(result))
    for note in result.training.notes:
        typer.echo(f"  note: {note}", err=True)


@app.command()
def evaluate(
    ctx: typer.Context,
    out: Path = typer.Option(None, "--out", help="Report directory (default: <store>/reports/<version>)."),
    method: str = typer.Option("tsne", "--method", help="3-D embedding of the plot: tsne | pca."),
) -> None:
    """Classification report on the test split (CCDs and exposures), confusion matrix, HTML report."""
    from query.evaluate import evaluate as run_evaluate
    from vecstore.models import current_version
    from vecstore.store import Store

    obj = _obj(ctx)
    with Store.open(obj.store, config=obj.config) as store:
        out = out or store.path / "reports" / (current_version(store) or "none")
        result = run_evaluate(store, obj.config, out, method=method)
    for _, text in result.texts:
        typer.echo(text + "\n")
    typer.echo(f"report: {result.html}")


def _open_unit(value: float | None) -> float | None:
    """A probability cut in (0, 1]: 0 would call every CCD bad, above 1 none."""
    if value is not None and not 0.0 < value <= 1.0:
        raise typer.BadParameter(f"{value} is not in (0, 1]")
    return value


@app.command()
def classify(
    ctx: typer.Context,
    targets: list[str] = typer.Argument(
        None, help="Exposure numbers in the store, or FITS files of new exposures."
    ),
    all_exposures: bool = typer.Option(
        False, "--all", help="Classify every unlabelled exposure into tables."
    ),
    release: str | None = typer.Option(
        None, "--release", help="With --all: only this release; with --add: the release tag of the new CCDs."
    ),
    run: int | None = typer.Option(None, "--run", help="With --all: resume this run id."),
    all_ccds: bool = typer.Option(False, "--all-ccds", help="Use every CCD instead of the seeded draw."),
    rule: str | None = typer.Option(
        None,
        "--rule",
        help="calibrated | paper: use the newest model trained for it [default: the current model].",
    ),
    k: int | None = typer.Option(None, "-k", min=1, help="Neighbours per CCD [config: classify.k]."),
    threshold: float | None = typer.Option(
        None, "--threshold", min=0.0, max=1.0, help="Calibrated rule: CCD flagged at p_bad >= this [trained]."
    ),
    fraction: float | None = typer.Option(
        None, "--fraction", min=0.0, max=1.0, help="Calibrated rule: share of flagged CCDs that makes it bad."
    ),
    prob_cut: float | None = typer.Option(
        None,
        "--prob-cut",
        callback=_open_unit,
        help="Paper rule: CCD bad at this probability, in (0, 1] [0.9].",
    ),
    min_bad_ccds: int | None = typer.Option(
        None, "--min-bad-ccds", min=1, help="Paper rule: bad CCDs that make a bad exposure [3]."
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Embedder weights, to embed a new FILE."),
    add: bool = typer.Option(False, "--add", help="Also ingest a FILE into the store."),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON with every CCD and its voting neighbours."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Focal-plane picture: OUT.png or OUT.html."),
) -> None:
    """Is this exposure bad, and why? k-NN per CCD, the probability cut, then a vote over the exposure."""
    import dataclasses

    from query.classify import classify_all, classify_targets
    from vecstore.models import Model
    from vecstore.store import Store

    obj = _obj(ctx)
    cfg = obj.config.classify
    cfg = dataclasses.replace(
        cfg,
        **{
            k_: v
            for k_, v in (
                ("k", k),
                ("prob_cut", prob_cut),
                ("min_bad_ccds", min_bad_ccds),
                ("threshold", threshold),
                ("fraction", fraction),
            )
            if v is not None
        },
    )
    if all_exposures:
        with (
            Store.open(obj.store, writable=True, config=obj.config) as store,
            _ProgressBar("classify", "exp") as bar,
        ):
            summary = classify_all(
                store, Model.for_rule(store, rule), cfg, release=release, run_id=run, progress=bar.update
            )
        typer.echo(
            f"run {summary.run_id}{' (resumed)' if summary.resumed else ''}: "
            f"{summary.n_exposures:,} exposures classified, {summary.n_bad:,} bad {summary.by_category}"
        )
        return
    if not targets:
        raise VecError("give exposure numbers or FITS files, or --all")
    with Store.open(obj.store, writable=add, config=obj.config) as store:
        results = classify_targets(
            store,
            Model.for_rule(store, rule),
            targets,
            cfg,
            weights=str(weights) if weights else None,
            all_ccds=all_ccds,
            add_release=(release or "classify-add") if add else None,
        )
        if plot is not None:
            from query.reports.pictures import focal_plane_pictures

            pictures = focal_plane_pictures(store, results, plot)
    model_line = f"{results[0].rule.describe()}" if results and results[0].rule else ""
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in results], indent=1))
        return
    from query.reports.pictures import format_classification

    if model_line:
        typer.echo(model_line)
    for result in results:
        typer.echo(format_classification(result))
    if plot is not None:
        typer.echo("picture(s): " + ", ".join(str(p) for p in pictures))


@app.command()
def similar(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="EXPNUM/CCDNAME (e.g. 1222425/N4), a ccd_id, or FILE[:HDU]."),
    k: int | None = typer.Option(None, "-k", min=1, help="How many look-alikes [config: similar.k = 20]."),
    where: str | None = typer.Option(
        None, "--where", help="SQL filter on the ccds table, e.g. \"filter = 'r'\"."
    ),
    html: Path | None = typer.Option(None, "--html", help="Write a gallery of thumbnails."),
    weights: Path | None = typer.Option(None, "--weights", help="Embedder weights, to embed a new FILE."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Find the CCDs that look most like this one (L1 on the corpus index), for artifact hunting."""
    from query.similar import is_file_reference, similar_to_ccd, similar_to_file
    from vecstore.models import Model
    from vecstore.store import Store

    obj = _obj(ctx)
    k = k or obj.config.similar.k
    with Store.open(obj.store, config=obj.config) as store:
        model = Model.current(store)
        pixels = None
        if is_file_reference(reference):
            query, hits, pixels = similar_to_file(
                store, model, reference, k, where=where, weights=str(weights) if weights else None
            )
        else:
            query, hits = similar_to_ccd(store, model, reference, k, where=where)
        if html is not None:
            from query.reports.pictures import similar_gallery

            similar_gallery(query, hits, html, query_pixels=pixels)
    if as_json:
        typer.echo(json.dumps({"query": query, "neighbours": hits}, indent=1, default=str))
        return
    import pyarrow as pa

    from vecstore.sql import format_table

    columns = ["rank", "expnum", "ccdname", "filter", "distance", "label", "ccd_id"]
    typer.echo(f"look-alikes of {query['expnum']}/{query['ccdname']}:")
    typer.echo(format_table(pa.table({c: [h[c] for h in hits] for c in columns})))
    if html is not None:
        typer.echo(f"gallery: {html}")


@app.command()
def export(
    ctx: typer.Context,
    fmt: str = typer.Option("badexp", "--format", "-f", help="badexp | csv | fits"),
    run: int | None = typer.Option(None, "--run", min=1, help="Classification run (default: the latest)."),
    min_prob: float = typer.Option(
        0.0, "--min-prob", min=0.0, max=1.0, help="Only exposures whose mean probability reaches this."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to a file (needed for fits)."),
) -> None:
    """Bad exposures of a `classify --all` run as decam-bad_expid.txt lines, CSV or a FITS table."""
    from query.export import bad_exposures
    from query.export import export as run_export
    from vecstore.store import Store

    obj = _obj(ctx)
    with Store.open(obj.store, config=obj.config) as store:
        table = bad_exposures(store, run, min_prob)
    text = run_export(table, fmt, output)
    if text is not None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"{table.num_rows:,} bad exposures written to {output}")


@app.command()
def simulate(
    out: Path = typer.Argument(..., help="Directory for the simulated exposures and truth lists."),
    exposures: int = typer.Option(20, "--exposures", "-n", min=1, help="Number of exposures."),
    ccd_shape: str = typer.Option(
        "4094x2046", "--ccd-shape", help="ROWSxCOLS of each CCD (DECam: 4094x2046)."
    ),
    ccds: str | None = typer.Option(None, "--ccds", help="Comma-separated CCD names (default: all alive)."),
    bad_fraction: float = typer.Option(
        0.4, "--bad-fraction", min=0.0, max=1.0, help="Share of exposures with an artifact."
    ),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """Write simulated DECam CP exposures (fpacked MEF) with known artifacts and their truth lists."""
    from ingest.simulate.survey import simulate_survey

    rows, cols = _parse_shape(ccd_shape)
    with _ProgressBar("simulate", "exp") as bar:
        result = simulate_survey(
            out,
            exposures,
            ccd_shape=(rows, cols),
            bad_fraction=bad_fraction,
            seed=seed,
            ccdnames=ccds.split(",") if ccds else None,
            progress=lambda done, total: bar.update(done, total),
        )
    bad = sum(1 for e in result.exposures if e.category)
    typer.echo(
        f"{len(result.exposures)} exposures ({bad} bad) in {out}; truth: {result.truth.bad_expid}, "
        f"{result.truth.delve_dir}, {result.truth.truth_csv}"
    )


def _parse_shape(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise VecError(f"--ccd-shape {text!r}: expected ROWSxCOLS such as 4094x2046") from None
    return rows, cols


@app.command()
def demo(
    ctx: typer.Context,
    exposures: int = typer.Option(200, "--exposures", "-n", min=1, help="Simulated exposures."),
    ccd_shape: str = typer.Option(
        "1024x512", "--ccd-shape", help="ROWSxCOLS per CCD (full DECam: 4094x2046)."
    ),
    ccds_per_exposure: int = typer.Option(8, "--ccds", min=1, max=61, help="CCDs per exposure (up to 61)."),
    embedder: str | None = typer.Option(
        None, "--embedder", help="Default: dinov2+qa with --weights, else qa."
    ),
    weights: Path | None = typer.Option(None, "--weights", help="DINOv2 weights file (Meta's layout)."),
    workers: int = typer.Option(2, "--workers", min=0, help="DataLoader processes."),
    seed: int = typer.Option(0, "--seed", min=0),
    fresh: bool = typer.Option(False, "--fresh", help="Delete the demo store and data first."),
) -> None:
    """vec's main job end to end on simulated DECam data: simulate, ingest, label, train, classify, report."""
    from vecstore.cli.demo import DemoOptions, run_demo

    obj = _obj(ctx)
    rows, cols = _parse_shape(ccd_shape)
    options = DemoOptions(
        exposures=exposures,
        ccd_shape=(rows, cols),
        ccds_per_exposure=ccds_per_exposure,
        embedder=embedder,
        weights=str(weights) if weights else None,
        workers=workers,
        seed=seed,
        fresh=fresh,
    )
    run_demo(obj.store, options, obj.config, echo=typer.echo)


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
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="List every unreadable line, note and refused file, not one summary."
    ),
) -> None:
    """Import legacypipe bad_expid lists, DELVE/DES exclude lists or survey-ccds ccd_cuts as labels.

    Unreadable lines are counted and summarised; a file that is mostly unreadable is refused (exit 1),
    and the other paths are still imported.
    """
    from ingest.labels.formats import LabelFormatError
    from ingest.labels.importer import import_labels, warning_details, warning_summary
    from ingest.labels.rules import CategoryRules
    from vecstore.store import Store

    obj = _obj(ctx)
    rules = CategoryRules.load(categories)
    refused = 0
    with Store.open(obj.store, writable=True, config=obj.config) as store:
        for path in paths:
            try:
                result = import_labels(store, path, source, rules)
            except LabelFormatError as exc:  # one refused path does not stop the others; exit 1 says so
                typer.echo(f"error: {exc}", err=True)
                refused += 1
                continue
            typer.echo(
                f"{path}: {result.n_records:,} labels ({result.source}), {result.n_added:,} new, "
                f"{result.n_ignored:,} ignored by rule, {sum(n for *_, n in result.unmapped):,} unmapped"
            )
            if verbose:
                lines = warning_details(result)
            else:
                lines = [f"{summary}; --verbose lists all" for summary in warning_summary(result)]
            for line in lines:
                typer.echo(f"  {line}", err=True)
    if refused:
        raise typer.Exit(1)


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
