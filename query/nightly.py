"""``vec nightly SOURCE --release TAG``: a night's new exposures: ingest, classify, a list, a page.

1. Ingest what SOURCE holds that the store does not (through :func:`query.gateway.ingest_files`: the
   store's own embedder and preset; CCDs already committed are skipped, so a rerun embeds nothing).
2. The night's exposures are those committed by this ingest or lying under SOURCE, less every exposure an
   earlier nightly run classified (the ``nightly_exposures`` table): a second run on the same night finds
   nothing new and says so.
3. They are classified with the current model (the [classify] config: rule, CCD draw, thresholds).
4. The bad ones are appended to a running ``decam-bad_expid``-style list (default
   ``<store>/nightly/vec-bad_expid.txt``), one ``EXPNUM 3 vec:<Category> ...`` line per exposure; an
   exposure already in the list is never written again (the list is read before each append).
5. A one-page HTML summary (default ``<store>/nightly/run-<RUN>/summary.html``): counts, each flagged
   exposure with a link to its focal-plane page (``<EXPNUM>.html`` next to it), and the CCDs flagged
   ``unknown`` (unlike any labelled CCD: worth a look, perhaps a new kind of artifact).

The list is appended before the exposures are recorded as done, so a crash in between costs a second
classification, never a duplicate line.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from pathlib import Path

from query.classify import ExposureResult, classify_exposures, n_unknown
from query.gateway import ingest_files
from query.reports.pictures import focal_plane_picture
from vecstore.config import ClassifyConfig
from vecstore.errors import BadInputError
from vecstore.models import Model
from vecstore.store import Store

LIST_NAME = "vec-bad_expid.txt"
_LIST_HEADER = (
    "#EXPID\tFlag\tcomments\n"
    "#Flags: 1=possibly saturated; 2=clouds; 3=other source\n"
    "# written by vec nightly: exposures judged bad by a kNN vote over their CCDs, one line per exposure\n"
)


@dataclass
class NightlyResult:
    run_id: int
    ingest: object  # ingest.engine.driver.IngestSummary
    new: list[int] = field(default_factory=list)  # exposures classified tonight
    bad: list[ExposureResult] = field(default_factory=list)
    appended: list[int] = field(default_factory=list)  # exposures written to the list now
    n_unknown: int = 0
    list_file: Path | None = None
    summary_page: Path | None = None
    pages: dict[int, Path] = field(default_factory=dict)

    def describe(self) -> str:
        head = f"nightly run {self.run_id}: {self.ingest.describe()}"
        if not self.new:
            return f"{head}\nnothing new: every exposure of the source was classified by an earlier night"
        return (
            f"{head}\nclassified {len(self.new):,} new exposure(s): {len(self.bad):,} bad, "
            f"{self.n_unknown:,} CCD(s) flagged unknown; {len(self.appended):,} line(s) appended to "
            f"{self.list_file}\nsummary: {self.summary_page}"
        )


def listed_expnums(path: Path) -> set[int]:
    """Exposure numbers the running list already names (the first field; CCD lines count as theirs)."""
    if not path.exists():
        return set()
    found = set()
    for line in path.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        head = fields[0].split("-", 1)[0] if fields else ""
        if head.isdigit():
            found.add(int(head))
    return found


def _night_expnums(store: Store, source: Path, ingest_run: int) -> list[int]:
    roots = sorted({str(source), str(source.resolve())})
    under = " OR ".join("path = ? OR path LIKE ?" for _ in roots)
    params = [ingest_run] + [v for root in roots for v in (root, root.rstrip("/") + "/%")]
    rows = store.query(
        f"SELECT DISTINCT expnum FROM ccds WHERE (run_id = ? OR {under}) "
        "AND expnum NOT IN (SELECT expnum FROM nightly_exposures) ORDER BY expnum",
        params,
    )
    return rows.column("expnum").to_pylist()


def _list_line(result: ExposureResult, run_id: int, version: str) -> str:
    v = result.verdict
    return (
        f"{result.expnum}\t3\tvec:{v.category} p={v.mean_prob:.2f} n_bad={v.n_bad}/{v.n_ccds} "
        f"unknown={n_unknown(result)} nightly={run_id} model={version}\n"
    )


def append_to_list(path: Path, results: list[ExposureResult], run_id: int, version: str) -> list[int]:
    """Append the bad exposures the list does not name yet; returns those written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    listed = listed_expnums(path)
    fresh = [r for r in results if r.expnum not in listed]
    if not path.exists():
        path.write_text(_LIST_HEADER)
    if fresh:
        with path.open("a") as handle:
            handle.write(f"# {dt.datetime.now(dt.UTC):%Y-%m-%d} nightly run {run_id}\n")
            handle.writelines(_list_line(r, run_id, version) for r in fresh)
    return [r.expnum for r in fresh]


