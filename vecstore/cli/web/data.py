"""What each page of ``vec serve`` shows, as plain dicts (the JSON under ``/api/…`` and the templates' input).

Every function here reads through the library the CLI uses — :func:`query.classify.classify_exposures`,
:func:`query.similar.find_similar`, :func:`query.review.review_queue`, :func:`query.analysts.exposure_labels`
and the catalog's tables — and adds only the SQL a page needs on top: the survey's counts and its table of
exposures. That SQL takes every value a browser sends as a ``?`` parameter; column names and sort keys
come from fixed lists here, never from the request.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from query.analysts import consensus, exposure_labels
from query.classify import ExposureResult, classify_exposures
from query.labels import resolve_ccd_categories
from query.reports.evaluation import tsne_learning_rate, tsne_perplexity
from query.reports.focal_plane import (
    GOOD_COLOUR,
    MISSING_COLOUR,
    abbreviation,
    category_colour,
    text_colour_on,
    verdict_colour,
)
from query.review import ReviewQueue
from query.similar import exposure_ccdnames, find_similar
from vecstore.cli.web.filters import compile_filter
from vecstore.config import ClassifyConfig
from vecstore.corpus_space import sample_ids
from vecstore.decam import ALL_CCDNAMES, focal_plane_positions
from vecstore.errors import BadInputError, NotFoundError
from vecstore.models import Model
from vecstore.store import Store
from vecstore.vocabulary import CATEGORIES, GOOD

PAGE_ROWS = 50
MAX_K = 200
VERDICT_FILTERS = ("any", "bad", "good", "unclassified", "labelled", "unlabelled")
SORTS = {
    "expnum": "expnum",
    "date": "mjd_obs",
    "unknown": "coalesce(n_unknown, -1)",
    "p": "coalesce(mean_prob, -1)",
}
UNLABELLED_COLOUR = "#b0b0b0"
_MJD_EPOCH = dt.datetime(1858, 11, 17)


# ------------------------------------------------------------------------------------------ small helpers
def mjd_to_date(mjd: float | None) -> str:
    """``2017-09-04 00:02`` (UTC) of a modified Julian date; empty when unknown."""
    if mjd is None or not np.isfinite(mjd):
        return ""
    return (_MJD_EPOCH + dt.timedelta(days=float(mjd))).strftime("%Y-%m-%d %H:%M")


def parse_int(text: str | None, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in [low, high]; BadInputError (HTTP 400) otherwise."""
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadInputError(f"{name} must be a whole number from {low} to {high}, got {text!r}") from None
    if not low <= value <= high:
        raise BadInputError(f"{name} must be from {low} to {high}, got {value}")
    return value


def label_colour(label: str | None) -> str:
    if not label:
        return UNLABELLED_COLOUR
    return GOOD_COLOUR if label == GOOD else category_colour(label)


# ------------------------------------------------------------------------------------------ survey
def latest_run(store: Store) -> dict | None:
    """The newest ``vec classify --all`` run: id, status, times, model version, rule, counts."""
    rows = store.query(
        "SELECT r.run_id, r.status, r.started_at, r.finished_at, r.args, r.summary, "
        "(SELECT any_value(model_version) FROM exposure_predictions p WHERE p.run_id = r.run_id) AS model, "
        "(SELECT any_value(rule) FROM exposure_predictions p WHERE p.run_id = r.run_id) AS rule, "
        "(SELECT count(*) FROM exposure_predictions p WHERE p.run_id = r.run_id) AS exposures, "
        "(SELECT count(*) FILTER (WHERE is_bad) FROM exposure_predictions p "
        "WHERE p.run_id = r.run_id) AS bad "
        "FROM runs r WHERE r.command = 'classify' ORDER BY r.run_id DESC LIMIT 1"
    ).to_pylist()
    if not rows:
        return None
    row = rows[0]
    args = json.loads(row.pop("args") or "{}")
    summary = json.loads(row.pop("summary") or "{}")
    return {
        **row,
        "model": row["model"] or args.get("model_version"),
        "release": args.get("release"),
        "by_category": summary.get("by_category", {}),
    }


