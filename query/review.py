"""``vec review``: the next exposures worth a person's look, most useful first.

Candidates are the exposures with no label at all: none imported, none given with ``vec labels add``, and
not named known-good by the model's ``--good-from``. Each is classified with the current model, live
(:func:`query.classify.classify_exposures`, the seeded CCD draw of ``classify.ccds_per_exposure``), rather
than read from the latest ``classify --all`` run: a review loop labels and retrains, and a stored run is
stale the moment it does (other model, other labels); the live pass is the cost of one ``classify --all``
and always agrees with ``vec classify``.

The score of an exposure (higher = inspect sooner) adds five terms, each in [0, 1]:

    score = 2 C + 1 B + 1 U + 0.5 D + 0.5 R

- ``C`` cover: the exposures, labelled and not, are put in ``L + N`` groups of look-alikes (``L`` labelled
  exposures, ``N`` asked for, at most one group per 5 exposures; k-medians in L1 on each exposure's
  per-dimension mean, max and min over its CCDs of the model's post-processed vectors, each compressed as
  ``sign(x) log(1 + |x|)``: about linear within a few units, so look-alikes stay together, while an
  exposure extreme in one statistic — robust scaling leaves it hundreds of units out — does not make a
  group of its own and win the cover as an outlier). In a
  group that holds no labelled exposure, its most typical unlabelled member (the smallest mean distance to
  its 5 nearest group members) gets the group's size over the largest such group's; every other exposure
  gets 0. Labels spent on typical exposures of what no label describes yet teach the k-NN more than labels
  on outliers or on the boundary of what it already knows, most of all while labels are few;
- ``B`` boundary: ``1 - |2 P - 1|`` with ``P`` the probability that the exposure is called bad when each
  CCD's flag is a coin, heads with probability ``1 / (1 + exp(-k (p - t) - 1/2))`` (``p`` its ``p_bad``,
  ``t`` the calibrated CCD threshold, k the neighbours: a CCD at the threshold is flagged 62 % of the time,
  one vote below it 38 %) and the exposure bad with at least ``ceil(f n)`` flags (paper rule: top bad-class
  probability against ``prob_cut``, ``min_bad_ccds`` flags), or, with the single-CCD rule, when one CCD's
  coin for ``p_local`` against ``t_l`` comes up (taken as independent): 1 when its verdict is a coin toss;
- ``U`` unknown: the share of its CCDs flagged ``unknown`` (k-th neighbour farther than the calibrated
  distance: unlike anything labelled, perhaps a new kind of artifact);
- ``D`` disagreement: the mean over CCDs of ``1 - (votes of the commonest label) / k`` among its neighbours;
- ``R`` rarity: ``max p_bad`` of its CCDs times ``1 / (1 + n)``, ``n`` the labelled exposures of the bad
  category its CCDs point to (``labels_summary``): a likely example of a class with few labels.

The queue is built greedily: each entry is the highest score given the entries before it. An entry closes
its group: the group's representative loses its ``C``, and every exposure of the group has its other terms
halved for each entry of the group above it, so one round does not spend its labels on near-duplicates.
The grouping uses at most 2,000 labelled and 2,000 candidate exposures (seeded samples beyond that; a
candidate outside the sample has ``C`` = 0 and a group of its own).

Measured (``bench/review_bench.py``, simulated survey, labels from the truth, retrained each round): this
order against random orders of the same pool; README has the table.

Each entry says which terms made its score, its verdict, the CCDs that drove it (with their nearest labelled
look-alikes, the reference CCDs that voted), and the ``vec labels add`` line that records a verdict.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.distance import cdist

from query.classify import (
    CCDResult,
    ExposureResult,
    Rule,
    classify_exposures,
    exposure_members,
    sample_ids,
    unlabelled_expnums,
)
from query.labels import labelled_expnums, labels_summary
from query.vote import flags_needed
from vecstore.config import ClassifyConfig
from vecstore.models import Model
from vecstore.store import Store
from vecstore.vocabulary import GOOD, expnum_of

WEIGHTS = {"cover": 2.0, "boundary": 1.0, "unknown": 1.0, "disagree": 0.5, "rare": 0.5}
NEAR = 0.2  # the width of "near the threshold" in the words and in the CCDs shown
SHOWN_CCDS = 3  # CCDs pictured per entry (the most interesting ones)
LOOKALIKES = 5  # nearest labelled look-alikes per entry
TYPICAL_NEIGHBOURS = 5  # typicality: mean distance to this many nearest members of the group
MAX_GROUPED = 2000  # labelled, and candidate, exposures at most in the grouping (seeded samples beyond)
GROUPING_ITERATIONS = 15
MIN_GROUP = 5  # groups hold this many exposures on average at least (fewer, larger groups otherwise)
REPEAT_FACTOR = 0.5  # an exposure's score is halved for each look-alike (same group) above it in the queue


@dataclass(frozen=True)
class ReviewEntry:
    rank: int
    expnum: int
    score: float
    terms: dict[str, float]  # each term's contribution (weight x value)
    reasons: list[str]
    result: ExposureResult
    shown: list[CCDResult]  # the CCDs that drove the score, most interesting first
    lookalikes: list[dict]  # nearest labelled reference CCDs of the shown CCDs: ccd_id, expnum, ccdname...
    command: str  # the `vec labels add` line recording the suggested verdict

    @property
    def suggestion(self) -> str:
        return self.result.verdict.category if self.result.verdict.is_bad else GOOD

    def as_dict(self) -> dict:
        return {
            "rank": self.rank,
            "expnum": self.expnum,
            "score": round(self.score, 4),
            "terms": {k: round(v, 4) for k, v in self.terms.items()},
            "reasons": self.reasons,
            "verdict": self.suggestion,
            "shown": [c.ccd_id for c in self.shown],
            "lookalikes": self.lookalikes,
            "command": self.command,
        }


@dataclass(frozen=True)
class ReviewQueue:
    entries: list[ReviewEntry]
    n_candidates: int
    model_version: str
    rule: Rule | None = None
    notes: list[str] = field(default_factory=list)


def _closeness(value: float, target: float) -> float:
    return max(0.0, 1.0 - abs(value - target) / NEAR)


def ccd_interest(ccd: CCDResult, threshold: float) -> float:
    """How much one CCD asks for a look: unknown, near the threshold, neighbours split (unweighted sum)."""
    return 3.0 * ccd.unknown + _closeness(ccd.verdict.p_bad, threshold) + _disagreement(ccd)


def _disagreement(ccd: CCDResult) -> float:
    labels = [n["label"] for n in ccd.neighbours]
    return 1.0 - Counter(labels).most_common(1)[0][1] / len(labels) if labels else 0.0


def _thresholds(rule: Rule, n_ccds: int) -> tuple[float, float]:
    if rule.name == "paper":
        return rule.prob_cut, rule.min_bad_ccds / max(n_ccds, 1)
    return rule.threshold, rule.fraction


def _candidate_category(result: ExposureResult) -> str | None:
    if result.verdict.is_bad:
        return result.verdict.category
    tops = [c for c in result.ccds if c.verdict.top_bad]
    return max(tops, key=lambda c: c.verdict.p_bad).verdict.top_bad if tops else None


# ------------------------------------------------------------------------------------- the boundary term
def flag_chance(value: float, cut: float, k: int) -> float:
    """The chance a CCD is flagged if its vote wobbled by about one neighbour: 0.62 at the cut, 0.38 one
    vote (1/k) below it."""
    return 1.0 / (1.0 + math.exp(-(k * (value - cut) + 0.5)))


def at_least(chances: list[float], m: int) -> float:
    """P(at least ``m`` of independent coins with these chances come up heads) (Poisson binomial)."""
    dist = np.zeros(len(chances) + 1)
    dist[0] = 1.0
    for q in chances:
        dist[1:] = dist[1:] * (1.0 - q) + dist[:-1] * q
        dist[0] *= 1.0 - q
    return float(dist[max(m, 0) :].sum())


def bad_chance(result: ExposureResult, rule: Rule) -> float:
    """``P`` of the boundary term: the exposure called bad when each CCD's flag is a coin."""
    ccds = result.ccds
    if not ccds:
        return 0.0
    k = [max(len(c.neighbours), 1) for c in ccds]
    if rule.name == "paper":
        flags = [flag_chance(c.verdict.top_bad_prob, rule.prob_cut, n) for c, n in zip(ccds, k, strict=True)]
        return at_least(flags, max(1, rule.min_bad_ccds))
    flags = [flag_chance(c.verdict.p_bad, rule.threshold, n) for c, n in zip(ccds, k, strict=True)]
    p_bad = at_least(flags, flags_needed(len(ccds), rule.fraction))
    if not rule.single_ccd:
        return p_bad
    # or one CCD alone (the single-CCD rule), taken as independent of the fraction rule
    alone = [flag_chance(c.verdict.p_local, rule.local_threshold, n) for c, n in zip(ccds, k, strict=True)]
    return 1.0 - (1.0 - p_bad) * float(np.prod([1.0 - q for q in alone]))


