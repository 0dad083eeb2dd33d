"""Make the README's pictures: one simulated CCD per category, as vec's asinh thumbnails.

    python scripts/category_gallery.py docs/img

Simulates one full-size exposure per category (a few CCDs each), picks a CCD the artifact touches, and
writes <category>.png with vec's own thumbnail code (query.reports.thumbnails), plus good.png.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ingest.reader import CCDTask, read_ccd
from ingest.simulate.survey import BAD_CATEGORIES, simulate_survey
from query.reports.thumbnails import thumbnail_png

CCDS = ["N4", "N5", "N10", "S4", "S5", "S10"]


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        n = len(BAD_CATEGORIES) + 1
        sim = simulate_survey(
            Path(tmp), n, ccd_shape=(4094, 2046), ccdnames=CCDS, seed=11, bad_fraction=(n - 1) / n
        )
        for exposure in sim.exposures:
            name = exposure.affected_ccds[0] if exposure.category else exposure.ccdnames[0]
            _, pixels = read_ccd(CCDTask(str(exposure.path), name))
            target = out_dir / f"{exposure.label}.png"
            target.write_bytes(thumbnail_png(pixels, max_size=256))
            print(f"{target}  exposure {exposure.expnum} CCD {name}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))
