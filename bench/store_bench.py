"""Store benchmark: commit throughput, and open / ``vec sql`` latency on a store of many CCD rows.

(a) ``Store.commit_batch`` of 768-d float16 vectors at several batch sizes vs writing the same Parquet
    parts alone (``vecstore.parts.write_part``, durable, no catalog): the ratio is the commit protocol's
    overhead (catalog transaction, exposures upsert, primary-key checks).
(b) On a store of 1,000,000 CCD rows (768-d float16 vectors, committed in batches of 20,000):
    ``Store.open`` read-only and writable, and three typical SQL queries through ``run_sql`` and through the
    real CLI in a subprocess, vs the same query on an already-open DuckDB connection.

    python bench/store_bench.py [--quick]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import (  # noqa: E402
    PROJECT_ROOT,
    Report,
    Table,
    best,
    elapsed,
    interleaved,
    log,
    ms,
    parse_args,
    rate,
    ratio,
    repeats_for,
    secs,
)
from vecstore import catalog, parts  # noqa: E402
from vecstore.sql import run_sql  # noqa: E402
from vecstore.store import Store  # noqa: E402

DIM = 768
CCDS_PER_EXPOSURE = 61
FIRST_EXPNUM = 200_000
COMMIT_BATCH_SIZES = (16, 64, 256)
FILTERS = np.array(["g", "r", "i", "z", "Y"])

QUERIES = {
    "count by filter": "SELECT filter, count(*) AS n FROM ccds GROUP BY filter ORDER BY filter",
    "join + WHERE": (
        "SELECT c.ccd_id, e.expnum, e.mjd_obs, c.ccdname, c.airmass FROM ccds c "
        "JOIN exposures e USING (expnum) "
        "WHERE e.filter = 'r' AND e.airmass > 1.9 AND c.ccdname = 'N4' ORDER BY c.ccd_id"
    ),
    "GROUP BY expnum": (
        "SELECT expnum, count(*) AS n_ccds, avg(ebv) AS mean_ebv FROM ccds "
        "GROUP BY expnum ORDER BY mean_ebv DESC, expnum LIMIT 20"
    ),
}


@dataclass(frozen=True)
class Sizes:
    commit_ccds: int  # CCDs committed per batch size in (a)
    store_rows: int  # CCD rows of the store in (b)
    store_batch: int  # rows per commit while building it


FULL = Sizes(commit_ccds=4096, store_rows=1_000_000, store_batch=20_000)
QUICK = Sizes(commit_ccds=256, store_rows=20_000, store_batch=5_000)


# ----------------------------------------------------------------------------------------- catalog rows
class SyntheticSurvey:
    """Catalog rows of a survey of 61-CCD exposures; row i is CCD i % 61 of exposure i // 61."""

    def __init__(self, n_rows: int, seed: int = 0):
        n_exposures = -(-n_rows // CCDS_PER_EXPOSURE)
        rng = np.random.default_rng(seed)
        self.filter = FILTERS[rng.integers(0, len(FILTERS), n_exposures)]
        self.exptime = rng.choice([30.0, 60.0, 90.0, 120.0], n_exposures)
        self.mjd_obs = 57000.0 + np.sort(rng.uniform(0, 2000, n_exposures))
        self.airmass = rng.uniform(1.0, 2.0, n_exposures)
        self.ra = rng.uniform(0, 360, n_exposures)
        self.dec = rng.uniform(-70, 10, n_exposures)
        self.ebv = rng.gamma(2.0, 0.02, n_rows)
        self.ccdnums = [n for n in range(1, 63) if n != 61]  # N30 (61) is dead

    def rows(self, start: int, count: int) -> list[dict]:
        return [self.row(i) for i in range(start, start + count)]

    def row(self, i: int) -> dict:
        exposure, position = divmod(i, CCDS_PER_EXPOSURE)
        expnum = FIRST_EXPNUM + exposure
        ccdnum = self.ccdnums[position]
        ccdname = f"S{ccdnum}" if ccdnum <= 31 else f"N{ccdnum - 31}"
        band = str(self.filter[exposure])
        return {
            "ccd_id": expnum * 100 + ccdnum,
            "expnum": expnum,
            "ccdname": ccdname,
            "ccdnum": ccdnum,
            "filter": band,
            "exptime": float(self.exptime[exposure]),
            "mjd_obs": float(self.mjd_obs[exposure]),
            "airmass": float(self.airmass[exposure]),
            "plver": "V4.8.2a",
            "ra": float(self.ra[exposure]),
            "dec": float(self.dec[exposure]),
            "path": f"/data/decam/CP/V4.8.2a/c4d_{expnum}_ooi_{band}_ls10.fits.fz",
            "hdu": ccdname,
            "release": "dr10",
            "ccd_cuts": 0,
            "ebv": float(self.ebv[i]),
        }


def random_vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM), dtype=np.float32).astype(np.float16)


