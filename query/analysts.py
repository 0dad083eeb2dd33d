"""Labels by analyst: one person's verdict on an exposure or a CCD, several people side by side, a consensus.

``vec labels add EXPNUM[/CCDNAME] CATEGORY --analyst NAME`` records one verdict (one of the 11 categories or
``good``) in the ``analyst_labels`` table; an analyst's second verdict on the same target replaces their
first. The verdicts on one target (an exposure, or one CCD of it) combine by the ``[labels] consensus``
rule:

- ``majority``: the verdict named by the most analysts; when two or more share the top count it is a tie;
- ``unanimous``: the verdict all analysts agree on; any disagreement is a tie.

A tie is left out of training (neither bad nor good) and listed by ``vec labels show`` and ``vec labels
summary``.

How training sees a CCD (:func:`query.labels.resolve_ccd_categories`):

1. the analysts' consensus on that CCD, if there is one, else their consensus on its exposure;
2. only when no analyst looked at the CCD or its exposure, the imported lists (as before).

So an analysts' consensus beats an imported list label on the same CCD — it is a person's look at the
pixels, where a list line is often a pipeline's or an observer's note. A ``good`` consensus removes the
CCD from the bad labels; an exposure whose exposure-level consensus is ``good`` and none of whose CCDs
has a bad or tied consensus is *known good* (:func:`known_good_expnums`), and ``query.good_set`` takes its
CCDs as good references; an exposure with any bad or tied analyst consensus never is.

``vec labels export`` writes the verdicts as legacypipe ``decam-bad_expid.txt`` lines (``EXPNUM FLAG
comment`` or ``EXPNUM-CCDNAME FLAG comment``; flag 1 Saturated, 2 Clouds_Transparency, 3 the rest, the
category as ``vec:<Category>`` in the comment) that ``vec labels import`` reads back to the same
categories. Good verdicts are not bad lines: ``--good FILE`` writes them as a list of exposure numbers
that ``vec train --good-from FILE`` reads.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field

from vecstore.decam import ccdnum_for
from vecstore.errors import BadInputError, NotFoundError
from vecstore.store import Store
from vecstore.vocabulary import CATEGORIES, GOOD

VERDICTS: tuple[str, ...] = (*CATEGORIES, GOOD)
RULES: tuple[str, ...] = ("majority", "unanimous")
EXPOSURE_LEVEL = 0  # ccdnum of an exposure-level verdict in analyst_labels

_TARGET = re.compile(r"^(?P<expnum>\d+)(?:[/-](?P<ccdname>[A-Za-z]+\d+))?$")
_ANALYST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
_FLAG = {"Saturated": 1, "Clouds_Transparency": 2}


# ------------------------------------------------------------------------------------------ the inputs
def parse_target(text: str) -> tuple[int, str | None]:
    """``EXPNUM`` or ``EXPNUM/CCDNAME`` (``-`` accepted too) -> (expnum, canonical CCD name or None)."""
    match = _TARGET.match(text.strip())
    if match is None:
        raise BadInputError(f"{text!r}: expected EXPNUM or EXPNUM/CCDNAME, e.g. 1222425 or 1222425/N4")
    expnum = int(match["expnum"])
    if expnum <= 0:
        raise BadInputError(f"{text!r}: the exposure number must be positive")
    ccdname = match["ccdname"]
    if ccdname is not None:
        ccdnum_for(ccdname)  # a DECam CCD name, or a BadInputError naming the valid ones
        ccdname = ccdname.upper()
    return expnum, ccdname


def parse_verdict(text: str) -> str:
    """A category (any case) or ``good`` -> its canonical spelling."""
    by_lower = {v.lower(): v for v in VERDICTS}
    verdict = by_lower.get(text.strip().lower())
    if verdict is None:
        raise BadInputError(f"{text!r} is not a category; expected one of {', '.join(VERDICTS)}")
    return verdict


def parse_analyst(name: str) -> str:
    name = name.strip()
    if not _ANALYST.match(name):
        raise BadInputError(
            f"analyst {name!r}: expected a name of letters, digits and . _ @ - (no spaces), e.g. jdoe"
        )
    return name


# ------------------------------------------------------------------------------------------ adding
@dataclass(frozen=True)
class AddResult:
    analyst: str
    expnum: int
    ccdname: str | None
    category: str
    replaced: str | None  # the analyst's previous verdict on this target

    @property
    def target(self) -> str:
        return f"{self.expnum}/{self.ccdname}" if self.ccdname else str(self.expnum)

    def describe(self) -> str:
        said = f"{self.analyst}: {self.target} {self.category}"
        if self.replaced is None:
            return f"added {said}"
        if self.replaced == self.category:
            return f"kept {said} (the same verdict as before; note and time updated)"
        return (
            f"replaced {self.analyst}'s earlier verdict on {self.target} ({self.replaced}) "
            f"with {self.category}"
        )


def add_label(store: Store, target: str, category: str, analyst: str, note: str = "") -> AddResult:
    """Record ``analyst``'s verdict on ``target`` (an ingested exposure, or one of its ingested CCDs)."""
    expnum, ccdname = parse_target(target)
    category = parse_verdict(category)
    analyst = parse_analyst(analyst)
    if not store.scalar("SELECT count(*) FROM ccds WHERE expnum = ?", [expnum]):
        raise NotFoundError(f"exposure {expnum} is not in store {store.path}; ingest it first (`vec ingest`)")
    ccdnum, level = EXPOSURE_LEVEL, "exposure"
    if ccdname is not None:
        ccdnum = store.scalar(
            "SELECT min(ccdnum) FROM ccds WHERE expnum = ? AND upper(ccdname) = ?", [expnum, ccdname]
        )
        if ccdnum is None:
            raise NotFoundError(f"CCD {ccdname} of exposure {expnum} is not in store {store.path}")
        level = "ccd"
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with store.transaction() as con:
        before = con.execute(
            "SELECT category FROM analyst_labels WHERE analyst = ? AND expnum = ? AND ccdnum = ?",
            [analyst, expnum, ccdnum],
        ).fetchall()
        con.execute(
            "INSERT OR REPLACE INTO analyst_labels VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [analyst, expnum, level, ccdnum, ccdname, category, " ".join(note.split()) or None, now],
        )
    return AddResult(analyst, expnum, ccdname, category, before[0][0] if before else None)


