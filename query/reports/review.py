"""The review queue as one self-contained page: per exposure its score and why, verdict, thumbnails of the
CCDs that drove the score, its nearest labelled look-alikes, and the ``vec labels add`` line to copy."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from query.gateway import read_pixels
from query.reports.focal_plane import GOOD_COLOUR, category_colour
from query.reports.thumbnails import html_page, png_data_uri, thumbnail_png, write_text
from query.review import ReviewQueue
from vecstore.store import Store

_CSS = """
.entry { background: #fff; border: 1px solid #ccc; border-radius: 4px; padding: 8px 12px; margin: 12px 0; }
.row { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.card { width: 150px; font-size: 11px; font-family: ui-monospace, Menlo, Consolas, monospace;
        border: 3px solid #999; padding: 3px; box-sizing: border-box; }
.card img { width: 138px; height: 138px; object-fit: contain; background: #111; display: block; }
code { background: #eef; padding: 2px 4px; user-select: all; }
ul { margin: 4px 0; font-size: 13px; }
"""


def _locations(store: Store, ids: list[int]) -> dict[int, tuple[str, str]]:
    if not ids:
        return {}
    rows = store.query(f"SELECT ccd_id, path, hdu FROM ccds WHERE ccd_id IN ({', '.join(map(str, ids))})")
    return {r["ccd_id"]: (r["path"], r["hdu"]) for r in rows.to_pylist()}


def _png(location: tuple[str, str] | None) -> bytes:
    pixels = read_pixels(*location) if location else None
    return thumbnail_png(pixels if pixels is not None else np.zeros((2, 1), np.float32), max_size=160)


def _card(png: bytes, caption: str, label: str | None) -> str:
    colour = "#999" if not label else GOOD_COLOUR if label == "good" else category_colour(label)
    return (
        f'<div class="card" style="border-color:{colour}"><img src="{png_data_uri(png)}" '
        f'alt="{html.escape(caption)}"><div>{html.escape(caption)}</div></div>'
    )


def review_page(store: Store, queue: ReviewQueue, out: Path) -> Path:
    """Write the page; returns ``out``. Pixels are read again from each CCD's file (grey when gone)."""
    ids = sorted(
        {c.ccd_id for e in queue.entries for c in e.shown}
        | {n["ccd_id"] for e in queue.entries for n in e.lookalikes}
    )
    where = _locations(store, ids)
    blocks = []
    for e in queue.entries:
        v = e.result.verdict
        verdict = f"BAD ({v.category}, p={v.mean_prob:.2f})" if v.is_bad else "good"
        shown = "".join(
            _card(
                _png(where.get(c.ccd_id)),
                f"{e.expnum}/{c.ccdname} p_bad={c.verdict.p_bad:.2f}{' unknown' if c.unknown else ''}",
                c.verdict.label,
            )
            for c in e.shown
        )
        looks = "".join(
            _card(
                _png(where.get(n["ccd_id"])),
                f"{n['expnum']}/{n['ccdname']} {n['label']} L1={n['distance']:.3g}",
                n["label"],
            )
            for n in e.lookalikes
        )
        reasons = "".join(f"<li>{html.escape(r)}</li>" for r in e.reasons) or "<li>nothing stands out</li>"
        blocks.append(
            f'<div class="entry"><h2>#{e.rank} exposure {e.expnum} &mdash; score {e.score:.2f} &mdash; '
            f"verdict {html.escape(verdict)}, {v.n_bad} of {v.n_ccds} CCDs flagged</h2>"
            f'<ul>{reasons}</ul><div>CCDs that drove the score:</div><div class="row">{shown}</div>'
            f'<div>nearest labelled look-alikes:</div><div class="row">{looks}</div>'
            f"<p>record a verdict: <code>{html.escape(e.command)}</code></p></div>"
        )
    title = (
        f"review: {len(queue.entries)} of {queue.n_candidates} unlabelled exposures "
        f"(model {queue.model_version})"
    )
    body = f"<h1>{html.escape(title)}</h1>\n" + "\n".join(blocks)
    return write_text(out, html_page(title, body, css=_CSS))