# ----------------------------------------------------------------------------------------- (a) commits
def time_commits(root: Path, survey: SyntheticSurvey, vectors: np.ndarray, batch: int, n: int) -> float:
    """Seconds spent in ``commit_batch`` committing ``n`` CCDs in batches of ``batch`` to a new store."""
    batches = [survey.rows(start, batch) for start in range(0, n, batch)]
    store_dir = Path(tempfile.mkdtemp(dir=root, prefix=f"commit{batch}-")) / "store"
    seconds = 0.0
    with Store.create(store_dir) as store:
        for rows in batches:
            seconds += elapsed(lambda rows=rows: store.commit_batch(None, rows, vectors[: len(rows)]))
    return seconds


def time_parts_only(root: Path, survey: SyntheticSurvey, vectors: np.ndarray, batch: int, n: int) -> float:
    """Seconds to write the same parts durably (temp file, fsync, rename, fsync dir), no catalog."""
    directory = Path(tempfile.mkdtemp(dir=root, prefix=f"parts{batch}-"))
    ids = [np.array([r["ccd_id"] for r in survey.rows(s, batch)], np.int64) for s in range(0, n, batch)]
    seconds = 0.0
    for part_id, part_ids in enumerate(ids, start=1):
        name = parts.part_file_name(part_id)
        seconds += elapsed(
            lambda name=name, part_ids=part_ids: parts.write_part(
                directory, name, part_ids, vectors[: len(part_ids)], "float16"
            )
        )
    return seconds