def score_exposure(
    result: ExposureResult,
    rule: Rule,
    labelled_exposures: dict[str, int],
    cover: float = 0.0,
    repeats: int = 0,
) -> tuple[float, dict[str, float], list[str]]:
    """(score, each term's contribution, reasons in words) of one classified exposure. ``cover`` is its
    ``C`` and ``repeats`` the look-alikes above it in the queue (both depend on the other exposures: see
    :func:`cover_values` and :func:`greedy_order`); each repeat halves the other terms."""
    ccds = result.ccds
    n = max(len(ccds), 1)
    t, f = _thresholds(rule, len(ccds))
    n_unknown = sum(c.unknown for c in ccds)
    near = [c for c in ccds if _closeness(c.verdict.p_bad, t) > 0]
    share = result.verdict.n_bad / n
    category = _candidate_category(result)
    n_labels = labelled_exposures.get(category, 0) if category else 0
    max_p = max((c.verdict.p_bad for c in ccds), default=0.0)
    p_bad = bad_chance(result, rule)
    values = {
        "cover": float(cover),
        "boundary": 1.0 - abs(2.0 * p_bad - 1.0),
        "unknown": n_unknown / n,
        "disagree": float(np.mean([_disagreement(c) for c in ccds])) if ccds else 0.0,
        "rare": max_p / (1.0 + n_labels) if category else 0.0,
    }
    factor = REPEAT_FACTOR**repeats
    terms = {k: WEIGHTS[k] * v * (1.0 if k == "cover" else factor) for k, v in values.items()}
    words = {
        "cover": (
            f"the most typical exposure of a group of look-alikes that no label covers yet (C {cover:.2f}: "
            "its group's size against the largest such group's)"
        ),
        "boundary": (
            f"P(called bad) {p_bad:.2f} if each CCD's vote wobbled by one neighbour ({share:.0%} of CCDs "
            f"flagged against the exposure fraction {f:.0%}; {len(near)} CCDs with p_bad within {NEAR:g} "
            f"of the threshold {t:g})"
        ),
        "unknown": f"{n_unknown} of {len(ccds)} CCDs unknown (unlike any labelled CCD)",
        "disagree": f"neighbours disagree on {values['disagree']:.0%} of the votes",
        "rare": f"looks like {category} (max p_bad {max_p:.2f}), which has {n_labels} labelled exposures",
    }
    reasons = [
        f"{words[k]} (+{terms[k]:.2f})"
        for k in sorted(terms, key=terms.get, reverse=True)
        if terms[k] >= 0.005
    ]
    if repeats:
        reasons.append(f"{repeats} look-alike(s) (same group) higher in the queue: terms x {factor:g}")
    return float(sum(terms.values())), terms, reasons