def analyst_rows(store: Store, expnum: int | None = None, analyst: str | None = None) -> list[dict]:
    """Every verdict (of one exposure, of one analyst), ordered by exposure, CCD, analyst."""
    if not store.has_table("analyst_labels"):
        return []
    where, params = [], []
    if expnum is not None:
        where.append("expnum = ?")
        params.append(expnum)
    if analyst is not None:
        where.append("analyst = ?")
        params.append(analyst)
    sql = "SELECT * FROM analyst_labels" + (f" WHERE {' AND '.join(where)}" if where else "")
    return store.query(sql + " ORDER BY expnum, ccdnum, analyst", params).to_pylist()


# ------------------------------------------------------------------------------------------ consensus
@dataclass(frozen=True)
class Consensus:
    """The analysts' verdict on one target: ``category`` (one of VERDICTS), or None with ``tied`` set."""

    expnum: int
    ccdnum: int  # EXPOSURE_LEVEL for the whole exposure
    ccdname: str | None
    votes: dict[str, list[str]]  # verdict -> the analysts who gave it
    category: str | None
    tied: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return f"{self.expnum}/{self.ccdname}" if self.ccdname else str(self.expnum)

    def describe(self) -> str:
        votes = ", ".join(f"{v} ({', '.join(a)})" for v, a in self.votes.items())
        verdict = f"tie between {' and '.join(self.tied)}" if self.category is None else self.category
        return f"{self.target}: {verdict} [{votes}]"


def decide(verdicts: list[str], rule: str = "majority") -> tuple[str | None, tuple[str, ...]]:
    """(consensus, ()) or (None, the tied verdicts) for one target's verdicts (one per analyst)."""
    if rule not in RULES:
        raise BadInputError(f"consensus rule {rule!r}: expected one of {', '.join(RULES)}")
    counts = Counter(verdicts)
    order = {v: i for i, v in enumerate(VERDICTS)}
    ranked = sorted(counts, key=lambda v: (-counts[v], order[v]))
    if rule == "unanimous":
        return (ranked[0], ()) if len(ranked) == 1 else (None, tuple(ranked))
    top = [v for v in ranked if counts[v] == counts[ranked[0]]]
    return (top[0], ()) if len(top) == 1 else (None, tuple(top))