def bench_commits(root: Path, sizes: Sizes, repeats: int, report: Report) -> None:
    survey = SyntheticSurvey(sizes.commit_ccds)
    vectors = random_vectors(max(COMMIT_BATCH_SIZES))
    runs = {}
    n = sizes.commit_ccds
    for batch in COMMIT_BATCH_SIZES:
        runs[f"parts only, batch {batch}"] = lambda b=batch: time_parts_only(root, survey, vectors, b, n)
        runs[f"commit_batch, batch {batch}"] = lambda b=batch: time_commits(root, survey, vectors, b, n)
    log(f"(a) commit throughput: {sizes.commit_ccds} CCDs per batch size, {repeats} repeats")
    seconds = interleaved(runs, repeats)
    report.raw["commit_seconds"] = seconds
    table = Table(
        f"(a) Commit throughput: {sizes.commit_ccds:,} CCDs of {DIM}-d float16 per batch size, "
        f"best of {repeats}",
        ["batch size", "commits", "parts only CCDs/s", "commit_batch CCDs/s", "ms/commit", "commit / parts"],
    )
    for batch in COMMIT_BATCH_SIZES:
        base = best(seconds[f"parts only, batch {batch}"])
        full = best(seconds[f"commit_batch, batch {batch}"])
        n_commits = -(-sizes.commit_ccds // batch)
        table.add(
            batch, n_commits, rate(sizes.commit_ccds, base), rate(sizes.commit_ccds, full),
            ms(full / n_commits), ratio(full, base),
        )  # fmt: skip
    table.notes.append("parts only = vecstore.parts.write_part (zstd Parquet, fsync, rename, fsync dir)")
    table.notes.append("commit_batch = that + one DuckDB transaction (part row, exposures upsert, CCD rows)")
    table.notes.append("commit / parts = time ratio: the commit protocol's overhead over writing the parts")
    report.tables.append(table)


# ----------------------------------------------------------------------------------------- (b) big store
def build_store(path: Path, sizes: Sizes) -> float:
    """A store of ``sizes.store_rows`` CCDs; one random float16 block is reused as every batch's vectors."""
    survey = SyntheticSurvey(sizes.store_rows, seed=1)
    vectors = random_vectors(sizes.store_batch, seed=1)
    seconds = 0.0
    with Store.create(path) as store:
        for start in range(0, sizes.store_rows, sizes.store_batch):
            rows = survey.rows(start, min(sizes.store_batch, sizes.store_rows - start))
            seconds += elapsed(lambda rows=rows: store.commit_batch(None, rows, vectors[: len(rows)]))
            if start // sizes.store_batch % 10 == 0:
                log(f"  built {start + len(rows):,} / {sizes.store_rows:,} rows")
    return seconds


def time_open(path: Path, writable: bool) -> float:
    return elapsed(lambda: Store.open(path, writable=writable).close())


def time_raw_connect(path: Path) -> float:
    return elapsed(lambda: catalog.connect(path / catalog.CATALOG_FILE, read_only=True).close())


def time_open_connection_query(path: Path, query: str) -> float:
    """The query alone on a connection opened beforehand (and closed after, outside the timing)."""
    con = catalog.connect(path / catalog.CATALOG_FILE, read_only=True)
    try:
        return elapsed(lambda: catalog.query_arrow(con, query))
    finally:
        con.close()


def time_run_sql(path: Path, query: str) -> float:
    return elapsed(lambda: run_sql(path, query))


def cli_command(path: Path, query: str) -> list[str]:
    return [sys.executable, "-m", "vecstore.cli", "--store", str(path), "sql", query]


def time_subprocess(command: list[str]) -> float:
    def run() -> None:
        subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True)

    return elapsed(run)


def bench_open(path: Path, repeats: int, report: Report, build_note: str) -> None:
    runs = {
        "duckdb.connect read-only (baseline)": lambda: time_raw_connect(path),
        "Store.open read-only": lambda: time_open(path, writable=False),
        "Store.open writable": lambda: time_open(path, writable=True),
    }
    log("(b) open time")
    seconds = interleaved(runs, repeats)
    report.raw["open_seconds"] = seconds
    base = best(seconds["duckdb.connect read-only (baseline)"])
    table = Table(
        f"(b1) Open time, store of {report.params['store_rows']:,} CCD rows, best of {repeats}",
        ["operation", "ms", "vs raw connect"],
    )
    for name, values in seconds.items():
        table.add(name, ms(best(values)), ratio(best(values), base))
    table.notes.append("read-only: connect + invariant check (sum of part rows == count of CCDs)")
    table.notes.append("writable: + writer lock, schema upgrade transaction, orphan/missing-part scan")
    table.notes.append(build_note)
    report.tables.append(table)


