"""``vec sql``: DuckDB SQL over the catalog, read-only unless asked, with table/CSV/JSON/Parquet output."""

from __future__ import annotations

import io
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from vecstore import catalog
from vecstore.errors import BadInputError, ReadOnlyError
from vecstore.store import Store

FORMATS = ("table", "csv", "json", "parquet")


def run_sql(store_path: Path, query: str, *, write: bool = False, timeout_s: float = 30.0) -> pa.Table | None:
    """Run ``query``; ``write=True`` opens the store for writing (taking the writer lock)."""
    if write:
        with Store.open(store_path, writable=True) as store, store.transaction() as con:
            return _execute(con, query)
    store = Store.open(store_path)
    try:
        with catalog.open_catalog(store.catalog_path, read_only=True, timeout_s=timeout_s) as con:
            create_vector_views(con, store)
            return _execute(con, query)
    except duckdb.Error as exc:
        if "read-only" in str(exc):
            raise ReadOnlyError(
                f"this statement changes the store, and `vec sql` is read-only: pass --write ({exc})"
            ) from None
        raise


def create_vector_views(con: duckdb.DuckDBPyConnection, store: Store) -> None:
    """Temporary views over the committed embedding parts (never written to the catalog):

    ``embeddings(ccd_id, embedding)`` always, and ``features(ccd_id, <name>...)`` when the store's
    embedder names its components (``qa``), so ``SELECT ... FROM features WHERE psf_fwhm > 6`` works.
    """
    files = [str(store.parts_dir / name) for _, name, _ in store.committed_parts()]
    if not files:
        return
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    con.execute(f"CREATE TEMP VIEW embeddings AS SELECT ccd_id, embedding FROM read_parquet([{listing}])")
    names = json.loads(store.meta().get("feature_names", "[]"))
    if names:
        columns = ", ".join(f'CAST(embedding[{i + 1}] AS DOUBLE) AS "{name}"' for i, name in enumerate(names))
        con.execute(f"CREATE TEMP VIEW features AS SELECT ccd_id, {columns} FROM embeddings")


def _execute(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table | None:
    try:
        return catalog.query_arrow(con, query)
    except duckdb.Error as exc:
        if "read-only" in str(exc):
            raise
        message = str(exc).splitlines()[0]
        if isinstance(exc, duckdb.CatalogException) and "does not exist" in message:
            message += f"; the store has: {', '.join(table_names(con))}"
        raise BadInputError(f"SQL error: {message}") from None


def table_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The tables and views a query can name (the catalog's and this connection's temporary views)."""
    rows = con.execute(
        "SELECT DISTINCT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
    ).fetchall()
    return [name for (name,) in rows]


def format_table(table: pa.Table, max_width: int = 40) -> str:
    """A plain aligned text table (no colours: it is read in terminals, logs and pipes alike)."""
    names = table.column_names
    rows = [[_cell(v, max_width) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    line = "  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += [
        "  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths, strict=True))
        for r in rows
    ]
    out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(out)


def _cell(value, max_width: int) -> str:
    text = "NULL" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def render(table: pa.Table, fmt: str, output: Path | None = None) -> str | None:
    """Text for stdout without a final newline, or None after writing ``output`` (required for parquet)."""
    if fmt not in FORMATS:
        raise BadInputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if output is None:
            raise BadInputError("--format parquet writes a binary file: give --output FILE.parquet")
        pq.write_table(table, output)
        return None
    if fmt == "table":
        text = format_table(table)
    elif fmt == "csv":
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        text = buffer.getvalue().decode().removesuffix("\n")  # the caller's echo ends the last line
    else:
        text = json.dumps(table.to_pylist(), default=str, indent=1)
    if output is not None:
        output.write_text(text + "\n")
        return None
    return text
