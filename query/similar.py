"""``vec similar``: the look-alikes of a CCD (by id or from a new file) in the corpus index, with metadata.

The space searched is the current model's corpus index, or before any model the label-free corpus space
(:mod:`vecstore.corpus_space`, fitted without labels), so look-alikes can be found right after an ingest;
:class:`SimilarResult` says which. An artifact hunter wants other exposures: by default the query's own
exposure is left out (``include_own_exposure`` keeps it), and ``per_exposure=1`` keeps at most one CCD
per exposure (the nearest). An optional SQL ``--where`` on the ``ccds`` table (e.g. ``filter = 'r'``)
filters neighbours; the search widens geometrically until ``k`` neighbours pass every filter or the whole
corpus has been looked at. ``where_params`` binds the ``?`` placeholders of ``where`` (the web page
builds its filter that way, so no text from a browser reaches the catalog as SQL).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from query.ccd_size import SIMILAR_ADVICE, size_warnings
from query.labels import resolve_ccd_categories
from vecstore import index as vindex
from vecstore.errors import BadInputError, NotFoundError
from vecstore.models import Model
from vecstore.store import Store
from vecstore.vocabulary import expnum_of

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
        number = int(text)
        rows = _ccd_ids(store, "ccd_id = ?", [number])
        # Not a ccd_id: an exposure number given alone (name its CCDs), else the exposure of that ccd_id.
        expnum = number if rows or exposure_ccdnames(store, number) else int(expnum_of(number))
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


def _filter_ids(store: Store, ids: np.ndarray, where: str | None, params: list | None = None) -> set[int]:
    if where is None or not len(ids):
        return set(ids.tolist())
    listing = ", ".join(str(int(i)) for i in ids)
    try:
        rows = store.query(f"SELECT ccd_id FROM ccds WHERE ccd_id IN ({listing}) AND ({where})", params)
    except Exception as exc:  # duckdb's parser/binder errors: a user typo in --where
        raise BadInputError(
            f"--where {where!r} is not valid SQL on the ccds table: {str(exc).splitlines()[0]}; "
            f"its columns: {', '.join(store.query('SELECT * FROM ccds LIMIT 0').column_names)}"
        ) from None
    return set(rows.column("ccd_id").to_pylist())


def search_similar(
    store: Store,
    model,
    raw_vector: np.ndarray,
    k: int,
    *,
    where: str | None = None,
    exclude: set[int] | None = None,
    exclude_expnums: set[int] | None = None,
    per_exposure: int = 0,
    ef_search: int | None = None,
    where_params: list | None = None,
) -> list[dict]:
    """The ``k`` nearest corpus CCDs to one raw embedding, with distance, label and metadata, best first.

    ``model``: a :class:`~vecstore.models.Model` or a :class:`~vecstore.corpus_space.LabelFreeSpace` (its
    ``postprocessor`` and ``corpus_index``). ``exclude``: ccd_ids left out; ``exclude_expnums``: exposures
    left out; ``per_exposure``: at most this many CCDs of one exposure (the nearest; 0 = no limit).
    ``where_params``: values of the ``?`` placeholders in ``where``.
    ``ef_search``: HNSW search breadth (default: the store's ``index.hnsw_ef_search``); at least the number
    of candidates fetched, so a large ``k`` or a filter still finds its neighbours."""
    ef_search = ef_search or store.config.index.hnsw_ef_search
    index = model.corpus_index(ef_search=max(ef_search, k))
    query = model.postprocessor.transform(np.asarray(raw_vector, dtype=np.float32)[None, :])
    exclude = exclude or set()
    exclude_expnums = exclude_expnums or set()
    want = k + len(exclude) + (_exposure_size(store, exclude_expnums) if exclude_expnums else 0)
    narrowing = where is not None or per_exposure > 0
    while True:
        fetch = min(max(want * (4 if narrowing else 1), k), index.ntotal)
        vindex.set_search_params(index, ef_search=max(ef_search, fetch))
        distances, ids = vindex.search(index, query, fetch)
        valid = ids[0] >= 0
        ids, distances = ids[0][valid], distances[0][valid]
        allowed = _filter_ids(store, ids, where, where_params) - exclude
        hits = _keep(ids, distances, allowed, exclude_expnums, per_exposure)
        if len(hits) >= k or fetch >= index.ntotal:
            return _describe(store, hits[:k])
        want *= 4


def _keep(
    ids: np.ndarray, distances: np.ndarray, allowed: set[int], exclude_expnums: set[int], per_exposure: int
) -> list[tuple[int, float]]:
    """Hits in distance order that pass the filters, at most ``per_exposure`` per exposure."""
    hits, seen = [], {}
    for i, d in zip(ids.tolist(), distances.tolist(), strict=True):
        expnum = int(expnum_of(i))
        if i not in allowed or expnum in exclude_expnums:
            continue
        if per_exposure > 0:
            if seen.get(expnum, 0) >= per_exposure:
                continue
            seen[expnum] = seen.get(expnum, 0) + 1
        hits.append((int(i), float(d)))
    return hits


def _exposure_size(store: Store, expnums: set[int]) -> int:
    listing = ", ".join(str(int(e)) for e in expnums)
    return int(store.scalar(f"SELECT count(*) FROM ccds WHERE expnum IN ({listing})"))


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
    store: Store,
    model,
    reference: str,
    k: int,
    *,
    where: str | None = None,
    include_own_exposure: bool = False,
    per_exposure: int = 0,
    where_params: list | None = None,
) -> tuple[dict, list[dict]]:
    """Look-alikes of a CCD already in the store (the CCD itself, and by default its exposure, left out)."""
    ccd_id = resolve_ccd(store, reference)
    _, vectors = store.load_embeddings(np.array([ccd_id]))
    query = _describe(store, [(ccd_id, 0.0)])[0]
    own = set() if include_own_exposure else {int(query["expnum"])}
    hits = search_similar(
        store,
        model,
        vectors[0],
        k,
        where=where,
        exclude={ccd_id},
        exclude_expnums=own,
        per_exposure=per_exposure,
        where_params=where_params,
    )
    return query, hits


def similar_to_file(
    store: Store,
    model: Model,
    reference: str,
    k: int,
    *,
    where: str | None = None,
    weights: str | None = None,
    include_own_exposure: bool = False,
    per_exposure: int = 0,
    where_params: list | None = None,
) -> tuple[dict, list[dict], np.ndarray]:
    """Look-alikes of one CCD of a FITS file (``FILE`` = its first CCD HDU, ``FILE:HDU`` = that HDU); the
    file's exposure, if the store holds it, is left out unless ``include_own_exposure``."""
    from query.gateway import embed_as_stored, embedder_for_store, read_file

    path, hdu = _split_file_ref(reference)
    found = read_file(path, hdu, limit=1)  # FILE alone: its first usable CCD
    found.require_some()
    meta, pixels = found.metas[0], found.images[0]
    vector = embed_as_stored(store, embedder_for_store(store, weights), [pixels], [meta])[0]
    query = {"rank": 0, **dataclasses.asdict(meta), "distance": 0.0, "label": None}
    own = set() if include_own_exposure or meta.expnum is None else {int(meta.expnum)}
    hits = search_similar(
        store,
        model,
        vector,
        k,
        where=where,
        exclude={meta.ccd_id},
        exclude_expnums=own,
        per_exposure=per_exposure,
        where_params=where_params,
    )
    return query, hits, pixels


def file_size_warnings(store: Store, query: dict) -> list[str]:
    """A warning when a file's CCD is of a size none of the store's CCDs has (nothing to say when either
    size is unrecorded)."""
    if query.get("naxis1") is None or query.get("naxis2") is None:
        return []
    size = (query["naxis1"], query["naxis2"])
    return size_warnings(
        {query["ccdname"]: size}, store.ccd_size_counts(), against="the store's CCDs", advice=SIMILAR_ADVICE
    )


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


@dataclasses.dataclass(frozen=True)
class SimilarResult:
    """What ``vec similar`` found: the query CCD, its look-alikes best first, and the query's pixels when
    it came from a file (a stored CCD's pixels are read again from its path for pictures)."""

    query: dict
    hits: list[dict]
    pixels: np.ndarray | None = None
    space: str = ""  # what was searched: "model v0003's space" or the label-free corpus space
    warnings: list[str] = dataclasses.field(default_factory=list)  # e.g. a file CCD of another size

    def describe_space(self) -> str:
        return f"searched {self.space}" if self.space else ""


def find_similar(
    store: Store,
    model: Model | None,
    reference: str,
    k: int,
    where: str | None = None,
    weights: str | None = None,
    *,
    include_own_exposure: bool = False,
    per_exposure: int = 0,
    where_params: list | None = None,
) -> SimilarResult:
    """Look-alikes of ``reference``: a CCD of the store (``EXPNUM/CCDNAME``, a ccd_id) or ``FILE[:HDU]``.

    ``model`` None: the space :func:`vecstore.corpus_space.search_space` picks (the current model's, else
    the label-free corpus space, built on first use)."""
    if model is None:
        from vecstore.corpus_space import search_space

        model = search_space(store, store.config)
    options = {
        "where": where,
        "where_params": where_params,
        "include_own_exposure": include_own_exposure,
        "per_exposure": per_exposure,
    }
    space = getattr(model, "space_description", "")
    if is_file_reference(reference):
        query, hits, pixels = similar_to_file(store, model, reference, k, weights=weights, **options)
        return SimilarResult(query, hits, pixels, space=space, warnings=file_size_warnings(store, query))
    return SimilarResult(*similar_to_ccd(store, model, reference, k, **options), space=space)
