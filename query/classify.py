"""``vec classify``: k=7 L1 neighbours per CCD -> class probabilities -> the model's rule -> a verdict.

The same core (:func:`classify_vectors`) serves exposures in the store, exposures read from a new file,
and ``--all`` runs that write ``ccd_predictions`` / ``exposure_predictions`` tables. A CCD is never
classified by reference CCDs of its own exposure. The rule (calibrated or paper, see :mod:`query.vote`)
is the model's; :class:`Rule` carries its thresholds so every output can say what decided.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from query.ccd_size import Size, size_warnings
from query.knn import vote_in_spaces
from query.vote import (
    CCDVerdict,
    ExposureVerdict,
    calibrated_ccd_verdicts,
    ccd_verdicts,
    exposure_vote,
    fraction_vote,
    single_ccd_clause,
)
from vecstore.config import ClassifyConfig
from vecstore.errors import BadInputError, NotFoundError
from vecstore.models import Model
from vecstore.store import Store
from vecstore.vocabulary import CATEGORIES, expnum_of


@dataclass(frozen=True)
class Rule:
    """The decision rule and thresholds a classification used."""

    name: str  # "calibrated" or "paper"
    threshold: float = 0.5  # calibrated: a CCD is flagged at p_bad >= threshold
    fraction: float = 0.0  # calibrated: an exposure is bad when this share of its CCDs is flagged
    prob_cut: float = 0.9  # paper: a CCD is bad at top bad-class probability >= prob_cut
    min_bad_ccds: int = 3  # paper: an exposure is bad with this many bad CCDs
    unknown_distance: float | None = None  # k-th neighbour distance beyond which a CCD is "unknown"
    # calibrated: one CCD whose CCD-level classes reach this probability makes the exposure bad (None = off)
    local_threshold: float | None = None
    local_classes: tuple[str, ...] = ()
    spaces: tuple[str, ...] = ()  # calibrated: the post-processors whose votes are averaged (two or none)

    @classmethod
    def of(cls, model: Model, cfg: ClassifyConfig) -> Rule:
        if model.rule == "paper":
            return cls("paper", prob_cut=cfg.prob_cut, min_bad_ccds=cfg.min_bad_ccds)
        local = model.settings.get("local_threshold") if cfg.local_threshold < 0 else cfg.local_threshold
        return cls(
            "calibrated",
            threshold=float(model.settings["threshold"] if cfg.threshold < 0 else cfg.threshold),
            fraction=float(model.settings["fraction"] if cfg.fraction < 0 else cfg.fraction),
            unknown_distance=model.settings.get("unknown_distance"),
            local_threshold=None if local is None or local > 1 else float(local),
            local_classes=tuple(model.settings.get("local_classes", ())),
            spaces=tuple(model.settings.get("vote_spaces", ())),
        )

    def describe(self) -> str:
        if self.name == "paper":
            return (
                f"paper rule (Luo et al.): CCD bad at top bad-class p >= {self.prob_cut:g}, "
                f"exposure bad with >= {self.min_bad_ccds} bad CCDs"
            )
        return (
            f"calibrated rule: CCD flagged at p_bad >= {self.threshold:g}, exposure bad when >= "
            f"{self.fraction:.0%} of its CCDs (and at least 1) are flagged"
            + single_ccd_clause(self.local_classes, self.local_threshold)
            + (f"; p: the mean vote of the {' and '.join(self.spaces)} spaces" if self.spaces else "")
        )

    @property
    def single_ccd(self) -> bool:
        """Whether the single-CCD rule is on (a threshold and at least one CCD-level class)."""
        return self.local_threshold is not None and bool(self.local_classes)

    def as_dict(self) -> dict:
        if self.name == "paper":
            return {"rule": "paper", "prob_cut": self.prob_cut, "min_bad_ccds": self.min_bad_ccds}
        return {
            "rule": "calibrated",
            "threshold": self.threshold,
            "fraction": self.fraction,
            "local_threshold": self.local_threshold if self.single_ccd else None,
            "local_classes": list(self.local_classes) if self.single_ccd else [],
            "unknown_distance": self.unknown_distance,
            "spaces": list(self.spaces),
        }


@dataclass(frozen=True)
class CCDResult:
    ccd_id: int
    expnum: int
    ccdname: str | None
    verdict: CCDVerdict
    probs: dict[str, float]
    neighbours: list[dict]  # ccd_id, expnum, ccdname, label, distance — who voted
    # Out of distribution: the k-th neighbour is farther than nearly every labelled CCD's (calibrated).
    unknown: bool = False
    kth_distance: float = 0.0


@dataclass(frozen=True)
class ExposureResult:
    expnum: int
    verdict: ExposureVerdict
    ccds: list[CCDResult]
    source: str = "store"
    rule: Rule | None = None
    failures: list[dict] = field(default_factory=list)  # CCDs of a FILE that could not be used
    warnings: list[str] = field(default_factory=list)  # e.g. CCDs of a size no reference CCD has

    def as_dict(self) -> dict:
        return {
            "expnum": self.expnum,
            "source": self.source,
            **({"rule": self.rule.as_dict()} if self.rule else {}),
            "failures": self.failures,
            "warnings": self.warnings,
            "is_bad": self.verdict.is_bad,
            "category": self.verdict.category,
            "n_bad": self.verdict.n_bad,
            "n_ccds": self.verdict.n_ccds,
            "mean_prob": self.verdict.mean_prob,
            "n_unknown": n_unknown(self),
            "ccds": [
                {
                    "ccd_id": c.ccd_id,
                    "ccdname": c.ccdname,
                    "label": c.verdict.label,
                    "prob": c.verdict.prob,
                    "is_bad": c.verdict.is_bad,
                    "p_bad": round(c.verdict.p_bad, 6),
                    "top_bad": c.verdict.top_bad,
                    "top_bad_prob": round(c.verdict.top_bad_prob, 6),
                    "p_local": round(c.verdict.p_local, 6),  # of the CCD-level classes
                    "alone": c.verdict.alone,  # bad on its own (the single-CCD rule)
                    "unknown": c.unknown,
                    "kth_distance": c.kth_distance,
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
    n_unlike_size: int = 0  # exposures with a CCD of a size no reference CCD has

    def describe(self) -> str:
        text = (
            f"run {self.run_id}{' (resumed)' if self.resumed else ''}: {self.n_exposures:,} exposures "
            f"classified, {self.n_bad:,} bad {self.by_category}"
        )
        if self.n_unlike_size:
            text += (
                f"\nwarning: {self.n_unlike_size:,} of them have CCDs of a size no reference CCD has, and "
                "their verdicts are likely wrong; `vec classify EXPNUM` says which CCDs and what to do"
            )
        return text


# ------------------------------------------------------------------------------------------------ core
def classify_vectors(
    store: Store,
    model: Model,
    raw_vectors: np.ndarray,
    cfg: ClassifyConfig,
    expnums: np.ndarray | None = None,
) -> tuple[list[CCDVerdict], np.ndarray, object]:
    """Raw embeddings (n, dim) of CCDs of exposures ``expnums`` (n,) -> per-CCD verdicts, probabilities
    and the neighbour table. With ``expnums``, reference CCDs of the query's own exposure never vote."""
    ref_ids, ref_labels = model.reference_labels()
    spaces = [(model.postprocessor, model.reference_searcher()), *model.more_spaces()]
    probs, neighbours = vote_in_spaces(
        spaces,
        raw_vectors,
        cfg.k,
        ref_ids,
        ref_labels,
        len(model.classes),
        model.class_weights,
        reference_expnums=expnum_of(ref_ids),
        query_expnums=expnums,
        device=cfg.knn_device,
    )
    rule = Rule.of(model, cfg)
    if rule.name == "paper":
        return ccd_verdicts(probs, model.classes, rule.prob_cut), probs, neighbours
    local = (rule.local_classes, rule.local_threshold) if rule.single_ccd else ((), None)
    return calibrated_ccd_verdicts(probs, model.classes, rule.threshold, *local), probs, neighbours


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
    verdicts, probs, neighbours = classify_vectors(
        store, model, raw_vectors, cfg, np.asarray(expnums, dtype=np.int64)
    )
    voters = _neighbour_rows(store, model, neighbours)
    kth = neighbours.distances[:, -1].astype(np.float64)
    limit = Rule.of(model, cfg).unknown_distance
    return [
        CCDResult(
            int(i),
            int(e),
            n,
            v,
            {c: round(float(p), 6) for c, p in zip(model.classes, row, strict=True) if p},
            voters[j],
            unknown=bool(limit is not None and kth[j] > limit),
            kth_distance=round(float(kth[j]), 6),
        )
        for j, (i, e, n, v, row) in enumerate(zip(ids, expnums, ccdnames, verdicts, probs, strict=True))
    ]


