"""A small trained store of synthetic embeddings with known categories, for the query tests.

Each exposure has one category (or is good); its CCD vectors scatter around the category's centre, so
the right answers are known. Labels go in through the real importer as a decam-bad_expid-style list.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.labels.importer import import_labels
from vecstore.config import Config
from vecstore.provenance import Provenance
from vecstore.store import Store

CATEGORIES = ("PSF", "Ghost_Scatter", "Clouds_Transparency", "Out_of_Focus")
DIM = 48
CCDS = 10


def make_store(
    path: Path,
    *,
    exposures_per_class: int = 6,
    n_good: int = 24,
    spread: float = 0.6,
    seed: int = 0,
    config: Config | None = None,
    feature_names: tuple[str, ...] | None = None,
    embedder: str = "synthetic",
) -> tuple[Store, dict[int, str]]:
    """A writable store (caller closes it) and the true category of each exposure ('good' included).

    ``feature_names`` (DIM of them) name the components in the provenance, as the ``qa`` embedder does;
    ``embedder`` is the provenance's embedder name (``"qa"``: what ``postprocess.method = auto`` does there).
    """
    rng = np.random.default_rng(seed)
    centres = {c: rng.normal(0, 3, DIM) for c in ("good", *CATEGORIES)}
    truth: dict[int, str] = {}
    expnum = 300000
    for category in ("good",) * n_good + tuple(c for c in CATEGORIES for _ in range(exposures_per_class)):
        truth[expnum] = category
        expnum += 1
    store = Store.create(path, config=config)
    store.ensure_provenance(Provenance(embedder, "none", DIM, f"seed:{seed}", feature_names=feature_names))
    for e, category in truth.items():
        rows = [
            {
                "ccd_id": e * 100 + n,
                "expnum": e,
                "ccdnum": n,
                "ccdname": f"S{n}",
                "filter": "gr"[n % 2],
                "exptime": 90.0,
                "release": "test",
                "path": f"/none/{e}.fits.fz",
                "hdu": f"S{n}",
            }
            for n in range(1, CCDS + 1)
        ]
        vectors = centres[category] + spread * rng.standard_normal((CCDS, DIM))
        store.commit_batch(None, rows, vectors.astype(np.float32))
    listing = path.parent / f"{path.name}-labels.txt"
    listing.write_text("".join(f"{e}\t3\tvec:{c} synthetic\n" for e, c in truth.items() if c != "good"))
    import_labels(store, listing, "decals-badexp")
    return store, truth
