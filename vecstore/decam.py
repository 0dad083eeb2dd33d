"""The DECam focal plane: CCD names, CCD numbers and where each CCD sits.

CCDNUM follows the DECam convention used by the Community Pipeline headers, DES and DELVE lists
(S29=1, S30=2, S31=3, S25=4, ..., S7=31, N1=32, ..., N31=62). N30 (CCDNUM 61) failed in 2012 and
S30 (CCDNUM 2) was lost 2013-2015; the Community Pipeline omits dead CCDs from its files.
"""

from __future__ import annotations

from vecstore.errors import BadInputError

# Rows of the focal plane from the south edge to the north edge; each row lists its CCDs west to east.
# The south half uses the S names, the north half mirrors it with N names.
_SOUTH_ROWS = (
    ("S29", "S30", "S31"),
    ("S25", "S26", "S27", "S28"),
    ("S20", "S21", "S22", "S23", "S24"),
    ("S14", "S15", "S16", "S17", "S18", "S19"),
    ("S8", "S9", "S10", "S11", "S12", "S13"),
    ("S1", "S2", "S3", "S4", "S5", "S6", "S7"),
)
_NORTH_ROWS = tuple(tuple("N" + name[1:] for name in row) for row in reversed(_SOUTH_ROWS))

CCDNUM_BY_NAME: dict[str, int] = {}
for _row in _SOUTH_ROWS:
    for _name in _row:
        CCDNUM_BY_NAME[_name] = len(CCDNUM_BY_NAME) + 1
for _i in range(1, 32):
    CCDNUM_BY_NAME[f"N{_i}"] = 31 + _i
CCDNAME_BY_NUM: dict[int, str] = {num: name for name, num in CCDNUM_BY_NAME.items()}

ALL_CCDNAMES: tuple[str, ...] = tuple(f"N{i}" for i in range(1, 32)) + tuple(f"S{i}" for i in range(1, 32))

# N30 died on 2012-11-30 (MJD 56261); CP files after that date have 61 CCD HDUs.
N30_FAILURE_MJD = 56261.0

# Pixel shape of a DECam science CCD as numpy (rows, columns) = (NAXIS2, NAXIS1).
CCD_SHAPE = (4094, 2046)


def ccdnum_for(ccdname: str) -> int:
    """CCDNUM (1..62) of a DECam CCD name such as ``"N4"`` or ``"s31"``."""
    key = ccdname.strip().upper()
    if key not in CCDNUM_BY_NAME:
        raise BadInputError(f"{ccdname!r} is not a DECam CCD name (expected N1..N31 or S1..S31)")
    return CCDNUM_BY_NAME[key]


def ccdname_for(ccdnum: int) -> str:
    """DECam CCD name of a CCDNUM (1..62)."""
    if ccdnum not in CCDNAME_BY_NUM:
        raise BadInputError(f"{ccdnum} is not a DECam CCDNUM (expected 1..62)")
    return CCDNAME_BY_NUM[ccdnum]


def ccd_id_for(expnum: int, ccdnum: int) -> int:
    """The store's key for one CCD of one exposure: ``expnum * 100 + ccdnum``.

    Deterministic so that labels can name CCDs before they are ingested and stores built on different
    nodes merge without renumbering.
    """
    if not 1 <= ccdnum <= 99:
        raise BadInputError(f"CCDNUM {ccdnum} out of range 1..99")
    return int(expnum) * 100 + int(ccdnum)


def focal_plane_positions() -> dict[str, tuple[float, float]]:
    """Centre of each CCD in focal-plane units (one unit = a CCD's short side; long side = 2 units).

    CCDs are 2:1 rectangles lying with their long side east-west; rows are staggered by half a CCD as on
    the real camera. Good enough for a picture of which CCDs voted how, not for astrometry.
    """
    positions: dict[str, tuple[float, float]] = {}
    rows = _SOUTH_ROWS + _NORTH_ROWS
    for row_index, row in enumerate(rows):
        y = (len(rows) - 1) / 2 - row_index  # south at the bottom... flipped below so north is up
        for col_index, name in enumerate(row):
            x = 2.0 * (col_index - (len(row) - 1) / 2)
            positions[name] = (x, -y)
    return positions
