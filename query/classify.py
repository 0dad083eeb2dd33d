"""``vec classify``: k=7 L1 neighbours per CCD -> class probabilities -> the 0.9 cut -> the exposure vote.

The same core (:func:`classify_vectors`) serves exposures in the store, exposures read from a new file,
and ``--all`` runs that write ``ccd_predictions`` / ``exposure_predictions`` tables.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ingest.categories import CATEGORIES
from query.knn import class_probabilities, find_neighbours
from query.vote import CCDVerdict, ExposureVerdict, ccd_verdicts, exposure_vote
from vecstore.config import ClassifyConfig
from vecstore.errors import NotFoundError, VecError
from vecstore.models import Model
from vecstore.store import Store

CHUNK_EXPOSURES = 100  # exposures per transaction of a `classify --all` run: the unit lost on a crash


@dataclass(frozen=True)
class CCDResult:
    ccd_id: int
    expnum: int
    ccdname: str | None
    verdict: CCDVerdict
    probs: dict[str, float]
    neighbours: list[dict]  # ccd_id, expnum, ccdname, label, distance — who voted


@dataclass(frozen=True)
class ExposureResult:
    expnum: int
    verdict: ExposureVerdict
    ccds: list[CCDResult]
    source: str = "store"

    def as_dict(self) -> dict:
        return {
            "expnum": self.expnum,
            "source": self.source,
            "is_bad": self.verdict.is_bad,
            "category": self.verdict.category,
            "n_bad": self.verdict.n_bad,
            "n_ccds": self.verdict.n_ccds,
            "mean_prob": self.verdict.mean_prob,
            "ccds": [
                {
                    "ccd_id": c.ccd_id,
                    "ccdname": c.ccdname,
                    "label": c.verdict.label,
                    "prob": c.verdict.prob,
                    "is_bad": c.verdict.is_bad,
                    "probs": c.probs,
                    "neighbours": c.neighbours,
                }
                for c in self.ccds
            ],
        }


@dataclass
class ClassifyRunSummary:
    run_id: int
    model_version: str
    n_exposures: int = 0
    n_bad: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    resumed: bool = False


# ------------------------------------------------------------------------------------------------ core
def classify_vectors(
    store: Store, model: Model, raw_vectors: np.ndarray, cfg: ClassifyConfig
) -> tuple[list[CCDVerdict], np.ndarray, object]:
    """Raw embeddings (n, dim) -> per-CCD verdicts, probabilities and the neighbour table."""
    ref_ids, ref_labels = model.reference_labels()
    neighbours = find_neighbours(
        model.reference_index(), model.postprocessor.transform(raw_vectors), cfg.k, ref_ids, ref_labels
    )
    probs = class_probabilities(neighbours.labels, len(model.classes), model.class_weights)
    return ccd_verdicts(probs, model.classes, cfg.prob_cut), probs, neighbours


def _neighbour_rows(store: Store, model: Model, neighbours) -> list[list[dict]]:
    ids = np.unique(neighbours.ids)
    meta = store.query(
        f"SELECT ccd_id, expnum, ccdname FROM ccds WHERE ccd_id IN ({', '.join(map(str, ids.tolist()))})"
    ).to_pylist()
    where = {m["ccd_id"]: m for m in meta}
    rows = []
    for row_ids, row_d, row_l in zip(neighbours.ids, neighbours.distances, neighbours.labels, strict=True):
        rows.append(
            [
                {
                    "ccd_id": int(i),
                    "expnum": where.get(int(i), {}).get("expnum"),
                    "ccdname": where.get(int(i), {}).get("ccdname"),
                    "label": model.classes[int(label)],
                    "distance": round(float(d), 6),
                }
                for i, d, label in zip(row_ids, row_d, row_l, strict=True)
            ]
        )
    return rows


def _results(store, model, ids, expnums, ccdnames, raw_vectors, cfg) -> list[CCDResult]:
    verdicts, probs, neighbours = classify_vectors(store, model, raw_vectors, cfg)
    voters = _neighbour_rows(store, model, neighbours)
    return [
        CCDResult(
            int(i),
            int(e),
            n,
            v,
            {c: round(float(p), 6) for c, p in zip(model.classes, row, strict=True) if p},
            voters[j],
        )
        for j, (i, e, n, v, row) in enumerate(zip(ids, expnums, ccdnames, verdicts, probs, strict=True))
    ]


def vote(ccds: list[CCDResult], cfg: ClassifyConfig) -> ExposureVerdict:
    return exposure_vote([c.verdict for c in ccds], cfg.min_bad_ccds, CATEGORIES)


# ------------------------------------------------------------------------------------------------ sampling
def sample_ids(ccd_ids: np.ndarray, n: int, seed: int, expnum: int) -> np.ndarray:
    """``n`` CCDs of one exposure, seeded by (seed, expnum) so a re-run draws the same ones; 0 = all."""
    ccd_ids = np.sort(np.asarray(ccd_ids, dtype=np.int64))
    if n <= 0 or len(ccd_ids) <= n:
        return ccd_ids
    rng = np.random.default_rng([seed, int(expnum)])
    return np.sort(rng.choice(ccd_ids, size=n, replace=False))


def _exposure_ccds(store: Store, expnums: list[int]) -> dict[int, list[tuple[int, str]]]:
    listing = ", ".join(str(int(e)) for e in expnums)
    rows = store.query(
        f"SELECT expnum, ccd_id, ccdname FROM ccds WHERE expnum IN ({listing}) ORDER BY ccd_id"
    )
    out: dict[int, list[tuple[int, str]]] = {}
    for e, i, n in zip(*rows.to_pydict().values(), strict=True):
        out.setdefault(e, []).append((i, n))
    return out


def classify_exposures(
    store: Store, model: Model, expnums: list[int], cfg: ClassifyConfig, *, all_ccds: bool = False
) -> list[ExposureResult]:
    """Classify exposures already in the store (their committed CCD vectors)."""
    members = _exposure_ccds(store, expnums)
    missing = [e for e in expnums if e not in members]
    if missing:
        raise NotFoundError(f"store {store.path} has no CCDs of exposure(s) {missing}; ingest them first")
    chosen = {
        e: set(
            sample_ids(
                [i for i, _ in members[e]], 0 if all_ccds else cfg.ccds_per_exposure, cfg.seed, e
            ).tolist()
        )
        for e in expnums
    }
    ids = np.array(sorted(i for e in expnums for i in chosen[e]), dtype=np.int64)
    _, vectors = store.load_embeddings(ids)
    names = {i: n for e in expnums for i, n in members[e]}
    expnum_of = {i: e for e in expnums for i, _ in members[e]}
    results = _results(store, model, ids, [expnum_of[i] for i in ids], [names[i] for i in ids], vectors, cfg)
    by_exposure: dict[int, list[CCDResult]] = {}
    for r in results:
        by_exposure.setdefault(r.expnum, []).append(r)
    return [ExposureResult(e, vote(by_exposure[e], cfg), by_exposure[e]) for e in expnums]


# ------------------------------------------------------------------------------------------------ new files
def classify_file(
    store: Store,
    model: Model,
    path: str | Path,
    cfg: ClassifyConfig,
    *,
    weights: str | None = None,
    all_ccds: bool = False,
) -> list[ExposureResult]:
    """Read, embed and classify the exposure(s) of a FITS file that is not in the store (nothing is added).

    The vectors go through the store's on-disk dtype first, so a file classified here gets exactly the
    verdict it will get once ingested.
    """
    from ingest.embedders import create_embedder
    from ingest.engine import embedder_provenance
    from ingest.reader import read_ccd
    from ingest.sources import expand_sources

    provenance = store.provenance()
    if provenance is None:
        raise VecError(f"store {store.path} has no vectors yet, so it cannot say how to embed {path}")
    preset = None if provenance.preset == "none" else provenance.preset.split("@")[0]
    embedder = create_embedder(provenance.embedder, weights=weights, preset=preset)
    store.check_provenance(embedder_provenance(embedder))
    scan = expand_sources([str(path)])
    if not scan.tasks:
        reasons = "; ".join(f.reason for f in scan.failures) or "no CCD image HDUs"
        raise VecError(f"{path}: nothing to classify ({reasons})")
    metas, images = zip(*(read_ccd(task) for task in scan.tasks), strict=True)
    ids = np.array([m.ccd_id for m in metas], dtype=np.int64)
    expnums = sorted({m.expnum for m in metas})
    keep = np.ones(len(ids), dtype=bool)
    if not all_ccds:
        keep = np.isin(
            ids,
            np.concatenate(
                [
                    sample_ids(ids[[m.expnum == e for m in metas]], cfg.ccds_per_exposure, cfg.seed, e)
                    for e in expnums
                ]
            ),
        )
    order = np.flatnonzero(keep)[np.argsort(ids[keep])]
    vectors = embedder.embed_images([images[i] for i in order], [dataclasses.asdict(metas[i]) for i in order])
    vectors = _as_stored(vectors, store)
    results = _results(
        store,
        model,
        ids[order],
        [metas[i].expnum for i in order],
        [metas[i].ccdname for i in order],
        vectors,
        cfg,
    )
    return [
        ExposureResult(
            e,
            vote([r for r in results if r.expnum == e], cfg),
            [r for r in results if r.expnum == e],
            source=str(path),
        )
        for e in expnums
    ]


def _as_stored(vectors: np.ndarray, store: Store) -> np.ndarray:
    dtype = np.float16 if store.embedding_dtype == "float16" else np.float32
    return vectors.astype(dtype).astype(np.float32)


# ------------------------------------------------------------------------------------------------ --all
def unlabelled_expnums(store: Store, release: str | None) -> list[int]:
    where = "AND release = ?" if release else ""
    rows = store.query(
        "SELECT DISTINCT expnum FROM ccds WHERE expnum NOT IN (SELECT expnum FROM labels) "
        f"{where} ORDER BY expnum",
        [release] if release else [],
    )
    return rows.column("expnum").to_pylist()


def _resumable_run(store: Store, version: str) -> int | None:
    rows = store.query(
        "SELECT run_id, args FROM runs WHERE command = 'classify' AND status <> 'ok' ORDER BY run_id DESC"
    ).to_pylist()
    for row in rows:
        if json.loads(row["args"]).get("model_version") == version:
            return int(row["run_id"])
    return None


def classify_all(
    store: Store,
    model: Model,
    cfg: ClassifyConfig,
    *,
    release: str | None = None,
    run_id: int | None = None,
    progress: Callable[[int, int, ClassifyRunSummary], None] | None = None,
) -> ClassifyRunSummary:
    """Every unlabelled exposure into the prediction tables under one run id; an unfinished run of the same
    model is resumed (exposures it already holds are skipped)."""
    resumed = run_id is not None or _resumable_run(store, model.version) is not None
    run_id = (
        run_id
        or _resumable_run(store, model.version)
        or store.start_run("classify", {"model_version": model.version, "release": release, **cfg.__dict__})
    )
    summary = ClassifyRunSummary(run_id=run_id, model_version=model.version, resumed=resumed)
    done = set(
        store.query("SELECT expnum FROM exposure_predictions WHERE run_id = ?", [run_id])
        .column("expnum")
        .to_pylist()
    )
    todo = [e for e in unlabelled_expnums(store, release) if e not in done]
    status = "interrupted"
    try:
        for start in range(0, len(todo), CHUNK_EXPOSURES):
            chunk = todo[start : start + CHUNK_EXPOSURES]
            results = classify_exposures(store, model, chunk, cfg)
            _write_predictions(store, run_id, model.version, results)
            for r in results:
                summary.n_exposures += 1
                if r.verdict.is_bad:
                    summary.n_bad += 1
                    summary.by_category[r.verdict.category] = (
                        summary.by_category.get(r.verdict.category, 0) + 1
                    )
            if progress:
                progress(start + len(chunk), len(todo), summary)
        status = "ok"
    finally:
        store.finish_run(
            run_id,
            status,
            {"exposures": summary.n_exposures, "bad": summary.n_bad, "by_category": summary.by_category},
        )
    return summary


def _write_predictions(store: Store, run_id: int, version: str, results: list[ExposureResult]) -> None:
    ccd_rows = [
        (
            run_id,
            version,
            c.ccd_id,
            r.expnum,
            c.ccdname,
            c.verdict.label,
            c.verdict.prob,
            c.verdict.is_bad,
            json.dumps(c.probs),
            json.dumps([[n["ccd_id"], n["label"], n["distance"]] for n in c.neighbours]),
        )
        for r in results
        for c in r.ccds
    ]
    exposure_rows = [
        (
            run_id,
            version,
            r.expnum,
            r.verdict.is_bad,
            r.verdict.category,
            r.verdict.n_bad,
            r.verdict.n_ccds,
            r.verdict.mean_prob,
        )
        for r in results
    ]
    ccd_table = pa.table(
        list(zip(*ccd_rows, strict=True)),
        names=[
            "run_id",
            "model_version",
            "ccd_id",
            "expnum",
            "ccdname",
            "label",
            "prob",
            "is_bad",
            "probs",
            "neighbours",
        ],
    )
    exposure_table = pa.table(
        list(zip(*exposure_rows, strict=True)),
        names=["run_id", "model_version", "expnum", "is_bad", "category", "n_bad", "n_ccds", "mean_prob"],
    )
    with store.transaction() as con:
        con.register("new_ccd", ccd_table)
        con.register("new_exposure", exposure_table)
        con.execute("INSERT INTO ccd_predictions SELECT * FROM new_ccd")
        con.execute("INSERT INTO exposure_predictions SELECT * FROM new_exposure")
        con.unregister("new_ccd")
        con.unregister("new_exposure")