def _exposure_base(analysts: bool) -> str:
    """One row per ingested exposure with its label and its latest-run verdict (run id = parameter 1)."""
    analyst_join = (
        "LEFT JOIN (SELECT DISTINCT expnum, true AS by_analyst FROM analyst_labels) a USING (expnum)"
        if analysts
        else "LEFT JOIN (SELECT NULL::BIGINT AS expnum, NULL::BOOLEAN AS by_analyst) a USING (expnum)"
    )
    return f"""
        WITH e AS (
          SELECT expnum, any_value(release) AS release, any_value(filter) AS band, min(mjd_obs) AS mjd_obs,
                 count(*) AS n_ccds
          FROM ccds GROUP BY expnum),
        lab AS (
          SELECT expnum, mode(category) FILTER (WHERE category IS NOT NULL AND category <> 'ignore') AS label,
                 true AS imported
          FROM labels GROUP BY expnum),
        p AS (
          SELECT expnum, is_bad, category, n_unknown, mean_prob, n_bad, n_ccds AS n_classified
          FROM exposure_predictions WHERE run_id = ?),
        x AS (
          SELECT e.*, lab.label, p.is_bad, p.category, p.n_unknown, p.mean_prob, p.n_bad, p.n_classified,
                 coalesce(lab.imported, false) OR coalesce(a.by_analyst, false) AS has_label
          FROM e LEFT JOIN lab USING (expnum) LEFT JOIN p USING (expnum) {analyst_join})
    """


@dataclass(frozen=True)
class SurveyFilter:
    """The survey table's filters, sort and page, read from the query string (unknown values: 400)."""

    verdict: str = "any"
    category: str = ""
    band: str = ""
    release: str = ""
    min_unknown: int = 0
    sort: str = "expnum"
    descending: bool = False
    page: int = 1

    @classmethod
    def from_query(cls, q: Mapping[str, str]) -> SurveyFilter:
        verdict = q.get("verdict") or "any"
        if verdict not in VERDICT_FILTERS:
            raise BadInputError(f"verdict {verdict!r}: expected one of {', '.join(VERDICT_FILTERS)}")
        category = q.get("category") or ""
        if category and category not in CATEGORIES:
            raise BadInputError(f"category {category!r}: expected one of {', '.join(CATEGORIES)}")
        sort = q.get("sort") or "expnum"
        if sort not in SORTS:
            raise BadInputError(f"sort {sort!r}: expected one of {', '.join(SORTS)}")
        return cls(
            verdict=verdict,
            category=category,
            band=(q.get("band") or "")[:20],
            release=(q.get("release") or "")[:100],
            min_unknown=parse_int(q.get("min_unknown"), "min_unknown", 0, 0, 10_000),
            sort=sort,
            descending=(q.get("order") or "asc") == "desc",
            page=parse_int(q.get("page"), "page", 1, 1, 1_000_000),
        )

    def where(self) -> tuple[str, list]:
        clauses, params = [], []
        clauses.append(
            {
                "any": "true",
                "bad": "is_bad",
                "good": "NOT is_bad",
                "unclassified": "is_bad IS NULL",
                "labelled": "has_label",
                "unlabelled": "NOT has_label",
            }[self.verdict]
        )
        if self.category:
            clauses.append("(category = ? OR label = ?)")
            params += [self.category, self.category]
        if self.band:
            clauses.append("band = ?")
            params.append(self.band)
        if self.release:
            clauses.append("release = ?")
            params.append(self.release)
        if self.min_unknown:
            clauses.append("coalesce(n_unknown, 0) >= ?")
            params.append(self.min_unknown)
        return " AND ".join(clauses), params

    def query_string(self, **changes) -> str:
        """The query string of this filter with ``changes`` (for sort links and pages)."""
        from urllib.parse import urlencode

        values = {**asdict(self), **changes}
        values["order"] = "desc" if values.pop("descending") else "asc"
        return urlencode({k: v for k, v in values.items() if v not in ("", 0, None, "any")})


