"""The words the catalog itself speaks: the 11 bad categories of Luo et al. and "good".

They live in ``vecstore`` (not with the label importers) because the catalog's tables, the classifier
and the reports all name them, and ``query`` must not import ``ingest`` to learn a constant.
"""

from __future__ import annotations

# The paper's order; ties between categories go to the one listed first.
CATEGORIES: tuple[str, ...] = (
    "Saturated",
    "Clouds_Transparency",
    "PSF",
    "Nonoptimal_Exposure",
    "Ghost_Scatter",
    "NObjects",
    "Bad_CCD",
    "Noise",
    "Wonky",
    "Telescope_Moving",
    "Out_of_Focus",
)
GOOD = "good"

# ccd_id = expnum * 100 + CCDNUM (see vecstore.decam): deterministic, so labels can name CCDs before
# they are ingested and stores merge without renumbering; the exposure of a CCD is therefore its id // 100.
CCDS_PER_EXPNUM_ID = 100


def expnum_of(ccd_ids):
    """The exposure number of each ccd_id (an int, or a numpy array of them)."""
    return ccd_ids // CCDS_PER_EXPNUM_ID