def consensus(store: Store, rule: str | None = None, expnum: int | None = None) -> list[Consensus]:
    """The consensus on every target the analysts labelled (of one exposure)."""
    rule = rule or store.config.labels.consensus
    targets: dict[tuple[int, int], list[dict]] = {}
    for row in analyst_rows(store, expnum):
        targets.setdefault((row["expnum"], row["ccdnum"]), []).append(row)
    found = []
    for (e, ccdnum), rows in sorted(targets.items()):
        votes: dict[str, list[str]] = {}
        for row in rows:
            votes.setdefault(row["category"], []).append(row["analyst"])
        category, tied = decide([r["category"] for r in rows], rule)
        found.append(Consensus(e, ccdnum, rows[0]["ccdname"], votes, category, tied))
    return found


@dataclass
class CCDConsensus:
    """The analysts' consensus as training sees it, CCD by CCD (CCD-level beats exposure-level)."""

    verdicts: dict[int, str] = field(default_factory=dict)  # ccd_id -> category or GOOD
    tied: set[int] = field(default_factory=set)  # ccd_ids whose consensus is a tie: left out
    known_good: set[int] = field(default_factory=set)  # expnums known good (see the module docstring)
    flagged: set[int] = field(default_factory=set)  # expnums with any bad or tied consensus


def ccd_consensus(store: Store, rule: str | None = None) -> CCDConsensus:
    result = CCDConsensus()
    found = consensus(store, rule)
    if not found:
        return result
    expnums = sorted({c.expnum for c in found})
    rows = store.query(
        f"SELECT ccd_id, expnum, ccdnum FROM ccds WHERE expnum IN ({', '.join(map(str, expnums))})"
    ).to_pydict()
    ccds: dict[int, list[tuple[int, int]]] = {}
    for ccd_id, e, ccdnum in zip(rows["ccd_id"], rows["expnum"], rows["ccdnum"], strict=True):
        ccds.setdefault(e, []).append((ccd_id, ccdnum))
    by_target = {(c.expnum, c.ccdnum): c for c in found}
    for e in expnums:
        whole = by_target.get((e, EXPOSURE_LEVEL))
        for ccd_id, ccdnum in ccds.get(e, []):
            decision = by_target.get((e, ccdnum), whole)
            if decision is None:
                continue
            if decision.category is None:
                result.tied.add(ccd_id)
            else:
                result.verdicts[ccd_id] = decision.category
    for c in found:
        if c.category != GOOD:
            result.flagged.add(c.expnum)
    for c in found:
        if c.ccdnum == EXPOSURE_LEVEL and c.category == GOOD and c.expnum not in result.flagged:
            result.known_good.add(c.expnum)
    return result


# ------------------------------------------------------------------------------------------ show
@dataclass(frozen=True)
class ExposureLabels:
    expnum: int
    imported: list[dict]
    analysts: list[dict]
    consensus: list[Consensus]
    rule: str

    def as_dict(self) -> dict:
        return {
            "expnum": self.expnum,
            "imported": self.imported,
            "analysts": self.analysts,
            "consensus_rule": self.rule,
            "consensus": [
                {"target": c.target, "category": c.category, "tied": list(c.tied), "votes": c.votes}
                for c in self.consensus
            ],
        }


def exposure_labels(store: Store, expnum_text: str) -> ExposureLabels:
    """Every label of one exposure: imported lists, analysts, and the analysts' consensus."""
    expnum, ccdname = parse_target(expnum_text)
    if ccdname is not None:
        raise BadInputError(f"{expnum_text!r}: `vec labels show` takes an exposure number, e.g. {expnum}")
    imported = store.query(
        "SELECT source, level, ccdname, category, flag, raw_reason, file, line, imported_at FROM labels "
        "WHERE expnum = ? ORDER BY level, ccdname, source, line",
        [expnum],
    ).to_pylist()
    analysts = analyst_rows(store, expnum)
    known = store.scalar("SELECT count(*) FROM ccds WHERE expnum = ?", [expnum])
    if not (imported or analysts or known):
        raise NotFoundError(f"exposure {expnum} is neither in store {store.path} nor in any label")
    rule = store.config.labels.consensus
    return ExposureLabels(expnum, imported, analysts, consensus(store, rule, expnum), rule)