def vote(ccds: list[CCDResult], rule: Rule, classes: tuple[str, ...]) -> ExposureVerdict:
    """The exposure's verdict from its CCDs under ``rule``."""
    if rule.name == "paper":
        return exposure_vote([c.verdict for c in ccds], rule.min_bad_ccds, CATEGORIES)
    probs = np.array([[c.probs.get(name, 0.0) for name in classes] for c in ccds])
    return fraction_vote([c.verdict for c in ccds], probs, classes, rule.fraction, CATEGORIES)


def _exposure_results(
    model, cfg, expnums, results: list[CCDResult], source: str, sizes: dict[int, Size]
) -> list[ExposureResult]:
    """Each exposure's verdict from its CCDs' results; ``sizes`` (ccd_id -> NAXIS1, NAXIS2) are checked
    against the reference CCDs' (:mod:`query.ccd_size`)."""
    rule = Rule.of(model, cfg)
    reference = model.reference_sizes() if sizes else Counter()
    by_exposure: dict[int, list[CCDResult]] = {e: [] for e in expnums}
    for r in results:
        by_exposure[r.expnum].append(r)
    return [
        ExposureResult(
            e,
            vote(by_exposure[e], rule, model.classes),
            by_exposure[e],
            source,
            rule,
            warnings=size_warnings(
                {c.ccdname or str(c.ccd_id): sizes[c.ccd_id] for c in by_exposure[e] if c.ccd_id in sizes},
                reference,
            ),
        )
        for e in expnums
    ]


