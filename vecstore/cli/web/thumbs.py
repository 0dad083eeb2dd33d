"""Thumbnails rendered once per CCD and kept in the store, beside the catalog.

``<store>/web-cache/thumbnails/<expnum>/<CCDNAME>-<size>.png`` for the two sizes the pages use
(:data:`SIZES`). Both are drawn from one read of the CCD's pixels (through :func:`query.gateway.read_pixels`,
the only way ``query`` reads a stored CCD's image) with vec's own asinh stretch
(:func:`query.reports.thumbnails.thumbnail_png`), written under a temporary name and renamed into place, so
a reader never sees half a file. The small one is turned a quarter turn when the CCD is portrait (as
:mod:`query.reports.focal_plane` turns raw CCDs), to fill the landscape boxes it is shown in. A CCD whose
file is gone or unreadable (or a store built without images) gets a grey "no image" picture that is not
cached on disk: the file may come back.

Rendering is serialised by one lock: a CCD is read and drawn once even when a page asks for it twice, and
the two cores are not shared by 62 decompressions at once.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from query.gateway import read_pixels
from query.reports.thumbnails import thumbnail_png

SIZES = {"small": 160, "large": 512}
CACHE_DIR = "web-cache"


@dataclass(frozen=True)
class Thumbnail:
    png: bytes
    source: str  # "cache" (read from disk), "rendered" (drawn now and cached), "no-image"


def _placeholder(size: int) -> bytes:
    picture = Image.new("L", (size, size // 2), 200)
    draw = ImageDraw.Draw(picture)
    text = "no image"
    box = draw.textbbox((0, 0), text)
    draw.text(((size - box[2]) / 2, (size // 2 - box[3]) / 2), text, fill=60)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


class ThumbnailCache:
    """PNG thumbnails of stored CCDs, by (expnum, CCD name, size name)."""

    def __init__(self, store_path: Path):
        self.root = Path(store_path) / CACHE_DIR / "thumbnails"
        self._lock = threading.Lock()
        self._placeholders = {name: _placeholder(px) for name, px in SIZES.items()}
        self.writable = True  # False after a failed write (a read-only file system): render, do not keep

    def path(self, expnum: int, ccdname: str, size: str) -> Path:
        return self.root / str(int(expnum)) / f"{ccdname.upper()}-{size}.png"

    def cached(self, expnum: int, ccdname: str, size: str) -> Thumbnail | None:
        try:
            return Thumbnail(self.path(expnum, ccdname, size).read_bytes(), "cache")
        except FileNotFoundError:
            return None

    def get(self, expnum: int, ccdname: str, size: str, location: tuple[str | None, str | None]) -> Thumbnail:
        """The thumbnail, drawn from the CCD's file at ``location`` = (path, hdu) when not cached yet."""
        if size not in SIZES:
            raise ValueError(f"thumbnail size {size!r}: expected one of {', '.join(SIZES)}")
        found = self.cached(expnum, ccdname, size)
        if found is not None:
            return found
        with self._lock:
            found = self.cached(expnum, ccdname, size)  # drawn by another request meanwhile
            if found is not None:
                return found
            path, hdu = location
            pixels = read_pixels(path, hdu) if path and hdu is not None and Path(path).is_file() else None
            if pixels is None:
                return Thumbnail(self._placeholders[size], "no-image")
            # The small one lies landscape, as the focal plane's boxes and the cards do (a raw CCD is
            # portrait: 4094 rows x 2046 columns); the large one keeps the CCD's own orientation.
            landscape = np.rot90(pixels, -1) if pixels.shape[0] > pixels.shape[1] else pixels
            pictures = {
                name: thumbnail_png(landscape if name == "small" else pixels, max_size=px)
                for name, px in SIZES.items()
            }
            self._keep(expnum, ccdname, pictures)
        return Thumbnail(pictures[size], "rendered")

    def _keep(self, expnum: int, ccdname: str, pictures: dict[str, bytes]) -> None:
        if not self.writable:
            return
        try:
            for name, png in pictures.items():
                target = self.path(expnum, ccdname, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                tmp.write_bytes(png)
                os.replace(tmp, target)
        except OSError:
            self.writable = False