def format_exposure_labels(labels: ExposureLabels) -> str:
    lines = [f"exposure {labels.expnum}"]
    lines.append(f"imported labels ({len(labels.imported)}):")
    for r in labels.imported:
        where = f"{r['file']}:{r['line']}" if r["line"] is not None else r["file"]
        lines.append(
            f"  {r['ccdname'] or 'exposure':<9}{r['category'] or 'unmapped':<22}{r['source']:<15}"
            f"{r['raw_reason']!r}  ({where}, {r['imported_at']:%Y-%m-%d %H:%M})"
        )
    lines.append(f"analyst labels ({len(labels.analysts)}):")
    for r in labels.analysts:
        note = f"  note: {r['note']}" if r["note"] else ""
        lines.append(
            f"  {r['ccdname'] or 'exposure':<9}{r['category']:<22}{r['analyst']:<15}"
            f"{r['labelled_at']:%Y-%m-%d %H:%M}{note}"
        )
    lines.append(f"consensus ({labels.rule}):")
    if not labels.consensus:
        lines.append("  none (no analyst labels); training uses the imported labels")
    for c in labels.consensus:
        left_out = "  <- a tie: left out of training" if c.category is None else ""
        lines.append(f"  {c.describe()}{left_out}")
    return "\n".join(lines)


def ties(store: Store, rule: str | None = None) -> list[Consensus]:
    return [c for c in consensus(store, rule) if c.category is None]


# ------------------------------------------------------------------------------------------ export
@dataclass(frozen=True)
class AnalystExport:
    text: str  # decam-bad_expid lines of the bad verdicts
    n_bad: int
    good: list[int]  # exposures judged good (not written as bad lines)
    n_ties: int  # targets left out: the analysts tie


def export_labels(store: Store, analyst: str | None = None, rule: str | None = None) -> AnalystExport:
    """Bad verdicts as decam-bad_expid lines: the consensus per target, or one analyst's own verdicts."""
    if analyst is not None:
        analyst = parse_analyst(analyst)
        rows = analyst_rows(store, analyst=analyst)
        if not rows:
            raise NotFoundError(f"analyst {analyst!r} has no labels in store {store.path}")
        decisions = [
            Consensus(r["expnum"], r["ccdnum"], r["ccdname"], {r["category"]: [analyst]}, r["category"], ())
            for r in rows
        ]
        notes = {(r["expnum"], r["ccdnum"]): r["note"] for r in rows}
    else:
        decisions = consensus(store, rule)
        notes = {}
    lines = [
        "#EXPID\tFlag\tcomments",
        "#Flags: 1=possibly saturated; 2=clouds; 3=other source",
        f"# written by vec on {dt.datetime.now(dt.UTC):%Y-%m-%d}: "
        + (f"verdicts of analyst {analyst}" if analyst else "the analysts' consensus per exposure or CCD"),
    ]
    n_bad = 0
    for c in decisions:
        if c.category is None or c.category == GOOD:
            continue
        head = f"{c.expnum}-{c.ccdname}" if c.ccdname else str(c.expnum)
        who = ",".join(c.votes[c.category])
        note = notes.get((c.expnum, c.ccdnum))
        lines.append(
            f"{head}\t{_FLAG.get(c.category, 3)}\tvec:{c.category} analysts={who}"
            + (f" note: {note}" if note else "")
        )
        n_bad += 1
    good = sorted({c.expnum for c in decisions if c.category == GOOD and c.ccdnum == EXPOSURE_LEVEL})
    n_ties = sum(1 for c in decisions if c.category is None)
    return AnalystExport("\n".join(lines) + "\n", n_bad, good, n_ties)


def good_list_text(expnums: list[int]) -> str:
    """Exposures judged good, one number a line: what ``vec train --good-from FILE`` reads."""
    header = "# exposures the analysts judged good (vec labels export --good); for vec train --good-from\n"
    return header + "".join(f"{e}\n" for e in expnums)
