"""Labels as the classifier sees them: one category per ingested CCD, and the paper's Table 2.

A CCD may carry several labels (an exposure in two lists, an exposure-level and a CCD-level entry).
Resolution: a CCD-level label beats an exposure-level one (it is the more specific statement); among
labels of the same level the category named by more records wins; a remaining tie goes to the category
listed first in CATEGORIES (the paper's order). Documented here because it decides training labels.

Analysts' labels (``vec labels add``) come through their consensus (:mod:`query.analysts`) and beat the
imported lists on every CCD an analyst looked at (the CCD or its exposure): a bad consensus sets the CCD's
category, a ``good`` one removes it from the bad labels, a tie leaves it out of training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from query.analysts import analyst_rows, ccd_consensus, ties
from vecstore.store import Store
from vecstore.vocabulary import CATEGORIES, GOOD


def resolve_ccd_categories(store: Store) -> dict[int, str]:
    """ccd_id -> the one category that CCD is labelled with (bad CCDs only): the imported lists, then the
    analysts' consensus over them (see the module docstring)."""
    resolved = _imported_ccd_categories(store)
    analysts = ccd_consensus(store)
    for ccd_id in analysts.tied:
        resolved.pop(ccd_id, None)
    for ccd_id, category in analysts.verdicts.items():
        if category == GOOD:
            resolved.pop(ccd_id, None)
        else:
            resolved[ccd_id] = category
    return resolved


def _imported_ccd_categories(store: Store) -> dict[int, str]:
    table = store.query(
        "SELECT ccd_id, category, min(CASE level WHEN 'ccd' THEN 0 ELSE 1 END) AS level_rank, count(*) AS n "
        "FROM ccd_labels GROUP BY ccd_id, category"
    ).to_pydict()
    order = {c: i for i, c in enumerate(CATEGORIES)}
    best: dict[int, tuple] = {}
    for ccd_id, category, level_rank, n in zip(
        table["ccd_id"], table["category"], table["level_rank"], table["n"], strict=True
    ):
        key = (level_rank, -n, order.get(category, len(order)))
        if ccd_id not in best or key < best[ccd_id][0]:
            best[ccd_id] = (key, category)
    return {ccd_id: category for ccd_id, (_, category) in best.items()}


def labelled_expnums(store: Store) -> np.ndarray:
    """Exposures with any label at all (mapped, unmapped or ignored): never drawn as 'good'."""
    return store.query("SELECT DISTINCT expnum FROM labels").column("expnum").to_numpy()


@dataclass(frozen=True)
class LabelSummary:
    rows: list[dict]  # category, decals, des_delve, both, total (ingested CCDs), exposures (labelled)
    unmapped: list[dict]  # source, raw_reason, n
    n_labels: int
    n_ingested_ccds: int
    n_analyst_labels: int = 0
    analysts: tuple[str, ...] = ()
    ties: tuple[str, ...] = ()  # targets whose analysts' consensus is a tie (left out of training)


def labels_summary(store: Store) -> LabelSummary:
    """The paper's Table 2 for this store, plus the reasons no rule maps."""
    per_ccd = store.query(
        """
        WITH per_ccd AS (
          SELECT ccd_id, category,
                 bool_or(source = 'decals-badexp') AS in_decals,
                 bool_or(source IN ('delve', 'des-fits')) AS in_expert
          FROM ccd_labels GROUP BY ccd_id, category)
        SELECT category,
               count(*) FILTER (WHERE in_decals AND NOT in_expert) AS decals,
               count(*) FILTER (WHERE in_expert AND NOT in_decals) AS des_delve,
               count(*) FILTER (WHERE in_decals AND in_expert) AS both,
               count(*) AS total
        FROM per_ccd GROUP BY category
        """
    ).to_pylist()
    exposures = store.query(
        "SELECT category, count(DISTINCT expnum) AS n FROM labels "
        "WHERE category IS NOT NULL AND category <> 'ignore' GROUP BY category"
    ).to_pylist()
    by_category = {r["category"]: r for r in per_ccd}
    n_exposures = {r["category"]: r["n"] for r in exposures}
    rows = []
    for category in CATEGORIES:
        counts = by_category.get(category, {})
        rows.append(
            {
                "category": category,
                **{k: int(counts.get(k, 0)) for k in ("decals", "des_delve", "both", "total")},
                "exposures": int(n_exposures.get(category, 0)),
            }
        )
    unmapped = store.query(
        "SELECT source, raw_reason, count(*) AS n FROM labels WHERE category IS NULL "
        "GROUP BY source, raw_reason ORDER BY n DESC, raw_reason"
    ).to_pylist()
    verdicts = analyst_rows(store)
    return LabelSummary(
        rows=rows,
        unmapped=unmapped,
        n_labels=int(store.scalar("SELECT count(*) FROM labels")),
        n_ingested_ccds=int(store.scalar("SELECT count(*) FROM ccds")),
        n_analyst_labels=len(verdicts),
        analysts=tuple(sorted({r["analyst"] for r in verdicts})),
        ties=tuple(c.describe() for c in ties(store)),
    )


def format_summary(summary: LabelSummary) -> str:
    header = f"{'category':<22}{'DECaLS list':>12}{'DES+DELVE':>11}{'both':>7}{'total':>8}{'exposures':>11}"
    lines = [
        f"CCDs per category among {summary.n_ingested_ccds:,} ingested CCDs "
        f"({summary.n_labels:,} label records)",
        header,
        "-" * len(header),
    ]
    for r in summary.rows:
        lines.append(
            f"{r['category']:<22}{r['decals']:>12,}{r['des_delve']:>11,}{r['both']:>7,}{r['total']:>8,}"
            f"{r['exposures']:>11,}"
        )
    totals = {
        k: sum(r[k] for r in summary.rows) for k in ("decals", "des_delve", "both", "total", "exposures")
    }
    lines.append(
        f"{'Total':<22}{totals['decals']:>12,}{totals['des_delve']:>11,}{totals['both']:>7,}"
        f"{totals['total']:>8,}{totals['exposures']:>11,}"
    )
    if summary.unmapped:
        lines.append("")
        lines.append("unmapped reasons (add a rule to configs/categories.toml to use them):")
        lines += [f"  {r['n']:>6,}  {r['source']}: {r['raw_reason']}" for r in summary.unmapped]
    else:
        lines.append("no unmapped reasons")
    if summary.n_analyst_labels:
        lines.append("")
        lines.append(
            f"{summary.n_analyst_labels:,} analyst label(s) by {', '.join(summary.analysts)} "
            "(the table counts the imported lists; training takes the analysts' consensus over them)"
        )
        if summary.ties:
            lines.append("ties, left out of training (`vec labels show EXPNUM`; one more verdict decides):")
            lines += [f"  {t}" for t in summary.ties]
    return "\n".join(lines)
