""" "Which CCDs look like this one?": the query CCD and its nearest neighbours as one self-contained page.

The query card comes first and is highlighted; neighbours follow in rank order, each bordered in the
colour of its label (the palette of :mod:`query.reports.focal_plane`) so a run of one category stands out.
"""

from __future__ import annotations

import html
from pathlib import Path

from query.reports.focal_plane import GOOD_COLOUR, MISSING_COLOUR, category_colour, text_colour_on
from query.reports.thumbnails import html_page, png_data_uri, write_text

_GALLERY_CSS = """
.grid { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.card { width: 212px; background: #fff; border: 4px solid; border-radius: 4px; padding: 6px;
        box-sizing: border-box; }
.card.query { border-color: #000; box-shadow: 0 0 0 3px #ffb300; }
.card .pic { width: 192px; height: 192px; display: flex; align-items: center; justify-content: center;
             background: #111; }
.card img { width: 192px; height: 192px; object-fit: contain; display: block; }  /* scale to fill */
.card .rank { font-size: 12px; font-weight: 600; margin: 4px 0 2px 0; }
.card .tag { display: inline-block; font-size: 11px; padding: 0 4px; border-radius: 3px; margin: 2px 0; }
.card .cap { font-size: 11px; font-family: ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap;
             overflow-wrap: anywhere; }
"""


def _label_colour(label: str | None) -> str:
    return MISSING_COLOUR if not label else category_colour(label)


def _card_html(png: bytes, heading: str, caption: str, label: str | None, css_class: str, colour: str) -> str:
    tag = ""
    if label:
        tag_colour = _label_colour(label)
        tag = (
            f'<div><span class="tag" style="background:{tag_colour};color:{text_colour_on(tag_colour)}">'
            f"{html.escape(label)}</span></div>"
        )
    return (
        f'<div class="card {css_class}" style="border-color:{colour}">'
        f'<div class="pic"><img src="{png_data_uri(png)}" alt="{html.escape(caption)}"></div>'
        f'<div class="rank">{html.escape(heading)}</div>{tag}'
        f'<div class="cap">{html.escape(caption)}</div></div>'
    )


def _query_card(query: dict) -> str:
    label = query.get("label")
    return _card_html(query["png"], "query", query["caption"], label, "query", "#000000")


def _neighbour_card(rank: int, neighbour: dict) -> str:
    label = neighbour.get("label")
    heading = f"#{rank}  d={float(neighbour['distance']):.4g}"
    colour = _label_colour(label)
    return _card_html(neighbour["png"], heading, neighbour["caption"], label, "neighbour", colour)


def similar_gallery_html(query: dict, neighbours: list[dict], out: Path, title: str) -> Path:
    """Write the gallery page; returns ``out``.

    ``query``: ``caption``, ``png`` (bytes), optional ``label``. Each neighbour: ``png``, ``caption`` (e.g.
    ``"1222425/N4  r  L1=3.21  label=Ghost_Scatter"``), ``distance``, ``label`` (a category, ``"good"``, or
    None/"" for an unlabelled CCD, drawn grey). Neighbours are shown in the order given (rank 1 first).
    """
    cards = [_query_card(query)] + [_neighbour_card(rank, n) for rank, n in enumerate(neighbours, start=1)]
    key = (
        f'<p style="font-size:12px">Border: black with amber halo = query; '
        f'<span style="color:{GOOD_COLOUR}">green</span> = labelled good; grey = unlabelled; '
        f"other colours = the neighbour's bad category.</p>"
    )
    body = f'<h1>{html.escape(title)}</h1>\n{key}\n<div class="grid">\n' + "\n".join(cards) + "\n</div>"
    return write_text(out, html_page(title, body, css=_GALLERY_CSS))