# ---------------------------------------------------------------------------------------- the cover term
def exposure_descriptors(model: Model, ccd_ids: list[np.ndarray], vectors_of) -> np.ndarray:
    """(n_exposures, 3 d): per exposure the per-dimension mean, max and min of its CCDs' post-processed
    vectors (a problem on one CCD shows in the max or min, one on every CCD in all three)."""
    if not ccd_ids:
        return np.zeros((0, 0), dtype=np.float32)
    ids = np.unique(np.concatenate(ccd_ids))
    found, raw = vectors_of(ids)
    vectors = model.postprocessor.transform(raw)
    rows = []
    for members in ccd_ids:
        x = vectors[np.searchsorted(found, np.asarray(members, dtype=np.int64))]
        rows.append(np.concatenate([x.mean(axis=0), x.max(axis=0), x.min(axis=0)]))
    return np.asarray(rows, dtype=np.float64)


def group_exposures(x: np.ndarray, n_groups: int, seed: int) -> np.ndarray:
    """Group of each row: k-medians in L1 (k-means++ seeding, seeded), ``n_groups`` at most."""
    n = len(x)
    n_groups = max(1, min(n_groups, n))
    rng = np.random.default_rng([seed, 17])
    centres = [x[rng.integers(n)]]
    nearest = cdist(x, centres[0][None, :], "cityblock")[:, 0]
    for _ in range(n_groups - 1):
        total = nearest.sum()
        pick = rng.choice(n, p=nearest / total) if total > 0 else rng.integers(n)
        centres.append(x[pick])
        nearest = np.minimum(nearest, cdist(x, x[pick][None, :], "cityblock")[:, 0])
    centres = np.array(centres)
    groups = np.zeros(n, dtype=np.int64)
    for iteration in range(GROUPING_ITERATIONS):
        new = np.argmin(cdist(x, centres, "cityblock"), axis=1)
        if iteration and np.array_equal(new, groups):
            break
        groups = new
        for g in np.unique(groups):
            centres[g] = np.median(x[groups == g], axis=0)
    return groups


