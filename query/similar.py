"""``vec similar``: the look-alikes of a CCD (by id or from a new file) in the corpus index, with metadata.

An optional SQL ``--where`` on the ``ccds`` table (e.g. ``filter = 'r'``) filters neighbours; the search
widens geometrically until ``k`` neighbours pass the filter or the whole corpus has been looked at.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from query.labels import resolve_ccd_categories
from vecstore import index as vindex
from vecstore.errors import NotFoundError, VecError
from vecstore.models import Model
from vecstore.store import Store

_CCD_REF = re.compile(r"^(?P<expnum>\d+)[/:-](?P<ccdname>[A-Za-z]+\d+)$")


def resolve_ccd(store: Store, reference: str) -> int:
    """``EXPNUM/CCDNAME`` (or a bare ccd_id) -> the ccd_id of a committed CCD.

    NotFoundError otherwise, saying the expected form and naming the CCDs the exposure has in the store.
    """
    text = reference.strip()
    match = _CCD_REF.match(text)
    if match:
        expnum, sql = int(match["expnum"]), "expnum = ? AND upper(ccdname) = upper(?)"
        rows = _ccd_ids(store, sql, [expnum, match["ccdname"]])
    elif text.isdigit():
        expnum, rows = int(text), _ccd_ids(store, "ccd_id = ?", [int(text)])
    else:
        expnum, rows = _leading_number(text), []
    if not rows:
        raise NotFoundError(_unresolved_message(store, reference, expnum))
    return int(rows[0])


def _ccd_ids(store: Store, condition: str, params: list) -> list[int]:
    return store.query(f"SELECT ccd_id FROM ccds WHERE {condition}", params).column("ccd_id").to_pylist()


def _leading_number(text: str) -> int | None:
    digits = re.match(r"^\d+", text)
    return int(digits[0]) if digits else None


def _unresolved_message(store: Store, reference: str, expnum: int | None) -> str:
    """What was expected, and which CCDs of that exposure the store does have."""
    example = f"{expnum or 1222425}/N4"
    head = f"store {store.path} has no embedded CCD {reference!r}: expected EXPNUM/CCDNAME (e.g. {example})"
    head += ", a ccd_id, or an existing FITS file[:HDU]"
    if expnum is None:
        return head
    names = exposure_ccdnames(store, expnum)
    if not names:
        return f"{head}; exposure {expnum} has no CCDs in the store"
    return f"{head}; exposure {expnum} has {len(names)} CCDs in the store: {', '.join(names)}"


def exposure_ccdnames(store: Store, expnum: int) -> list[str]:
    """CCD names of one exposure's embedded CCDs, in CCD-number order."""
    table = store.query("SELECT ccdname FROM ccds WHERE expnum = ? ORDER BY ccdnum, ccdname", [expnum])
    return table.column("ccdname").to_pylist()


def _filter_ids(store: Store, ids: np.ndarray, where: str | None) -> set[int]:
    if where is None or not len(ids):
        return set(ids.tolist())
    listing = ", ".join(str(int(i)) for i in ids)
    try:
        rows = store.query(f"SELECT ccd_id FROM ccds WHERE ccd_id IN ({listing}) AND ({where})")
    except Exception as exc:  # duckdb's parser/binder errors: a user typo in --where
        raise VecError(
            f"--where {where!r} is not valid SQL on the ccds table: {str(exc).splitlines()[0]}; "
            f"its columns: {', '.join(store.query('SELECT * FROM ccds LIMIT 0').column_names)}"
        ) from None
    return set(rows.column("ccd_id").to_pylist())


