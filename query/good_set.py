"""Which exposures may serve as "good" references, and which of their CCDs.

``--good-from`` (``train.good_from``) names exposures known to be good, in one of three forms:

- a file of exposure numbers (the first field of each line; ``#`` comments and blank lines skipped);
- ``release:TAG``: every exposure of that release (e.g. an inspected "gold" sample ingested on its own);
- anything else is a SQL condition on the ``exposures`` table, e.g. ``"expnum IN (SELECT expnum FROM
  my_inspected)"`` or ``"filter = 'r' AND mjd < 58000"``.

Without it, the default is the paper's: exposures with no label at all (mapped, unmapped or ignored).
Either way a CCD must not be cut by legacypipe's ``ccd_cuts`` and must have E(B-V) below ``max_ebv`` where
the catalog knows it, and an exposure that carries a bad label is never good.

Analysts' verdicts (:mod:`query.analysts`) come first: an exposure whose analysts' consensus is ``good``
(and none of whose CCDs has a bad or tied consensus) is known good, in the default pool and added to any
``--good-from`` set, even when an imported list names it (the analysts' look wins, as in training); an
exposure with any bad or tied analyst consensus is never good.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from query.analysts import ccd_consensus
from query.labels import labelled_expnums
from vecstore.errors import BadInputError
from vecstore.store import Store


def known_good_expnums(store: Store, spec: str) -> set[int]:
    """The exposures ``spec`` names (see the module docstring)."""
    spec = spec.strip()
    if spec.startswith("release:"):
        rows = store.query("SELECT DISTINCT expnum FROM ccds WHERE release = ?", [spec.split(":", 1)[1]])
        return set(rows.column("expnum").to_pylist())
    path = Path(spec)
    if path.is_file():
        return _expnums_in_file(path)
    try:
        rows = store.query(f"SELECT DISTINCT expnum FROM exposures WHERE {spec}")
    except Exception as exc:  # DuckDB's parser/binder errors: say which of the three forms was meant
        raise BadInputError(
            f"--good-from {spec!r} is not a file, not release:TAG, and not a valid condition on the "
            f"exposures table ({str(exc).splitlines()[0]})"
        ) from None
    return set(rows.column("expnum").to_pylist())


def _expnums_in_file(path: Path) -> set[int]:
    expnums = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if not fields[0].isdigit():
            raise BadInputError(f"{path}:{number}: expected an exposure number, found {fields[0]!r}")
        expnums.add(int(fields[0]))
    return expnums


def good_candidates(store: Store, max_ebv: float, good_from: str = "") -> dict[int, list[int]]:
    """expnum -> ccd_ids of CCDs that may serve as 'good', by ``good_from`` or the default pool."""
    analysts = ccd_consensus(store)
    labelled = (set(labelled_expnums(store).tolist()) | analysts.flagged) - analysts.known_good
    allowed = None
    if good_from:
        named = known_good_expnums(store, good_from) - _bad_expnums(store) - analysts.flagged
        allowed = named | analysts.known_good
    rows = store.query(
        "SELECT ccd_id, expnum FROM ccds WHERE coalesce(ccd_cuts, 0) = 0 AND (ebv IS NULL OR ebv < ?) "
        "ORDER BY ccd_id",
        [max_ebv],
    ).to_pydict()
    candidates: dict[int, list[int]] = {}
    for ccd_id, expnum in zip(rows["ccd_id"], rows["expnum"], strict=True):
        if (expnum in allowed) if allowed is not None else (expnum not in labelled):
            candidates.setdefault(expnum, []).append(ccd_id)
    return candidates


def _bad_expnums(store: Store) -> set[int]:
    rows = store.query(
        "SELECT DISTINCT expnum FROM labels WHERE category IS NOT NULL AND category <> 'ignore'"
    )
    return set(rows.column("expnum").to_pylist())


def draw_good(candidates: dict[int, list[int]], expnums, n: int, rng: np.random.Generator) -> list[int]:
    """``n`` good CCDs drawn without replacement from the candidates of ``expnums`` (all when fewer)."""
    pool = [ccd for expnum in expnums for ccd in candidates[expnum]]
    if n >= len(pool):
        return sorted(pool)
    return sorted(rng.choice(pool, size=n, replace=False).tolist())


def classified_later(store: Store, expnums) -> int:
    """How many of ``expnums`` ``vec classify --all`` will classify (they carry no label)."""
    labelled = set(labelled_expnums(store).tolist())
    return sum(1 for e in expnums if e not in labelled)
