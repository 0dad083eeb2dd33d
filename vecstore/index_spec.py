"""Which FAISS factory strings vec accepts: those FAISS computes correctly with the L1 metric.

``Flat``, ``HNSW<M>[,Flat]`` and ``IVF<n>,Flat``. Scalar and product quantisers (SQ, PQ, ...) either return
wrong distances or, for ``HNSW32,SQ8``, abort the process; they are refused here before FAISS sees the
string. Pure text rules, without faiss, so the configuration can check its index knobs at load.
"""

from __future__ import annotations

import re

from vecstore.errors import IndexSpecError

_ALLOWED = (
    re.compile(r"^Flat$"),
    re.compile(r"^HNSW(?P<m>\d+)(,Flat)?$"),
    re.compile(r"^IVF(?P<nlist>\d+),Flat$"),
)
_QUANTISERS = re.compile(r"(SQ|PQ|LSH|RaBitQ|RQ|LSQ|ITQ|OPQ|Residual|fp16|bf16|8bit)", re.IGNORECASE)


def validate_spec(spec: str) -> str:
    """Return the normalised factory string, or raise :class:`IndexSpecError` saying why not."""
    text = spec.strip()
    if _QUANTISERS.search(text):
        raise IndexSpecError(
            f"index {spec!r} uses a quantiser, which FAISS does not support correctly with the L1 metric "
            "(wrong distances, or a crash for HNSW+SQ); use Flat, HNSW32,Flat or IVF<n>,Flat"
        )
    for pattern in _ALLOWED:
        match = pattern.match(text)
        if match:
            number = next(iter(match.groupdict().values()), None)
            if number is not None and int(number) < 1:
                raise IndexSpecError(f"index {spec!r}: the number must be at least 1")
            return text
    raise IndexSpecError(f"index {spec!r} is not one of: Flat, HNSW<M>[,Flat], IVF<nlist>,Flat")