def run_nightly(
    store: Store,
    source: str | Path,
    release: str,
    cfg: ClassifyConfig,
    *,
    list_file: Path | None = None,
    out: Path | None = None,
    weights: str | None = None,
) -> NightlyResult:
    source = Path(source)
    if not source.exists():
        raise BadInputError(f"{source} does not exist: give the night's directory, FITS file or file list")
    model = Model.current(store)  # before any work: without a model there is nothing to classify with
    run_id = store.start_run("nightly", {"source": str(source), "release": release})
    summary = ingest_files(store, [str(source)], release, weights)
    list_file = Path(list_file) if list_file else store.path / "nightly" / LIST_NAME
    result = NightlyResult(run_id, summary, list_file=list_file)
    result.new = _night_expnums(store, source, summary.run_id)
    if not result.new:
        store.finish_run(run_id, "ok", {"new": 0})
        return result
    results = classify_exposures(store, model, result.new, cfg)
    result.bad = [r for r in results if r.verdict.is_bad]
    result.n_unknown = sum(n_unknown(r) for r in results)
    result.appended = append_to_list(list_file, result.bad, run_id, model.version)
    out = Path(out) if out else store.path / "nightly" / f"run-{run_id:04d}"
    out.mkdir(parents=True, exist_ok=True)
    result.pages = {r.expnum: focal_plane_picture(store, r, out / f"{r.expnum}.html") for r in result.bad}
    result.summary_page = out / "summary.html"
    result.summary_page.write_text(summary_html(result, results, release, model.version))
    _record(store, results, run_id, release, list_file)
    store.finish_run(
        run_id, "ok", {"new": len(results), "bad": len(result.bad), "appended": len(result.appended)}
    )
    return result


def _record(store: Store, results: list[ExposureResult], run_id: int, release: str, list_file: Path) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with store.transaction() as con:
        con.executemany(
            "INSERT OR REPLACE INTO nightly_exposures VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    r.expnum,
                    run_id,
                    release,
                    bool(r.verdict.is_bad),
                    r.verdict.category if r.verdict.is_bad else None,
                    n_unknown(r),
                    str(list_file),
                    now,
                ]
                for r in results
            ],
        )


def summary_html(result: NightlyResult, results: list[ExposureResult], release: str, version: str) -> str:
    """The night on one page: counts, the flagged exposures with their focal-plane pages, the unknowns."""
    esc = html.escape
    rows = "".join(
        f"<tr><td><a href='{esc(result.pages[r.expnum].name)}'>{r.expnum}</a></td>"
        f"<td>{esc(str(r.verdict.category))}</td><td>{r.verdict.n_bad}/{r.verdict.n_ccds}</td>"
        f"<td>{r.verdict.mean_prob:.2f}</td><td>{n_unknown(r)}</td>"
        f"<td>{'yes' if r.expnum in result.appended else 'already listed'}</td></tr>"
        for r in result.bad
    )
    unknown_rows = "".join(
        f"<li>{r.expnum}: {', '.join(esc(c.ccdname or str(c.ccd_id)) for c in r.ccds if c.unknown)}</li>"
        for r in results
        if n_unknown(r)
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>vec nightly run {result.run_id}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px}}</style></head><body>
<h1>vec nightly run {result.run_id}</h1>
<p>release {esc(release)}, model {esc(version)}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC</p>
<ul><li>CCDs ingested: {result.ingest.ingested:,} (failed: {result.ingest.failed:,})</li>
<li>new exposures classified: {len(results):,}</li>
<li>bad exposures: {len(result.bad):,} ({len(result.appended):,} appended to
<code>{esc(str(result.list_file))}</code>)</li>
<li>CCDs flagged unknown: {result.n_unknown:,}</li></ul>
<h2>Flagged exposures</h2>
<table><tr><th>expnum</th><th>category</th><th>bad CCDs</th><th>mean prob</th><th>unknown CCDs</th>
<th>in the list</th></tr>{rows}</table>
<h2>Unknown CCDs</h2><ul>{unknown_rows or "<li>none</li>"}</ul>
</body></html>
"""
