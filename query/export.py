"""``vec export``: bad exposures from a ``classify --all`` run, in the formats the survey pipeline reads.

``badexp`` is legacypipe's ``decam-bad_expid.txt`` line format, flag 3 ("other, see comment") with the
category in the comment (``EXPNUM 3 vec:Ghost_Scatter p=0.97 n_bad=5/20 run=4``); `vec labels import`
reads it back to the same categories (configs/categories.toml has a rule per ``vec:<Category>``).
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from vecstore.errors import BadInputError, NotFoundError
from vecstore.store import Store

FORMATS = ("badexp", "csv", "fits")


def latest_classify_run(store: Store) -> int:
    run = store.scalar("SELECT max(run_id) FROM exposure_predictions")
    if run is None:
        raise NotFoundError(f"store {store.path} has no classification run; run `vec classify --all` first")
    return int(run)


def bad_exposures(store: Store, run_id: int | None = None, min_prob: float = 0.0) -> pa.Table:
    run_id = run_id if run_id is not None else latest_classify_run(store)
    table = store.query(
        "SELECT expnum, category, n_bad, n_ccds, mean_prob, run_id, model_version FROM exposure_predictions "
        "WHERE run_id = ? AND is_bad AND mean_prob >= ? ORDER BY expnum",
        [run_id, min_prob],
    )
    if table.num_rows == 0 and store.scalar("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]) == 0:
        raise NotFoundError(f"store {store.path} has no run {run_id}")
    return table


def badexp_text(table: pa.Table) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    lines = [
        "#EXPID\tFlag\tcomments",
        "#Flags: 1=possibly saturated; 2=clouds; 3=other source",
        f"# written by vec on {stamp}: exposures judged bad by a kNN vote over their CCDs",
    ]
    for row in table.to_pylist():
        lines.append(
            f"{row['expnum']}\t3\tvec:{row['category']} p={row['mean_prob']:.2f} "
            f"n_bad={row['n_bad']}/{row['n_ccds']} run={row['run_id']} model={row['model_version']}"
        )
    return "\n".join(lines) + "\n"


def export(table: pa.Table, fmt: str, out: Path | None) -> str | None:
    """Text for stdout, or None after writing ``out`` (FITS needs ``out``)."""
    if fmt not in FORMATS:
        raise BadInputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "fits":
        if out is None:
            raise BadInputError("--format fits writes a binary table: give --output FILE.fits")
        _write_fits(table, out)
        return None
    if fmt == "badexp":
        text = badexp_text(table)
    else:
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        text = buffer.getvalue().decode()
    if out is None:
        return text
    out.write_text(text)
    return None


def _write_fits(table: pa.Table, out: Path) -> None:
    import fitsio

    columns = table.to_pydict()
    width = max([len(v) for v in columns["category"] + columns["model_version"]] + [1])
    data = np.zeros(
        table.num_rows,
        dtype=[
            ("EXPNUM", "i8"),
            ("CATEGORY", f"U{width}"),
            ("N_BAD", "i4"),
            ("N_CCDS", "i4"),
            ("PROB", "f8"),
            ("RUN_ID", "i8"),
            ("MODEL", f"U{width}"),
        ],
    )
    for name, key in [
        ("EXPNUM", "expnum"),
        ("CATEGORY", "category"),
        ("N_BAD", "n_bad"),
        ("N_CCDS", "n_ccds"),
        ("PROB", "mean_prob"),
        ("RUN_ID", "run_id"),
        ("MODEL", "model_version"),
    ]:
        data[name] = columns[key]
    fitsio.write(str(out), data, extname="BAD_EXPOSURES", clobber=True)