def bench_sql(path: Path, repeats: int, report: Report) -> None:
    results: dict[str, dict[str, list[float]]] = {}
    for label, query in QUERIES.items():
        log(f"(b) sql: {label}")
        runs = {
            "open connection": lambda q=query: time_open_connection_query(path, q),
            "run_sql": lambda q=query: time_run_sql(path, q),
            "cli": lambda q=query: time_subprocess(cli_command(path, q)),
        }
        results[label] = interleaved(runs, repeats)
        results[label]["rows"] = [run_sql(path, query).num_rows]
    log("(b) interpreter start-up")
    startup = interleaved(
        {
            "python -c pass": lambda: time_subprocess([sys.executable, "-c", "pass"]),
            "vec --help": lambda: time_subprocess([sys.executable, "-m", "vecstore.cli", "--help"]),
            "import vecstore.sql": lambda: time_subprocess([sys.executable, "-c", "import vecstore.sql"]),
        },
        repeats,
    )
    report.raw["sql_seconds"] = results
    report.raw["startup_seconds"] = startup
    report.tables.append(sql_table(results, startup, repeats, report.params["store_rows"]))


def sql_table(results, startup, repeats: int, n_rows: int) -> Table:
    table = Table(
        f"(b2) vec sql latency, store of {n_rows:,} CCD rows (ms; best of {repeats})",
        [
            "query",
            "rows out",
            "open conn (baseline)",
            "run_sql",
            "CLI subprocess",
            "run_sql/base",
            "CLI/base",
        ],
    )
    for label, seconds in results.items():
        base, lib, cli = (best(seconds[k]) for k in ("open connection", "run_sql", "cli"))
        table.add(label, seconds["rows"][0], ms(base), ms(lib), ms(cli), ratio(lib, base), ratio(cli, base))
    table.notes.append(
        f"start-up alone: `python -c pass` {ms(best(startup['python -c pass']))} ms, "
        f"`python -m vecstore.cli --help` {ms(best(startup['vec --help']))} ms, "
        f"`python -c 'import vecstore.sql'` (duckdb, pyarrow) {ms(best(startup['import vecstore.sql']))} ms"
    )
    table.notes.append("run_sql = Store.open (read-only) + connect + temp views over the parts + query")
    table.notes.append("CLI = `python -m vecstore.cli --store S sql Q` in a subprocess (incl. printing)")
    for label, query in QUERIES.items():
        table.notes.append(f"{label}: {query}")
    return table


def build_note(path: Path, sizes: Sizes, build_seconds: float) -> str:
    parts_bytes = sum(p.stat().st_size for p in (path / parts.PARTS_DIR).iterdir())
    catalog_bytes = (path / catalog.CATALOG_FILE).stat().st_size
    return (
        f"store built with commit_batch in {-(-sizes.store_rows // sizes.store_batch)} batches of "
        f"{sizes.store_batch:,} rows ({DIM}-d float16, one random block reused): {secs(build_seconds)} s "
        f"in commit_batch ({rate(sizes.store_rows, build_seconds)} CCDs/s); "
        f"parts {parts_bytes / 1e9:.2f} GB, catalog {catalog_bytes / 1e6:.0f} MB; "
        "all timings with a warm page cache"
    )


# ----------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    sizes = QUICK if args.quick else FULL
    repeats = repeats_for(args, full=3, quick=1)
    open_repeats = repeats_for(args, full=5, quick=2)
    report = Report(
        "store_bench",
        args,
        {
            "dim": DIM,
            "dtype": "float16",
            "commit_ccds": sizes.commit_ccds,
            "commit_batch_sizes": COMMIT_BATCH_SIZES,
            "store_rows": sizes.store_rows,
            "store_batch": sizes.store_batch,
            "repeats": repeats,
            "open_repeats": open_repeats,
        },
    )
    with tempfile.TemporaryDirectory(prefix="vec-bench-store-") as tmp:
        root = Path(tmp)
        bench_commits(root, sizes, repeats, report)
        store_path = root / "big-store"
        log(f"(b) building a store of {sizes.store_rows:,} rows in batches of {sizes.store_batch:,}")
        build_seconds = build_store(store_path, sizes)
        report.raw["build_seconds"] = build_seconds
        bench_open(store_path, open_repeats, report, build_note(store_path, sizes, build_seconds))
        bench_sql(store_path, open_repeats, report)
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
