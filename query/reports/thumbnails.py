"""CCD pixels -> small greyscale PNGs, and the bits every self-contained HTML report shares.

A thumbnail is a picture for a human scanning dozens of CCDs, not a measurement: the stretch is
``asinh`` around the sky so that faint wings, ghosts and scattered light show while bright stars do not
burn out the whole frame. Statistics come from a subsample because a full DECam CCD has 8.4 M pixels
and a picture does not need an exact median.

Pillow is always importable here: matplotlib depends on it, so no second PNG code path is kept.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from vecstore.errors import BadInputError

# Pixels used for the sky and noise estimates; enough for a stable median/MAD, cheap on a full CCD.
_STAT_SAMPLE = 100_000
# Grey level of an image with no usable contrast (constant, all-zero, all-NaN).
MID_GREY = 128
# MAD -> Gaussian sigma.
_MAD_TO_SIGMA = 1.4826


def _finite_subsample(image: np.ndarray) -> np.ndarray:
    """Finite values of an evenly strided subsample of the image (float64, possibly empty)."""
    flat = image.reshape(-1)
    step = max(1, flat.size // _STAT_SAMPLE)
    sample = flat[::step].astype(np.float64)
    return sample[np.isfinite(sample)]


def _sky_and_sigma(sample: np.ndarray) -> tuple[float, float]:
    """Robust sky level (median) and noise (1.4826 * MAD); sigma 0 when there is no spread at all."""
    if sample.size == 0:
        return 0.0, 0.0
    sky = float(np.median(sample))
    sigma = _MAD_TO_SIGMA * float(np.median(np.abs(sample - sky)))
    if sigma == 0.0:
        # More than half the pixels equal (masked regions, zero-padded CCDs): fall back on the std so an
        # image with a few sources on a flat zero background still shows them.
        sigma = float(np.std(sample))
    return sky, sigma


def asinh_stretch(
    image: np.ndarray, softening: float = 3.0, low_sigma: float = 2.0, high_quantile: float = 0.999
) -> np.ndarray:
    """Greyscale ``uint8`` picture of ``image`` (same shape): asinh((x - sky) / (softening * sigma)).

    ``sky - low_sigma * sigma`` maps to black so the sky shows as dark grey with visible noise; the
    ``high_quantile`` of the pixels (at least sky + 10 sigma) maps to white. NaN and inf pixels are shown as
    sky. An image without any spread (constant, all zero, all NaN) comes back mid-grey. The mapping is
    non-decreasing in the pixel value.
    """
    image = np.asarray(image)
    sample = _finite_subsample(image)
    sky, sigma = _sky_and_sigma(sample)
    if not sigma > 0.0 or not math.isfinite(sigma):
        return np.full(image.shape, MID_GREY, dtype=np.uint8)
    scale = softening * sigma
    top = max(float(np.quantile(sample, high_quantile)), sky + 10.0 * sigma)
    low_end = np.arcsinh(-low_sigma * sigma / scale)
    high_end = np.arcsinh((top - sky) / scale)
    values = np.where(np.isfinite(image), image, sky).astype(np.float32, copy=False)
    stretched = np.arcsinh((values - np.float32(sky)) / np.float32(scale))
    unit = (stretched - np.float32(low_end)) / np.float32(high_end - low_end)
    return (np.clip(unit, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _fill_non_finite(image: np.ndarray) -> np.ndarray:
    """float32 copy of the image with NaN/inf replaced by the sky, so block means stay finite."""
    values = np.asarray(image, dtype=np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        sky, _ = _sky_and_sigma(_finite_subsample(values))
        values = np.where(bad, np.float32(sky), values)
    return values


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks; edge rows/columns that do not fill a block are dropped."""
    if factor <= 1:
        return image
    rows = image.shape[0] // factor
    cols = image.shape[1] // factor
    cropped = image[: rows * factor, : cols * factor]
    return cropped.reshape(rows, factor, cols, factor).mean(axis=(1, 3), dtype=np.float32)


def thumbnail_size(shape: tuple[int, int], max_size: int) -> tuple[int, int]:
    """(rows, columns) of the thumbnail: the longer side becomes ``max_size``, never enlarged."""
    rows, cols = shape
    scale = min(1.0, max_size / max(rows, cols))
    return max(1, round(rows * scale)), max(1, round(cols * scale))


def thumbnail_png(image: np.ndarray, max_size: int = 256) -> bytes:
    """PNG of a 2-D image whose longer side is ``max_size`` pixels (aspect kept; small images as they are).

    The CCD is block-averaged first by the largest integer factor that keeps it at least ``max_size``
    (a 4094 x 2046 CCD becomes 272 x 136 in one numpy pass), stretched, then resampled to the exact size.
    Averaging before stretching also beats down the pixel noise the way the eye expects of a small picture.
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise BadInputError(f"thumbnail_png needs a non-empty 2-D image, got shape {image.shape}")
    if max_size < 1:
        raise BadInputError(f"max_size must be positive, got {max_size}")
    factor = max(1, max(image.shape) // max_size)
    reduced = block_mean(_fill_non_finite(image), factor)
    picture = Image.fromarray(asinh_stretch(reduced))  # 2-D uint8 -> mode "L"
    rows, cols = thumbnail_size(image.shape, max_size)
    if picture.size != (cols, rows):
        picture = picture.resize((cols, rows), Image.Resampling.BOX)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def png_data_uri(png_bytes: bytes) -> str:
    """``data:image/png;base64,...`` for embedding a PNG in a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def png_dimensions(png_bytes: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk without decoding it; None if the bytes are not a PNG."""
    if len(png_bytes) < 24 or png_bytes[:8] != b"\x89PNG\r\n\x1a\n" or png_bytes[12:16] != b"IHDR":
        return None
    return int.from_bytes(png_bytes[16:20], "big"), int.from_bytes(png_bytes[20:24], "big")


# Run on load by every report page: how many <img> actually decoded. Browser tests read it from the DOM
# (`data-loaded-images` on <body>) because a broken data URI still leaves an <img> element in the HTML.
LOADED_IMAGES_SCRIPT = """<script>
window.addEventListener("load", function () {
  var loaded = Array.prototype.filter.call(document.images, function (im) {
    return im.complete && im.naturalWidth > 0;
  });
  document.body.setAttribute("data-loaded-images", String(loaded.length));
});
</script>"""

_BASE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 16px;
       color: #222; background: #fafafa; }
h1 { font-size: 20px; margin: 0 0 8px 0; }
h2 { font-size: 16px; margin: 20px 0 6px 0; }
pre { background: #fff; border: 1px solid #ddd; padding: 8px; overflow-x: auto; font-size: 12px; }
"""


def html_page(title: str, body_html: str, css: str = "", head_extra: str = "") -> str:
    """A complete, self-contained HTML document (no external resources) with the loaded-images counter.

    ``title`` is escaped here; ``body_html``, ``css`` and ``head_extra`` are trusted markup built by the
    report modules, which escape their own text.
    """
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_BASE_CSS}{css}</style>\n{head_extra}\n"
        f"{LOADED_IMAGES_SCRIPT}\n</head>\n<body>\n{body_html}\n</body>\n</html>\n"
    )


def write_text(out: Path, text: str) -> Path:
    """Write a report, creating its directory; returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