def search_similar(
    store: Store,
    model: Model,
    raw_vector: np.ndarray,
    k: int,
    *,
    where: str | None = None,
    exclude: set[int] | None = None,
    ef_search: int = 128,
) -> list[dict]:
    """The ``k`` nearest corpus CCDs to one raw embedding, with distance, label and metadata, best first."""
    index = model.corpus_index(ef_search=max(ef_search, k))
    query = model.postprocessor.transform(np.asarray(raw_vector, dtype=np.float32)[None, :])
    exclude = exclude or set()
    want = k + len(exclude)
    while True:
        fetch = min(max(want * (4 if where else 1), k), index.ntotal)
        vindex.set_search_params(index, ef_search=max(ef_search, fetch))
        distances, ids = vindex.search(index, query, fetch)
        valid = ids[0] >= 0
        ids, distances = ids[0][valid], distances[0][valid]
        allowed = _filter_ids(store, ids, where) - exclude
        hits = [(int(i), float(d)) for i, d in zip(ids, distances, strict=True) if int(i) in allowed]
        if len(hits) >= k or fetch >= index.ntotal:
            return _describe(store, hits[:k])
        want *= 4


def _describe(store: Store, hits: list[tuple[int, float]]) -> list[dict]:
    if not hits:
        return []
    listing = ", ".join(str(i) for i, _ in hits)
    meta = {
        r["ccd_id"]: r
        for r in store.query(
            f"SELECT ccd_id, expnum, ccdname, filter, exptime, mjd_obs, release, path, hdu FROM ccds "
            f"WHERE ccd_id IN ({listing})"
        ).to_pylist()
    }
    labels = resolve_ccd_categories(store)
    return [
        {"rank": rank, **meta[i], "distance": round(d, 6), "label": labels.get(i)}
        for rank, (i, d) in enumerate(hits, start=1)
    ]


def similar_to_ccd(
    store: Store, model: Model, reference: str, k: int, *, where: str | None = None
) -> tuple[dict, list[dict]]:
    """Look-alikes of a CCD already in the store (the CCD itself is left out)."""
    ccd_id = resolve_ccd(store, reference)
    _, vectors = store.load_embeddings(np.array([ccd_id]))
    query = _describe(store, [(ccd_id, 0.0)])[0]
    return query, search_similar(store, model, vectors[0], k, where=where, exclude={ccd_id})


def similar_to_file(
    store: Store,
    model: Model,
    reference: str,
    k: int,
    *,
    where: str | None = None,
    weights: str | None = None,
) -> tuple[dict, list[dict], np.ndarray]:
    """Look-alikes of one CCD of a FITS file (``FILE`` = its first CCD HDU, ``FILE:HDU`` = that HDU)."""
    from query.gateway import embed_as_stored, embedder_for_store, read_file

    path, hdu = _split_file_ref(reference)
    found = read_file(path, hdu, limit=1)  # FILE alone: its first usable CCD
    found.require_some()
    meta, pixels = found.metas[0], found.images[0]
    vector = embed_as_stored(store, embedder_for_store(store, weights), [pixels], [meta])[0]
    query = {"rank": 0, **dataclasses.asdict(meta), "distance": 0.0, "label": None}
    return query, search_similar(store, model, vector, k, where=where, exclude={meta.ccd_id}), pixels


def _split_file_ref(reference: str) -> tuple[Path, int | str | None]:
    """``path.fits.fz``, ``path.fits.fz:N4``, ``path.fits.fz:3`` or cfitsio's ``path.fits.fz[N4]``."""
    text = reference.strip()
    bracket = re.match(r"^(?P<path>.+)\[(?P<hdu>[^\]]+)\]$", text)
    if bracket:
        path, hdu = bracket["path"], bracket["hdu"]
    elif ":" in text and not Path(text).exists():
        path, hdu = text.rsplit(":", 1)
    else:
        return Path(text), None
    return Path(path), int(hdu) if hdu.isdigit() else hdu


def is_file_reference(reference: str) -> bool:
    """An existing file (``FILE``, ``FILE:HDU``, ``FILE[HDU]``); anything else is a CCD of the store."""
    if not reference.strip():
        return False
    path, _ = _split_file_ref(reference)
    return path.is_file()