def compressed_tails(x: np.ndarray) -> np.ndarray:
    """``sign(x) log(1 + |x|)``: near x for small values, logarithmic far out."""
    return np.sign(x) * np.log1p(np.abs(x))


def cover_values(x: np.ndarray, labelled: np.ndarray, n_groups: int, seed: int) -> tuple[np.ndarray, ...]:
    """(C of each row, group of each row): see the module docstring. ``labelled``: (n,) bool."""
    x = compressed_tails(x)
    groups = group_exposures(x, n_groups, seed)
    cover = np.zeros(len(x))
    covered = set(groups[labelled].tolist())
    open_groups = [g for g in np.unique(groups[~labelled]) if g not in covered]
    if not open_groups:
        return cover, groups
    sizes = {g: int(((groups == g) & ~labelled).sum()) for g in open_groups}
    largest = max(sizes.values())
    for g in open_groups:
        members = np.flatnonzero(groups == g)  # all unlabelled: the group holds no labelled exposure
        if len(members) == 1:
            best = members[0]
        else:
            d = np.sort(cdist(x[members], x[members], "cityblock"), axis=1)[:, 1 : 1 + TYPICAL_NEIGHBOURS]
            best = members[int(np.argmin(d.mean(axis=1)))]
        cover[best] = sizes[g] / largest
    return cover, groups


