"""``vec review``: the next exposures worth a person's look, most useful first.

Candidates are the exposures with no label at all (nor named known-good by the model's ``--good-from``).
Each is classified with the current model, live (:func:`query.classify.classify_exposures`, the seeded
CCD draw of ``classify.ccds_per_exposure``), rather than read from the latest ``classify --all`` run: a
review loop labels and retrains, and a stored run is stale the moment it does (other model, other labels);
the live pass is the cost of one ``classify --all`` and always agrees with ``vec classify``.

The score of an exposure (higher = inspect sooner) adds five terms, each in [0, 1]:

    score = 3 U + 1 T + 2 V + 1 D + 1 R

- ``U`` unknown: the share of its CCDs flagged ``unknown`` (k-th neighbour farther than the calibrated
  distance: unlike anything labelled — a new kind of artifact, the most useful label of all);
- ``T`` threshold: the mean over CCDs of ``max(0, 1 - |p_bad - t| / 0.2)``, 1 for a CCD exactly at the
  calibrated CCD threshold ``t`` (``rule.threshold``; the paper rule: its ``prob_cut``);
- ``V`` vote: ``max(0, 1 - |s - f| / 0.2)`` with ``s`` the share of flagged CCDs and ``f`` the rule's
  fraction (paper rule: ``min_bad_ccds / n_ccds``): 1 when one CCD more or less would flip the exposure;
- ``D`` disagreement: the mean over CCDs of ``1 - (votes of the commonest label) / k`` among its neighbours;
- ``R`` rarity: ``max p_bad`` of its CCDs times ``1 / (1 + n)``, ``n`` the labelled exposures of the bad
  category its CCDs point to (``labels_summary``): a likely example of a class with few labels.

Each entry says which terms made its score, its verdict, the CCDs that drove it (with their nearest labelled
look-alikes, the reference CCDs that voted), and the ``vec labels add`` line that records a verdict.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from query.classify import CCDResult, ExposureResult, Rule, classify_exposures, unlabelled_expnums
from query.labels import labels_summary
from vecstore.config import ClassifyConfig
from vecstore.models import Model
from vecstore.store import Store
from vecstore.vocabulary import GOOD

WEIGHTS = {"unknown": 3.0, "threshold": 1.0, "vote": 2.0, "disagree": 1.0, "rare": 1.0}
NEAR = 0.2  # the width of "near the threshold" for T and V
SHOWN_CCDS = 3  # CCDs pictured per entry (the most interesting ones)
LOOKALIKES = 5  # nearest labelled look-alikes per entry


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


def score_exposure(
    result: ExposureResult, rule: Rule, labelled_exposures: dict[str, int]
) -> tuple[float, dict[str, float], list[str]]:
    """(score, each term's contribution, reasons in words) of one classified exposure; see the module."""
    ccds = result.ccds
    n = max(len(ccds), 1)
    t, f = _thresholds(rule, len(ccds))
    n_unknown = sum(c.unknown for c in ccds)
    near = [c for c in ccds if _closeness(c.verdict.p_bad, t) > 0]
    share = result.verdict.n_bad / n
    category = _candidate_category(result)
    n_labels = labelled_exposures.get(category, 0) if category else 0
    max_p = max((c.verdict.p_bad for c in ccds), default=0.0)
    values = {
        "unknown": n_unknown / n,
        "threshold": float(np.mean([_closeness(c.verdict.p_bad, t) for c in ccds])) if ccds else 0.0,
        "vote": _closeness(share, f),
        "disagree": float(np.mean([_disagreement(c) for c in ccds])) if ccds else 0.0,
        "rare": max_p / (1.0 + n_labels) if category else 0.0,
    }
    terms = {k: WEIGHTS[k] * v for k, v in values.items()}
    words = {
        "unknown": f"{n_unknown} of {len(ccds)} CCDs unknown (unlike any labelled CCD)",
        "threshold": f"{len(near)} CCDs with p_bad within {NEAR:g} of the threshold {t:g}",
        "vote": f"{share:.0%} of CCDs flagged against the exposure fraction {f:.0%}",
        "disagree": f"neighbours disagree on {values['disagree']:.0%} of the votes",
        "rare": f"looks like {category} (max p_bad {max_p:.2f}), which has {n_labels} labelled exposures",
    }
    reasons = [
        f"{words[k]} (+{terms[k]:.2f})"
        for k in sorted(terms, key=terms.get, reverse=True)
        if terms[k] >= 0.005
    ]
    return float(sum(terms.values())), terms, reasons


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
    skip = _excluded(store, model) | set(exclude or ())
    candidates = [e for e in unlabelled_expnums(store, None) if e not in skip]
    labelled = {r["category"]: r["exposures"] for r in labels_summary(store).rows}
    scored = []
    rule = None
    for start in range(0, len(candidates), cfg.chunk_exposures):
        for result in classify_exposures(store, model, candidates[start : start + cfg.chunk_exposures], cfg):
            rule = result.rule
            score, terms, reasons = score_exposure(result, result.rule, labelled)
            scored.append((score, result.expnum, terms, reasons, result))
    scored.sort(key=lambda s: (-s[0], s[1]))
    entries = []
    for rank, (score, expnum, terms, reasons, result) in enumerate(scored[:n], start=1):
        t, _ = _thresholds(result.rule, len(result.ccds))
        shown = sorted(result.ccds, key=lambda c: (-ccd_interest(c, t), c.ccd_id))[:SHOWN_CCDS]
        suggestion = result.verdict.category if result.verdict.is_bad else GOOD
        entries.append(
            ReviewEntry(
                rank,
                expnum,
                score,
                terms,
                reasons,
                result,
                shown,
                _lookalikes(shown),
                labels_add_line(expnum, suggestion, analyst),
            )
        )
    return ReviewQueue(entries, len(candidates), model.version, rule)


def format_review(queue: ReviewQueue) -> str:
    """What ``vec review`` prints: one block per exposure, with the line that records a verdict."""
    if not queue.entries:
        return f"nothing to review: no unlabelled exposure among {queue.n_candidates} candidates"
    lines = [
        f"{len(queue.entries)} of {queue.n_candidates} unlabelled exposures to inspect next "
        f"(model {queue.model_version}; score = 3 unknown + 1 threshold + 2 vote + 1 disagree + 1 rare)"
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
