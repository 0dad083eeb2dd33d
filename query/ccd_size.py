"""Is a CCD the size of the CCDs a model's references were measured on? If not, vec says so.

An embedding depends on the CCD's size as well as on what is on it: the ``qa`` statistics count sources
and PSF stars and fit the background on a mesh of fixed cells, and DINOv2 sees the image resized to its
input, so a cutout's pixels are magnified. A model trained on full DECam CCDs (4094 x 2046) and asked
about a cutout compares unlike with unlike, and nothing in the distances shows it. Measured
(``bench/ccd_size_bench.py``, README): a model trained on 1024 x 512 CCDs, classifying new files of
512 x 256 CCDs, called most of their good exposures bad. ``vec classify`` therefore warns when a CCD's
area is not within ``AREA_RATIO`` of some reference CCD's (so 4094 x 2046 and 4096 x 2048, or a few
trimmed columns, count as one size), and says what to do; ``vec similar FILE`` warns the same way when a
file's CCD is of a size none of the store's CCDs has (its nearest CCDs would be the nearest in size).

Sizes are kept as (NAXIS1, NAXIS2), columns and rows as FITS headers give them, and printed as vec prints
CCD shapes everywhere, rows x columns (a DECam CCD: 4094 x 2046). Stores made before vec kept them have
none, and nothing is checked there.
"""

from __future__ import annotations

from collections import Counter

Size = tuple[int, int]  # (NAXIS1, NAXIS2), as Store.ccd_sizes and Model.reference_sizes give them
AREA_RATIO = 1.25


def is_reference_size(size: Size, reference: Counter[Size]) -> bool:
    """Whether ``size``'s area is within ``AREA_RATIO`` of some reference size's (True with no sizes)."""
    area = size[0] * size[1]
    return not reference or any(
        1 / AREA_RATIO <= area / (n1 * n2) <= AREA_RATIO for n1, n2 in reference if n1 * n2
    )


def shape_text(size: Size) -> str:
    """(NAXIS1, NAXIS2) as rows x columns."""
    return f"{size[1]} x {size[0]}"


def _sizes_text(reference: Counter[Size]) -> str:
    return ", ".join(f"{shape_text(size)} ({count:,})" for size, count in reference.most_common())


CLASSIFY_ADVICE = (
    "so this verdict compares unlike with unlike and is likely wrong (most often a false alarm on "
    "smaller CCDs). Classify CCDs of the references' size, or ingest and label CCDs of this size and run "
    "`vec train`."
)
SIMILAR_ADVICE = (
    "so its nearest CCDs are the nearest in size as much as in look. Search with a CCD of the store's "
    'size, or ingest CCDs of this size and search among them (--where "naxis1 = N").'
)


def size_warnings(
    sizes: dict[str, Size],
    reference: Counter[Size],
    *,
    against: str = "the model's reference CCDs",
    advice: str = CLASSIFY_ADVICE,
) -> list[str]:
    """One warning per size of CCD (ccdname -> size) that no ``against`` CCD has, naming its CCDs."""
    unlike: dict[Size, list[str]] = {}
    for name, size in sizes.items():
        if not is_reference_size(size, reference):
            unlike.setdefault(size, []).append(name)
    return [
        f"CCD(s) {', '.join(names)}: {shape_text(size)} pixels (rows x columns), but {against} are "
        f"{_sizes_text(reference)}; embeddings depend on the CCD's size (the qa statistics count sources "
        f"and fit the background per mesh cell), {advice}"
        for size, names in unlike.items()
    ]
