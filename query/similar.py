"""``vec similar``: the look-alikes of a CCD (by id or from a new file) in the corpus index, with metadata.

An optional SQL ``--where`` on the ``ccds`` table (e.g. ``filter = 'r'``) filters neighbours; the search
widens geometrically until ``k`` neighbours pass the filter or the whole corpus has been looked at.
"""

from __future__ import annotations

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
    """``EXPNUM/CCDNAME`` (or a bare ccd_id) -> the ccd_id of a committed CCD."""
    text = reference.strip()
    match = _CCD_REF.match(text)
    if match:
        rows = (
            store.query(
                "SELECT ccd_id FROM ccds WHERE expnum = ? AND upper(ccdname) = upper(?)",
                [int(match["expnum"]), match["ccdname"]],
            )
            .column("ccd_id")
            .to_pylist()
        )
    elif text.isdigit():
        rows = (
            store.query("SELECT ccd_id FROM ccds WHERE ccd_id = ?", [int(text)]).column("ccd_id").to_pylist()
        )
    else:
        raise VecError(f"{reference!r} is neither EXPNUM/CCDNAME (e.g. 1222425/N4) nor a ccd_id")
    if not rows:
        raise NotFoundError(f"store {store.path} has no embedded CCD {reference}")
    return int(rows[0])


def _filter_ids(store: Store, ids: np.ndarray, where: str | None) -> set[int]:
    if where is None or not len(ids):
        return set(ids.tolist())
    listing = ", ".join(str(int(i)) for i in ids)
    try:
        rows = store.query(f"SELECT ccd_id FROM ccds WHERE ccd_id IN ({listing}) AND ({where})")
    except Exception as exc:  # duckdb's parser/binder errors: a user typo in --where
        raise VecError(
            f"--where {where!r} is not valid SQL on the ccds table: {str(exc).splitlines()[0]}"
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
    from ingest.embedders import create_embedder
    from ingest.engine import embedder_provenance
    from ingest.reader import CCDTask, list_ccd_hdus, read_ccd

    path, hdu = _split_file_ref(reference)
    if hdu is None:
        hdus = list_ccd_hdus(path)
        if not hdus:
            raise VecError(f"{path} has no CCD image HDU")
        hdu = hdus[0]
    meta, pixels = read_ccd(CCDTask(str(path), hdu))
    provenance = store.provenance()
    preset = None if provenance.preset == "none" else provenance.preset.split("@")[0]
    embedder = create_embedder(provenance.embedder, weights=weights, preset=preset)
    store.check_provenance(embedder_provenance(embedder))
    import dataclasses

    vector = embedder.embed_images([pixels], [dataclasses.asdict(meta)])[0]
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
    path, _ = _split_file_ref(reference)
    return path.exists()