def n_unknown(result: ExposureResult) -> int:
    return sum(c.unknown for c in result.ccds)


# ------------------------------------------------------------------------------------------------ sampling
def sample_ids(ccd_ids: np.ndarray, n: int, seed: int, expnum: int) -> np.ndarray:
    """``n`` CCDs of one exposure, seeded by (seed, expnum) so a re-run draws the same ones; 0 = all."""
    ccd_ids = np.sort(np.asarray(ccd_ids, dtype=np.int64))
    if n <= 0 or len(ccd_ids) <= n:
        return ccd_ids
    rng = np.random.default_rng([seed, int(expnum)])
    return np.sort(rng.choice(ccd_ids, size=n, replace=False))


def exposure_members(store: Store, expnums: list[int]) -> dict[int, list[tuple[int, str]]]:
    """expnum -> [(ccd_id, ccdname)] of its committed CCDs, by ccd_id."""
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
    members = exposure_members(store, expnums)
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
    exposure_of = {i: e for e in expnums for i, _ in members[e]}
    results = _results(
        store, model, ids, [exposure_of[i] for i in ids], [names[i] for i in ids], vectors, cfg
    )
    return _exposure_results(model, cfg, expnums, results, "store", store.ccd_sizes(ids))


# ------------------------------------------------------------------------------------------------ new files
def classify_file(
    store: Store,
    model: Model,
    path: str | Path,
    cfg: ClassifyConfig,
    *,
    weights: str | None = None,
    all_ccds: bool = False,
    embedder=None,
) -> list[ExposureResult]:
    """Read, embed and classify the exposure(s) of a FITS file that is not in the store (nothing is added).

    Through :mod:`query.gateway`: the store's embedder, vectors rounded to the store's dtype (the verdict
    it will get once ingested), and CCDs that cannot be read become ``failures`` of the result.
    """
    from query.gateway import embed_as_stored, embedder_for_store, read_file

    found = read_file(path)
    found.require_some()
    embedder = embedder or embedder_for_store(store, weights)
    ids = np.array([m.ccd_id for m in found.metas], dtype=np.int64)
    exposure = np.array([m.expnum for m in found.metas], dtype=np.int64)
    expnums = sorted(set(exposure.tolist()))
    n_draw = 0 if all_ccds else cfg.ccds_per_exposure
    chosen = np.concatenate([sample_ids(ids[exposure == e], n_draw, cfg.seed, e) for e in expnums])
    order = sorted((int(np.flatnonzero(ids == i)[0]) for i in chosen), key=lambda i: ids[i])
    vectors = embed_as_stored(
        store, embedder, [found.images[i] for i in order], [found.metas[i] for i in order]
    )
    results = _results(
        store, model, ids[order], exposure[order], [found.metas[i].ccdname for i in order], vectors, cfg
    )
    sizes = {
        int(ids[i]): (found.metas[i].naxis1, found.metas[i].naxis2)
        for i in order
        if found.metas[i].naxis1 is not None and found.metas[i].naxis2 is not None
    }
    return [
        dataclasses.replace(r, failures=found.failures)
        for r in _exposure_results(model, cfg, expnums, results, str(path), sizes)
    ]