def survey_counts(store: Store, run: dict | None, analysts: bool) -> dict:
    """Exposures and CCDs per release, by label and by the latest run's verdict; bad ones by category."""
    run_id = run["run_id"] if run else -1
    rows = store.query(
        _exposure_base(analysts)
        + """
        SELECT release, count(*) AS exposures, sum(n_ccds) AS ccds,
               count(*) FILTER (WHERE has_label) AS labelled,
               count(*) FILTER (WHERE is_bad) AS bad,
               count(*) FILTER (WHERE NOT is_bad) AS good,
               count(*) FILTER (WHERE is_bad IS NULL) AS unclassified,
               coalesce(sum(n_unknown), 0) AS unknown_ccds
        FROM x GROUP BY release ORDER BY release NULLS LAST
        """,
        [run_id],
    ).to_pylist()
    columns = ("exposures", "ccds", "labelled", "bad", "good", "unclassified", "unknown_ccds")
    total = {"release": "all", **{c: int(sum(r[c] or 0 for r in rows)) for c in columns}}
    categories = store.query(
        _exposure_base(analysts)
        + """
        SELECT c AS category,
               count(*) FILTER (WHERE label = c) AS labelled,
               count(*) FILTER (WHERE is_bad AND category = c) AS flagged
        FROM x, (SELECT unnest(?::VARCHAR[]) AS c) GROUP BY c
        """,
        [run_id, list(CATEGORIES)],
    ).to_pylist()
    by_category = {r["category"]: r for r in categories}
    bands = store.query("SELECT DISTINCT filter FROM ccds WHERE filter IS NOT NULL ORDER BY 1")
    return {
        "releases": rows,
        "total": total,
        "categories": [
            {
                "category": c,
                "colour": category_colour(c),
                "labelled": int(by_category.get(c, {}).get("labelled") or 0),
                "flagged": int(by_category.get(c, {}).get("flagged") or 0),
            }
            for c in CATEGORIES
        ],
        "bands": bands.column("filter").to_pylist(),
    }