def _known_expnums(store: Store, model: Model, judged: set[int]) -> list[int]:
    """Exposures a person has already judged: labelled (imported), ``judged`` (known good, labelled by an
    analyst), or voting in the model's reference set; only those with CCDs in the store."""
    ref_ids, _ = model.reference_labels()
    known = set(labelled_expnums(store).tolist()) | judged
    known |= set(np.unique(expnum_of(ref_ids)).tolist())
    stored = set(store.query("SELECT DISTINCT expnum FROM ccds").column("expnum").to_pylist())
    return sorted(int(e) for e in known & stored)


def _analyst_expnums(store: Store) -> set[int]:
    if not store.has_table("analyst_labels"):
        return set()
    return set(store.query("SELECT DISTINCT expnum FROM analyst_labels").column("expnum").to_pylist())


def _sample(expnums: list[int], n: int, seed: int) -> list[int]:
    if len(expnums) <= n:
        return list(expnums)
    return sorted(np.random.default_rng([seed, 19]).choice(expnums, size=n, replace=False).tolist())


def _cover(store, model, cfg, results: list[ExposureResult], known: list[int], n: int):
    """(``C`` of each classified candidate, its group): outside the grouping's sample C is 0 and the group
    its own (a negative number)."""
    cover = np.zeros(len(results))
    groups = -1 - np.arange(len(results))
    if not results:
        return cover, groups
    position = {r.expnum: i for i, r in enumerate(results)}
    grouped = _sample(sorted(position), MAX_GROUPED, cfg.seed)
    known = _sample(known, MAX_GROUPED, cfg.seed)
    members = exposure_members(store, known) if known else {}
    known = [e for e in known if e in members]
    ids = [sample_ids([i for i, _ in members[e]], cfg.ccds_per_exposure, cfg.seed, e) for e in known]
    ids += [np.array([c.ccd_id for c in results[position[e]].ccds], dtype=np.int64) for e in grouped]
    x = exposure_descriptors(model, ids, store.load_embeddings)
    labelled = np.arange(len(x)) < len(known)
    values, of = cover_values(x, labelled, min(len(known) + n, len(x) // MIN_GROUP), cfg.seed)
    for j, e in enumerate(grouped):
        cover[position[e]] = values[len(known) + j]
        groups[position[e]] = of[len(known) + j]
    return cover, groups


def greedy_order(
    base: np.ndarray, cover: np.ndarray, groups: np.ndarray, n: int
) -> list[tuple[int, float, int]]:
    """(index, its cover when picked, picks of its group before it) of the ``n`` picks, each the highest
    score given the picks before it: ``base`` times ``REPEAT_FACTOR`` per earlier pick of its group, plus
    ``cover`` (the weighted C, non-zero for one exposure per open group at most) while its group is open.
    A pick closes its group. Ties go to the lower index."""
    base = np.asarray(base, dtype=np.float64)
    cover = np.asarray(cover, dtype=np.float64).copy()
    groups = np.asarray(groups)
    repeats = np.zeros(len(base), dtype=np.int64)
    score = base + cover
    picks: list[tuple[int, float, int]] = []
    for _ in range(min(n, len(base))):
        i = int(np.argmax(score))
        picks.append((i, float(cover[i]), int(repeats[i])))
        score[i] = -np.inf
        same = (groups == groups[i]) & np.isfinite(score)
        cover[same] = 0.0
        repeats[same] += 1
        score[same] = base[same] * REPEAT_FACTOR ** repeats[same]
    return picks


# ------------------------------------------------------------------------------------------------ queue
def labels_add_line(expnum: int, category: str, analyst: str) -> str:
    return f"vec labels add {expnum} {category} --analyst {analyst}"


def _lookalikes(shown: list[CCDResult]) -> list[dict]:
    seen, out = set(), []
    rows = sorted((n for c in shown for n in c.neighbours), key=lambda n: n["distance"])
    for n in rows:
        if n["ccd_id"] not in seen:
            seen.add(n["ccd_id"])
            out.append(n)
    return out[:LOOKALIKES]


def _excluded(store: Store, model: Model) -> set[int]:
    """Exposures the model was told are known good (already inspected)."""
    good_from = model.settings.get("good_from") or ""
    if not good_from:
        return set()
    from query.good_set import known_good_expnums

    return known_good_expnums(store, good_from)


def review_queue(
    store: Store,
    model: Model,
    cfg: ClassifyConfig,
    n: int = 10,
    *,
    analyst: str = "NAME",
    exclude: set[int] | None = None,
) -> ReviewQueue:
    """The ``n`` most useful unlabelled exposures to inspect next, scored as the module docstring says."""
    judged = _excluded(store, model) | _analyst_expnums(store)
    skip = judged | set(exclude or ())
    candidates = [e for e in unlabelled_expnums(store, None) if e not in skip]
    labelled = {r["category"]: r["exposures"] for r in labels_summary(store).rows}
    results: list[ExposureResult] = []
    for start in range(0, len(candidates), cfg.chunk_exposures):
        results += classify_exposures(store, model, candidates[start : start + cfg.chunk_exposures], cfg)
    rule = results[0].rule if results else None
    cover, groups = _cover(store, model, cfg, results, _known_expnums(store, model, judged), n)
    base = [score_exposure(r, r.rule, labelled)[0] for r in results]
    entries = []
    order = greedy_order(base, WEIGHTS["cover"] * cover, groups, n)
    for rank, (i, c, repeats) in enumerate(order, start=1):
        result = results[i]
        score, terms, reasons = score_exposure(result, result.rule, labelled, cover[i] if c else 0.0, repeats)
        t, _ = _thresholds(result.rule, len(result.ccds))
        shown = sorted(result.ccds, key=lambda c: (-ccd_interest(c, t), c.ccd_id))[:SHOWN_CCDS]
        suggestion = result.verdict.category if result.verdict.is_bad else GOOD
        entries.append(
            ReviewEntry(
                rank,
                result.expnum,
                score,
                terms,
                reasons,
                result,
                shown,
                _lookalikes(shown),
                labels_add_line(result.expnum, suggestion, analyst),
            )
        )
    return ReviewQueue(entries, len(candidates), model.version, rule)


def format_review(queue: ReviewQueue) -> str:
    """What ``vec review`` prints: one block per exposure, with the line that records a verdict."""
    if not queue.entries:
        return f"nothing to review: no unlabelled exposure among {queue.n_candidates} candidates"
    lines = [
        f"{len(queue.entries)} of {queue.n_candidates} unlabelled exposures to inspect next "
        f"(model {queue.model_version}; score = 2 cover + 1 boundary + 1 unknown + 0.5 disagree + 0.5 rare, "
        "picked greedily, look-alikes of an entry above halved)"
    ]
    for e in queue.entries:
        v = e.result.verdict
        verdict = f"BAD ({v.category}, p={v.mean_prob:.2f})" if v.is_bad else "good"
        lines.append(
            f"\n#{e.rank} exposure {e.expnum}  score {e.score:.2f}  verdict {verdict}, "
            f"{v.n_bad} of {v.n_ccds} CCDs flagged"
        )
        lines += [f"   why: {r}" for r in e.reasons] or ["   why: nothing stands out"]
        for c in e.shown:
            flag = " unknown" if c.unknown else ""
            lines.append(
                f"   CCD {c.ccdname or c.ccd_id}: {c.verdict.label}, p_bad {c.verdict.p_bad:.2f}, "
                f"k-th distance {c.kth_distance:.3g}{flag}"
            )
        looks = ", ".join(
            f"{n['expnum']}/{n['ccdname']} {n['label']} {n['distance']:.3g}" for n in e.lookalikes
        )
        lines.append(f"   nearest labelled look-alikes: {looks or '-'}")
        other = "a category" if e.suggestion == GOOD else "another category, or good"
        lines.append(f"   record: {e.command}   (or {other})")
    return "\n".join(lines)