def classify_targets(
    store: Store,
    model: Model,
    targets: list[str],
    cfg: ClassifyConfig,
    *,
    weights: str | None = None,
    all_ccds: bool = False,
    add_release: str | None = None,
) -> list[ExposureResult]:
    """What ``vec classify EXPID|FILE...`` does: exposure numbers from the store, files embedded on the fly
    — or, with ``add_release``, ingested under that release first and then classified from the store (each
    file is read and embedded once)."""
    if not targets:
        raise BadInputError("give exposure numbers or FITS files, or --all")
    numbers = [int(t) for t in targets if t.isdigit()]
    files = [t for t in targets if not t.isdigit()]
    results = classify_exposures(store, model, numbers, cfg, all_ccds=all_ccds) if numbers else []
    if files and add_release is not None:
        from query.gateway import added_expnums, ingest_files

        summary = ingest_files(store, files, add_release, weights)
        return results + classify_exposures(
            store, Model(store, model.version), added_expnums(store, summary, files), cfg, all_ccds=all_ccds
        )
    if files:
        from query.gateway import embedder_for_store

        embedder = embedder_for_store(store, weights)  # built once for all the files
        for path in files:
            results += classify_file(store, model, path, cfg, all_ccds=all_ccds, embedder=embedder)
    return results


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
        for start in range(0, len(todo), cfg.chunk_exposures):  # a transaction each: what a crash loses
            chunk = todo[start : start + cfg.chunk_exposures]
            results = classify_exposures(store, model, chunk, cfg)
            _write_predictions(store, run_id, model.version, results)
            for r in results:
                summary.n_exposures += 1
                summary.n_unlike_size += bool(r.warnings)
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
    ccds = [(r, c) for r in results for c in r.ccds]
    ccd_table = pa.table(
        {
            "run_id": [run_id] * len(ccds),
            "model_version": [version] * len(ccds),
            "ccd_id": [c.ccd_id for _, c in ccds],
            "expnum": [r.expnum for r, _ in ccds],
            "ccdname": [c.ccdname for _, c in ccds],
            "label": [c.verdict.label for _, c in ccds],
            "prob": [c.verdict.prob for _, c in ccds],
            "is_bad": [c.verdict.is_bad for _, c in ccds],
            "probs": [json.dumps(c.probs) for _, c in ccds],
            "neighbours": [
                json.dumps([[n["ccd_id"], n["label"], n["distance"]] for n in c.neighbours]) for _, c in ccds
            ],
            "p_bad": [c.verdict.p_bad for _, c in ccds],
            "top_bad": [c.verdict.top_bad for _, c in ccds],
            "unknown": [c.unknown for _, c in ccds],
            "kth_distance": [c.kth_distance for _, c in ccds],
        }
    )
    exposure_table = pa.table(
        {
            "run_id": [run_id] * len(results),
            "model_version": [version] * len(results),
            "expnum": [r.expnum for r in results],
            "is_bad": [r.verdict.is_bad for r in results],
            "category": [r.verdict.category for r in results],
            "n_bad": [r.verdict.n_bad for r in results],
            "n_ccds": [r.verdict.n_ccds for r in results],
            "mean_prob": [r.verdict.mean_prob for r in results],
            "n_unknown": [n_unknown(r) for r in results],
            "rule": [r.rule.name if r.rule else None for r in results],
        }
    )
    with store.transaction() as con:
        con.register("new_ccd", ccd_table)
        con.register("new_exposure", exposure_table)
        con.execute("INSERT INTO ccd_predictions BY NAME SELECT * FROM new_ccd")
        con.execute("INSERT INTO exposure_predictions BY NAME SELECT * FROM new_exposure")
        con.unregister("new_ccd")
        con.unregister("new_exposure")
