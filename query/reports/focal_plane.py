"""One exposure on the DECam focal plane: each CCD where it sits, coloured by how it was classified.

Input is plain data so the query code can call it without a store: one dict per classified CCD with
``ccdname``, ``label`` (a category name or ``"good"``), ``prob`` (the probability of that label) and
``is_bad`` (the CCD's verdict). The colour follows ``is_bad``: a CCD whose top label is a category but
whose verdict is good (probability under the threshold) is drawn green, with its label still captioned,
because the colour should say what the vote counted. CCDs absent from the list (dead, not ingested, not
classified) are light grey.

Layout: :func:`vecstore.decam.focal_plane_positions`, north up, CCDs as 2:1 boxes. Thumbnails of raw CCDs
(4094 rows x 2046 columns, portrait) are turned a quarter turn to lie in those landscape boxes; the
orientation is for recognising a pattern, not for astrometry.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from query.reports.thumbnails import html_page, png_data_uri, png_dimensions, write_text  # noqa: E402
from vecstore.decam import ALL_CCDNAMES, focal_plane_positions  # noqa: E402
from vecstore.errors import BadInputError  # noqa: E402
from vecstore.vocabulary import CATEGORIES  # noqa: E402

GOOD = "good"
GOOD_COLOUR = "#7ccf7f"
MISSING_COLOUR = "#d9d9d9"
# A category this palette does not know (a newer rule file): visible, but not confused with the 11.
OTHER_COLOUR = "#bc80bd"

# One distinct hue per bad category; none green (= good) or light grey (= not classified).
CATEGORY_COLOURS: dict[str, str] = {
    "Saturated": "#e41a1c",
    "Clouds_Transparency": "#377eb8",
    "PSF": "#984ea3",
    "Nonoptimal_Exposure": "#ff7f00",
    "Ghost_Scatter": "#ffd92f",
    "NObjects": "#a65628",
    "Bad_CCD": "#252525",
    "Noise": "#f781bf",
    "Wonky": "#17becf",
    "Telescope_Moving": "#d6278f",
    "Out_of_Focus": "#1a237e",
}
CATEGORY_ABBREVIATIONS: dict[str, str] = {
    "Saturated": "SAT",
    "Clouds_Transparency": "CLD",
    "PSF": "PSF",
    "Nonoptimal_Exposure": "EXP",
    "Ghost_Scatter": "GHO",
    "NObjects": "NOB",
    "Bad_CCD": "BCD",
    "Noise": "NOI",
    "Wonky": "WNK",
    "Telescope_Moving": "MOV",
    "Out_of_Focus": "OOF",
    GOOD: "ok",
}

_NOT_CLASSIFIED = "not classified"


def category_colour(label: str) -> str:
    """Hex colour of a label: green for good, the category's hue otherwise."""
    if label == GOOD:
        return GOOD_COLOUR
    return CATEGORY_COLOURS.get(label, OTHER_COLOUR)


def abbreviation(label: str) -> str:
    """Three-letter tag of a category (the first 3 letters, upper case, for one this module does not know)."""
    return CATEGORY_ABBREVIATIONS.get(label, label[:3].upper())


def verdict_colour(ccd: dict) -> str:
    """Fill colour of a classified CCD: its category's hue if the verdict is bad, else good green."""
    return category_colour(ccd["label"]) if ccd["is_bad"] else GOOD_COLOUR


def text_colour_on(background: str) -> str:
    """Black or white, whichever reads better on the background (relative luminance)."""
    r, g, b = to_rgb(background)
    return "#000000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "#ffffff"


def ccd_caption(ccd: dict) -> str:
    """``"GHO 0.83"``: the label's tag and its probability."""
    return f"{abbreviation(ccd['label'])} {float(ccd['prob']):.2f}"


def _ccds_by_name(ccds: list[dict]) -> dict[str, dict]:
    """Index the CCD dicts by normalised name, refusing names DECam does not have and duplicates."""
    by_name: dict[str, dict] = {}
    for ccd in ccds:
        name = _known_ccdname(ccd["ccdname"])
        if name in by_name:
            raise BadInputError(f"CCD {name} is listed twice in the focal-plane input")
        by_name[name] = ccd
    return by_name


def _known_ccdname(name: str) -> str:
    key = str(name).strip().upper()
    if key not in ALL_CCDNAMES:
        raise BadInputError(f"{name!r} is not a DECam CCD name (expected N1..N31 or S1..S31)")
    return key