def survey_exposures(store: Store, run: dict | None, analysts: bool, flt: SurveyFilter) -> dict:
    """One page of the exposures table under ``flt``, with the total that match."""
    where, params = flt.where()
    order = f"{SORTS[flt.sort]} {'DESC' if flt.descending else 'ASC'}, expnum"
    rows = store.query(
        _exposure_base(analysts)
        + f"SELECT *, count(*) OVER () AS n_match FROM x WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
        [run["run_id"] if run else -1, *params, PAGE_ROWS, (flt.page - 1) * PAGE_ROWS],
    ).to_pylist()
    n_match = int(rows[0]["n_match"]) if rows else 0
    verdicts = _exposure_consensus(store, [r["expnum"] for r in rows]) if analysts and rows else {}
    out = []
    for r in rows:
        analyst = verdicts.get(r["expnum"])
        label = analyst or r["label"]
        out.append(
            {
                "expnum": r["expnum"],
                "date": mjd_to_date(r["mjd_obs"]),
                "mjd_obs": r["mjd_obs"],
                "band": r["band"],
                "release": r["release"],
                "n_ccds": r["n_ccds"],
                "label": label,
                "label_source": "analysts" if analyst else ("imported" if r["label"] else None),
                "label_colour": label_colour(label),
                "verdict": None if r["is_bad"] is None else (r["category"] if r["is_bad"] else GOOD),
                "verdict_colour": None
                if r["is_bad"] is None
                else (category_colour(r["category"]) if r["is_bad"] else GOOD_COLOUR),
                "n_bad": r["n_bad"],
                "n_classified": r["n_classified"],
                "n_unknown": r["n_unknown"],
                "mean_prob": r["mean_prob"],
            }
        )
    pages = max(1, -(-n_match // PAGE_ROWS))
    return {"rows": out, "n_match": n_match, "page": flt.page, "pages": pages, "page_rows": PAGE_ROWS}


def _exposure_consensus(store: Store, expnums: list[int]) -> dict[int, str]:
    """expnum -> the analysts' exposure-level consensus (ties left out), for the listed exposures."""
    wanted = set(expnums)
    return {
        c.expnum: c.category
        for c in consensus(store)
        if c.expnum in wanted and c.ccdnum == 0 and c.category is not None
    }


# ------------------------------------------------------------------------------------------ exposure
def exposure_ccds(store: Store, expnum: int) -> list[dict]:
    rows = store.query(
        "SELECT ccd_id, ccdname, ccdnum, filter, exptime, mjd_obs, airmass, release, path, hdu FROM ccds "
        "WHERE expnum = ? ORDER BY ccdnum, ccdname",
        [expnum],
    ).to_pylist()
    if not rows:
        raise NotFoundError(f"exposure {expnum} is not in this store (no CCD of it was ingested)")
    return rows


def classified(
    store: Store, model: Model | None, cfg: ClassifyConfig, expnum: int, all_ccds: bool
) -> ExposureResult | None:
    """``vec classify EXPNUM [--all-ccds]`` of an exposure in the store; None without a trained model."""
    if model is None:
        return None
    return classify_exposures(store, model, [expnum], cfg, all_ccds=all_ccds)[0]


def verdict_words(result: ExposureResult | None) -> dict:
    """The exposure's verdict as a sentence and a colour (the focal-plane pages' wording)."""
    if result is None:
        return {
            "text": "not classified: the store has no trained model (`vec train`)",
            "colour": MISSING_COLOUR,
        }
    v = result.verdict
    word = f"BAD ({v.category})" if v.is_bad else "GOOD"
    colour = category_colour(v.category) if v.is_bad else GOOD_COLOUR
    return {
        "text": f"Exposure {result.expnum}: {word}, {v.n_bad} of {v.n_ccds} CCDs flagged",
        "colour": colour,
        "text_colour": text_colour_on(colour),
        "is_bad": v.is_bad,
        "category": v.category,
    }


# Focal plane on the page: one CCD short side = UNIT px; the plane spans 7 CCDs (14 units) by 12 rows.
UNIT = 50
_X0, _Y1 = -7.2, 6.2


def focal_plane_boxes(ccds: list[dict], result: ExposureResult | None) -> tuple[list[dict], list[dict]]:
    """(boxes on the plane, CCDs whose names are not DECam's) with position, colour, caption, verdict."""
    verdicts = {c.ccdname.upper(): c for c in result.ccds} if result else {}
    positions = focal_plane_positions()
    boxes, others = [], []
    for row in ccds:
        name = str(row["ccdname"]).upper()
        c = verdicts.get(name)
        ccd = {"label": c.verdict.label, "prob": c.verdict.prob, "is_bad": c.verdict.is_bad} if c else None
        colour = MISSING_COLOUR if ccd is None else verdict_colour(ccd)
        box = {
            "ccdname": row["ccdname"],
            "colour": colour,
            "classified": c is not None,
            "label": c.verdict.label if c else None,
            "is_bad": c.verdict.is_bad if c else None,
            "p_bad": round(c.verdict.p_bad, 4) if c else None,
            "unknown": c.unknown if c else False,
            "caption": f"{name} {abbreviation(c.verdict.label)} {c.verdict.p_bad:.2f}" if c else name,
        }
        if name in ALL_CCDNAMES:
            x, y = positions[name]
            box["left"] = round((x - 1 - _X0) * UNIT + 2)
            box["top"] = round((_Y1 - (y + 0.5)) * UNIT + 2)
            boxes.append(box)
        else:
            others.append(box)
    return boxes, others


def plane_size() -> tuple[int, int]:
    return round(2 * -_X0 * UNIT), round(2 * _Y1 * UNIT)


def _legend(boxes: list[dict]) -> list[dict]:
    bad = {b["label"] for b in boxes if b["is_bad"]}
    entries = [
        {"text": f"{abbreviation(c)} {c}", "colour": category_colour(c)} for c in CATEGORIES if c in bad
    ]
    if any(b["classified"] and not b["is_bad"] for b in boxes):
        entries.append({"text": "good", "colour": GOOD_COLOUR})
    if any(not b["classified"] for b in boxes):
        entries.append({"text": "not classified (outside the CCD draw)", "colour": MISSING_COLOUR})
    return entries


def stored_verdict(store: Store, run: dict | None, expnum: int) -> dict | None:
    if run is None:
        return None
    rows = store.query(
        "SELECT is_bad, category, n_bad, n_ccds, n_unknown, mean_prob, model_version, rule "
        "FROM exposure_predictions WHERE run_id = ? AND expnum = ?",
        [run["run_id"], expnum],
    ).to_pylist()
    return {**rows[0], "run_id": run["run_id"]} if rows else None


def labels_of(store: Store, expnum: int, ccdname: str | None = None) -> dict:
    """Imported and analysts' labels of an exposure (or of one CCD: its own and its exposure's), and the
    analysts' consensus on those targets."""
    labels = exposure_labels(store, str(expnum)).as_dict()

    def applies(row: dict) -> bool:
        name = row.get("ccdname")
        return ccdname is None or not name or str(name).upper() == ccdname.upper()

    labels["imported"] = [r for r in labels["imported"] if applies(r)]
    labels["analysts"] = [r for r in labels["analysts"] if applies(r)]
    targets = {str(expnum)} | ({f"{expnum}/{ccdname.upper()}"} if ccdname else set())
    labels["consensus"] = [c for c in labels["consensus"] if ccdname is None or c["target"] in targets]
    for row in labels["imported"] + labels["analysts"]:
        row["colour"] = label_colour(row.get("category"))
    return labels


def exposure_data(
    store: Store,
    model: Model | None,
    cfg: ClassifyConfig,
    expnum: int,
    *,
    all_ccds: bool,
    run: dict | None,
    result: ExposureResult | None,
) -> dict:
    """The exposure page: its CCDs on the focal plane by verdict, the vote, the rule, labels."""
    ccds = exposure_ccds(store, expnum)
    boxes, others = focal_plane_boxes(ccds, result)
    width, height = plane_size()
    first = ccds[0]
    return {
        "expnum": expnum,
        "band": first["filter"],
        "exptime": first["exptime"],
        "date": mjd_to_date(first["mjd_obs"]),
        "release": first["release"],
        "path": first["path"],
        "n_ccds": len(ccds),
        "all_ccds": all_ccds,
        "model": model.version if model else None,
        "rule": result.rule.as_dict() if result and result.rule else None,
        "rule_text": result.rule.describe() if result and result.rule else None,
        "verdict": verdict_words(result),
        "vote": (
            {
                "is_bad": result.verdict.is_bad,
                "category": result.verdict.category,
                "n_bad": result.verdict.n_bad,
                "n_ccds": result.verdict.n_ccds,
                "mean_prob": result.verdict.mean_prob,
                "n_unknown": sum(c.unknown for c in result.ccds),
            }
            if result
            else None
        ),
        "stored": stored_verdict(store, run, expnum),
        "boxes": boxes,
        "others": others,
        "legend": _legend(boxes + others),
        "plane": {"width": width, "height": height, "unit": UNIT},
        "labels": labels_of(store, expnum),
    }


# ------------------------------------------------------------------------------------------ CCD
def ccd_row(store: Store, expnum: int, ccdname: str) -> dict:
    rows = store.query(
        "SELECT ccd_id, expnum, ccdname, ccdnum, filter, exptime, mjd_obs, airmass, plver, ra, dec, release, "
        "ccd_cuts, ebv, path, hdu FROM ccds WHERE expnum = ? AND upper(ccdname) = upper(?)",
        [expnum, ccdname],
    ).to_pylist()
    if rows:
        return rows[0]
    names = exposure_ccdnames(store, expnum)
    if not names:
        raise NotFoundError(f"exposure {expnum} is not in this store (no CCD of it was ingested)")
    raise NotFoundError(f"exposure {expnum} has no CCD {ccdname!r} in this store; it has {', '.join(names)}")


def ccd_verdict(result: ExposureResult | None, ccdname: str) -> dict | None:
    if result is None:
        return None
    for c in result.ccds:
        if str(c.ccdname).upper() == ccdname.upper():
            return {
                "label": c.verdict.label,
                "prob": c.verdict.prob,
                "is_bad": c.verdict.is_bad,
                "p_bad": round(c.verdict.p_bad, 4),
                "top_bad": c.verdict.top_bad,
                "top_bad_prob": round(c.verdict.top_bad_prob, 4),
                "unknown": c.unknown,
                "kth_distance": c.kth_distance,
                "probs": c.probs,
                "colour": verdict_colour(
                    {"label": c.verdict.label, "prob": c.verdict.prob, "is_bad": c.verdict.is_bad}
                ),
                "neighbours": [{**n, "colour": label_colour(n["label"])} for n in c.neighbours],
            }
    return None


def similar_data(store: Store, model: Model | None, ccd: str, k: int, where_text: str | None) -> dict:
    """``vec similar EXPNUM/CCDNAME -k K`` with the page's filter (compiled to a parameterised condition)."""
    where, params = compile_filter(where_text, store.ccd_columns())
    if model is None:
        return {"query": ccd, "k": k, "where": where_text or "", "hits": [], "space": None}
    found = find_similar(store, model, ccd, k, where=where, where_params=params)
    hits = [
        {
            "rank": h["rank"],
            "ccd_id": h["ccd_id"],
            "expnum": h["expnum"],
            "ccdname": h["ccdname"],
            "filter": h["filter"],
            "release": h["release"],
            "date": mjd_to_date(h["mjd_obs"]),
            "distance": h["distance"],
            "label": h["label"],
            "colour": label_colour(h["label"]),
        }
        for h in found.hits
    ]
    return {"query": ccd, "k": k, "where": where_text or "", "hits": hits, "space": found.space}


def ccd_data(
    store: Store, expnum: int, ccdname: str, result: ExposureResult | None, labels: dict[int, str]
) -> dict:
    row = ccd_row(store, expnum, ccdname)
    name = str(row["ccdname"])
    return {
        **{k: v for k, v in row.items() if k not in ("path", "hdu")},
        "ccdname": name,
        "file": row["path"],
        "hdu": row["hdu"],
        "date": mjd_to_date(row["mjd_obs"]),
        "label": labels.get(row["ccd_id"]),
        "verdict": ccd_verdict(result, name),
        "labels": labels_of(store, expnum, name),
    }


# ------------------------------------------------------------------------------------------ review
def review_data(store: Store, queue: ReviewQueue) -> dict:
    expnums = [e.expnum for e in queue.entries]
    given: dict[int, list[str]] = {}
    if expnums and store.has_table("analyst_labels"):
        marks = ", ".join("?" for _ in expnums)
        for r in store.query(
            f"SELECT expnum, analyst, ccdname, category FROM analyst_labels WHERE expnum IN ({marks}) "
            "ORDER BY expnum, analyst",
            expnums,
        ).to_pylist():
            target = f"{r['expnum']}/{r['ccdname']}" if r["ccdname"] else str(r["expnum"])
            given.setdefault(r["expnum"], []).append(f"{r['analyst']}: {target} {r['category']}")
    entries = []
    for e in queue.entries:
        v = e.result.verdict
        entries.append(
            {
                **e.as_dict(),
                "verdict_text": f"BAD ({v.category}, p={v.mean_prob:.2f})" if v.is_bad else "good",
                "verdict_colour": category_colour(v.category) if v.is_bad else GOOD_COLOUR,
                "n_bad": v.n_bad,
                "n_ccds": v.n_ccds,
                "shown_ccds": [
                    {
                        "ccdname": c.ccdname,
                        "label": c.verdict.label,
                        "p_bad": round(c.verdict.p_bad, 3),
                        "unknown": c.unknown,
                        "colour": label_colour(c.verdict.label),
                    }
                    for c in e.shown
                ],
                "lookalike_cards": [{**n, "colour": label_colour(n["label"])} for n in e.lookalikes],
                "analyst_labels": given.get(e.expnum, []),
            }
        )
    return {
        "n_candidates": queue.n_candidates,
        "model": queue.model_version,
        "rule": queue.rule.describe() if queue.rule else None,
        "entries": entries,
    }


# ------------------------------------------------------------------------------------------ the map
def embedding_map(store: Store, model: Model | None, sample: int, seed: int, method: str = "tsne") -> dict:
    """A 2-D picture of a seeded sample of CCDs: t-SNE (or PCA) of the vectors classification uses (the
    model's post-processed space; the raw vectors without a model), each point with its CCD and its
    colour group: its label, else the latest run's verdict, else unlabelled."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if method not in ("tsne", "pca"):
        raise BadInputError(f"map method {method!r}: expected tsne or pca")
    ids = sample_ids(store.committed_ids(), sample, seed)
    if len(ids) == 0:
        return {"method": method, "n": 0, "n_total": 0, "points": [], "groups": []}
    _, raw = store.load_embeddings(ids)
    vectors = model.postprocessor.transform(raw) if model is not None else raw
    vectors = np.asarray(vectors, dtype=np.float64)
    with threadpool_limits(1):
        dims = min(50, vectors.shape[0], vectors.shape[1])
        if vectors.shape[0] < 5 or method == "pca":
            coords = PCA(n_components=min(2, dims), random_state=seed).fit_transform(vectors)
        else:
            reduced = PCA(n_components=dims, random_state=seed).fit_transform(vectors)
            coords = TSNE(
                n_components=2,
                perplexity=tsne_perplexity(len(ids)),
                learning_rate=tsne_learning_rate(len(ids)),
                init="pca",
                random_state=seed,
            ).fit_transform(reduced)
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((len(coords), 2 - coords.shape[1]))])
    listing = ", ".join(str(int(i)) for i in ids)
    names = {
        r["ccd_id"]: r
        for r in store.query(
            f"SELECT ccd_id, expnum, ccdname FROM ccds WHERE ccd_id IN ({listing})"
        ).to_pylist()
    }
    labels = resolve_ccd_categories(store)
    run = latest_run(store)
    predicted = {}
    if run is not None:
        predicted = {
            r["ccd_id"]: r["label"] if r["is_bad"] else GOOD
            for r in store.query(
                "SELECT ccd_id, label, is_bad FROM ccd_predictions "
                f"WHERE run_id = ? AND ccd_id IN ({listing})",
                [run["run_id"]],
            ).to_pylist()
        }
    points, groups = [], {}
    for (x, y), i in zip(coords.tolist(), ids.tolist(), strict=True):
        if i in labels:
            group, colour, symbol = f"label: {labels[i]}", category_colour(labels[i]), "circle"
        elif i in predicted:
            p = predicted[i]
            colour = GOOD_COLOUR if p == GOOD else category_colour(p)
            group, symbol = f"vec: {p}", "diamond"
        else:
            group, colour, symbol = "unlabelled, not classified", UNLABELLED_COLOUR, "circle-open"
        groups.setdefault(group, {"name": group, "colour": colour, "symbol": symbol, "n": 0})["n"] += 1
        meta = names[i]
        points.append(
            {
                "x": round(float(x), 3),
                "y": round(float(y), 3),
                "ccd": f"{meta['expnum']}/{meta['ccdname']}",
                "group": group,
            }
        )
    order = sorted(groups.values(), key=lambda g: (g["name"].startswith("unlabelled"), g["name"]))
    return {
        "method": "t-SNE" if method == "tsne" and len(ids) >= 5 else "PCA",
        "space": model.space_description if model is not None else "raw embeddings (no trained model)",
        "n": len(points),
        "n_total": int(store.scalar("SELECT count(*) FROM ccds")),
        "points": points,
        "groups": order,
    }