def _legend_entries(by_name: dict[str, dict]) -> list[tuple[str, str]]:
    """(text, colour) for the colours actually used: bad categories in the paper's order, good, grey."""
    bad_labels = {ccd["label"] for ccd in by_name.values() if ccd["is_bad"]}
    ordered = [c for c in CATEGORIES if c in bad_labels] + sorted(bad_labels - set(CATEGORIES))
    entries = [(f"{abbreviation(c)}  {c}", category_colour(c)) for c in ordered]
    if any(not ccd["is_bad"] for ccd in by_name.values()):
        entries.append(("good", GOOD_COLOUR))
    if len(by_name) < len(ALL_CCDNAMES):
        entries.append((_NOT_CLASSIFIED, MISSING_COLOUR))
    return entries


# --- PNG ------------------------------------------------------------------------------------------------

# Focal-plane extent in CCD short-side units: 7 CCDs of width 2 across, 12 rows of height 1.
_X_LIMITS = (-7.2, 7.2)
_Y_LIMITS = (-6.2, 6.2)
_GAP = 0.04  # units between neighbouring boxes so borders do not merge


def _draw_ccd(ax, name: str, centre: tuple[float, float], ccd: dict | None) -> Rectangle:
    x, y = centre
    fill = MISSING_COLOUR if ccd is None else verdict_colour(ccd)
    box = Rectangle(
        (x - 1 + _GAP, y - 0.5 + _GAP),
        2 - 2 * _GAP,
        1 - 2 * _GAP,
        facecolor=fill,
        edgecolor="#555555",
        lw=0.6,
    )
    ax.add_patch(box)
    text = name if ccd is None else f"{name}\n{ccd_caption(ccd)}"
    ax.text(x, y, text, ha="center", va="center", fontsize=7, color=text_colour_on(fill), linespacing=1.1)
    return box


def focal_plane_png(ccds: list[dict], out: Path, title: str) -> dict[str, tuple[int, int, int, int]]:
    """Draw the 62 CCDs coloured by verdict into a PNG; returns each CCD's box in the PNG's pixels.

    The returned ``{ccdname: (left, top, right, bottom)}`` (image rows counted from the top) lets callers
    build an HTML image map or, in tests, sample the colour of a given CCD.
    """
    by_name = _ccds_by_name(ccds)
    positions = focal_plane_positions()
    fig = plt.figure(figsize=(10.0, 7.5), dpi=100)
    try:
        ax = fig.add_axes((0.01, 0.01, 0.74, 0.92))
        ax.set_xlim(*_X_LIMITS)
        ax.set_ylim(*_Y_LIMITS)
        ax.set_aspect("equal")
        ax.set_axis_off()
        boxes = {name: _draw_ccd(ax, name, positions[name], by_name.get(name)) for name in ALL_CCDNAMES}
        fig.suptitle(title, fontsize=12, x=0.38)
        handles = [Patch(facecolor=c, edgecolor="#555555", label=t) for t, c in _legend_entries(by_name)]
        fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
        fig.canvas.draw()  # fixes the aspect-adjusted axes position the pixel boxes are computed from
        pixel_boxes = _pixel_boxes(fig, boxes)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        # Same dpi as the canvas and no tight bbox, so the saved pixels match the computed boxes.
        fig.savefig(out, dpi=fig.dpi, facecolor="white")
    finally:
        plt.close(fig)
    return pixel_boxes


def _pixel_boxes(fig, boxes: dict[str, Rectangle]) -> dict[str, tuple[int, int, int, int]]:
    height = fig.canvas.get_width_height()[1]
    pixel_boxes = {}
    for name, box in boxes.items():
        (x0, y0), (x1, y1) = box.get_window_extent().get_points()
        pixel_boxes[name] = (round(x0), round(height - y1), round(x1), round(height - y0))
    return pixel_boxes


# --- HTML -----------------------------------------------------------------------------------------------

_UNIT_PX = 64  # one CCD short side on the page
_GAP_PX = 2
_BORDER_PX = 4

_FOCAL_CSS = f"""
.plane {{ position: relative; background: #fff; border: 1px solid #ccc; margin: 8px 0; }}
.ccd {{ position: absolute; box-sizing: border-box; border: {_BORDER_PX}px solid; overflow: hidden;
        background: #eee; }}
.ccd img {{ position: absolute; display: block; image-rendering: auto; }}
.ccd .cap {{ position: absolute; left: 0; right: 0; bottom: 0; font-size: 10px; line-height: 12px;
             padding: 0 2px; background: rgba(255, 255, 255, 0.78); color: #000; white-space: nowrap;
             overflow: hidden; }}
.verdict {{ font-size: 15px; padding: 6px 10px; display: inline-block; border-radius: 4px; }}
.legend span.swatch {{ display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 12px;
                      border: 1px solid #555; vertical-align: middle; }}
.legend {{ font-size: 12px; }}
"""


def _verdict_header(verdict: dict | None) -> str:
    """``Exposure 1222425: BAD (Ghost_Scatter), 23 of 61 CCDs bad`` in the verdict's colour."""
    if verdict is None:
        return ""
    is_bad = bool(verdict["is_bad"])
    category = verdict.get("category")
    word = "BAD" if is_bad else "GOOD"
    if is_bad and category:
        word += f" ({category})"
    text = f"Exposure {verdict['expnum']}: {word}, {verdict['n_bad']} of {verdict['n_ccds']} CCDs bad"
    colour = category_colour(category) if is_bad and category else (OTHER_COLOUR if is_bad else GOOD_COLOUR)
    return (
        f'<div class="verdict" style="background:{colour};color:{text_colour_on(colour)}">'
        f"{html.escape(text)}</div>"
    )


def _thumbnail_img(png: bytes, inner_width: int, inner_height: int, alt: str) -> str:
    """``<img>`` filling a landscape box; portrait thumbnails (raw CCDs) are turned a quarter turn."""
    dimensions = png_dimensions(png)
    portrait = dimensions is not None and dimensions[1] > dimensions[0]
    if portrait:
        # Lay out at the rotated size, centred, then rotate about the centre into the box.
        style = (
            f"width:{inner_height}px;height:{inner_width}px;left:{(inner_width - inner_height) / 2}px;"
            f"top:{(inner_height - inner_width) / 2}px;transform:rotate(90deg);object-fit:fill"
        )
    else:
        style = f"width:{inner_width}px;height:{inner_height}px;left:0;top:0;object-fit:contain"
    return f'<img src="{png_data_uri(png)}" alt="{html.escape(alt)}" style="{style}">'


def _ccd_box_html(name: str, centre: tuple[float, float], ccd: dict | None, png: bytes | None) -> str:
    x, y = centre
    left = (x - 1 - _X_LIMITS[0]) * _UNIT_PX + _GAP_PX
    top = (_Y_LIMITS[1] - (y + 0.5)) * _UNIT_PX + _GAP_PX
    width = 2 * _UNIT_PX - 2 * _GAP_PX
    height = _UNIT_PX - 2 * _GAP_PX
    colour = MISSING_COLOUR if ccd is None else verdict_colour(ccd)
    caption = name if ccd is None else f"{name} {ccd_caption(ccd)}"
    hover = (
        f"{name}: {_NOT_CLASSIFIED}" if ccd is None else f"{name}: {ccd['label']} p={float(ccd['prob']):.3f}"
    )
    inner = ""
    if png is not None:
        inner = _thumbnail_img(png, width - 2 * _BORDER_PX, height - 2 * _BORDER_PX, f"thumbnail of {name}")
    return (
        f'<div class="ccd" data-ccd="{html.escape(name)}" title="{html.escape(hover)}" '
        f'style="left:{left:.0f}px;top:{top:.0f}px;width:{width}px;height:{height}px;border-color:{colour}">'
        f'{inner}<div class="cap">{html.escape(caption)}</div></div>'
    )


def _legend_html(by_name: dict[str, dict]) -> str:
    items = "".join(
        f'<span class="swatch" style="background:{colour}"></span>{html.escape(text)}'
        for text, colour in _legend_entries(by_name)
    )
    return f'<div class="legend">{items}</div>'


def focal_plane_html(
    ccds: list[dict],
    out: Path,
    title: str,
    thumbnails: dict[str, bytes] | None = None,
    verdict: dict | None = None,
) -> Path:
    """Self-contained HTML page of the focal plane: CCD boxes bordered by verdict, with thumbnails.

    ``thumbnails`` maps CCD names to PNG bytes (e.g. from :func:`query.reports.thumbnails.thumbnail_png`);
    a CCD without one shows just its caption. ``verdict`` (expnum, is_bad, category, n_bad, n_ccds) becomes
    the header. Returns ``out``.
    """
    by_name = _ccds_by_name(ccds)
    pictures = {_known_ccdname(name): png for name, png in (thumbnails or {}).items()}
    positions = focal_plane_positions()
    boxes = "\n".join(
        _ccd_box_html(name, positions[name], by_name.get(name), pictures.get(name)) for name in ALL_CCDNAMES
    )
    plane_width = round((_X_LIMITS[1] - _X_LIMITS[0]) * _UNIT_PX)
    plane_height = round((_Y_LIMITS[1] - _Y_LIMITS[0]) * _UNIT_PX)
    body = (
        f"<h1>{html.escape(title)}</h1>\n{_verdict_header(verdict)}\n"
        f'<div class="plane" style="width:{plane_width}px;height:{plane_height}px">\n{boxes}\n</div>\n'
        f"{_legend_html(by_name)}"
    )
    return write_text(out, html_page(title, body, css=_FOCAL_CSS))
