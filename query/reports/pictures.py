"""What ``vec classify`` and ``vec similar`` show a person: text tables, focal-plane pictures, galleries."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from query.classify import ExposureResult, n_unknown
from query.gateway import ccd_hdus, read_pixels
from vecstore.errors import BadInputError
from vecstore.store import Store


def format_classification(result: ExposureResult, max_neighbours: int = 3) -> str:
    v = result.verdict
    head = (
        f"exposure {result.expnum}: {'BAD' if v.is_bad else 'good'}"
        + (f" ({v.category}, p={v.mean_prob:.2f})" if v.is_bad else "")
        + f" - {v.n_bad} of {v.n_ccds} CCDs bad"
        + (f", {n_unknown(result)} unknown (?)" if n_unknown(result) else "")
        + ("" if result.source == "store" else f"  [{result.source}]")
    )
    lines = [
        head,
        f"  {'ccd':<5}{'label':<22}{'prob':>6}{'p_bad':>7}  {'top bad class':<27}"
        "nearest labelled neighbours (label, L1)",
    ]
    for ccd in result.ccds:
        voters = ", ".join(
            f"{n['expnum']}/{n['ccdname']} {n['label']} {n['distance']:.3g}"
            for n in ccd.neighbours[:max_neighbours]
        )
        v = ccd.verdict
        flag = "?" if ccd.unknown else "*" if v.is_bad else " "
        name = ccd.ccdname or str(ccd.ccd_id)
        top = f"{v.top_bad} {v.top_bad_prob:.2f}" if v.top_bad else "-"
        label = f"{v.label} (alone)" if v.alone else v.label  # bad on its own: the single-CCD rule
        lines.append(f" {flag}{name:<5}{label:<22}{v.prob:>6.2f}{v.p_bad:>7.2f}  {top:<27}{voters}")
    for failure in result.failures:
        where = f"HDU {failure['hdu']}" if failure["hdu"] else failure["path"]
        lines.append(f"  !{where}: not classified ({failure['reason']})")
    lines += warning_lines(result.warnings)
    return "\n".join(lines)


def warning_lines(warnings: list[str], width: int = 110) -> list[str]:
    """Each warning as an indented paragraph under ``warning:``, so a terminal or a log shows it whole."""
    return [
        textwrap.fill(warning, width, initial_indent="  warning: ", subsequent_indent=" " * 11)
        for warning in warnings
    ]


def format_classifications(results: list[ExposureResult], pictures: list[Path] = ()) -> str:
    """What ``vec classify`` prints: the rule that decided, each exposure, and the pictures written."""
    lines = [results[0].rule.describe()] if results and results[0].rule else []
    lines += [format_classification(result) for result in results]
    if pictures:
        lines.append("picture(s): " + ", ".join(str(p) for p in pictures))
    return "\n".join(lines)


def format_similar(found, gallery: Path | None = None) -> str:
    """What ``vec similar`` prints: a table of the look-alikes, and the gallery written."""
    import pyarrow as pa

    from vecstore.sql import format_table

    columns = ["rank", "expnum", "ccdname", "filter", "distance", "label", "ccd_id"]
    query = found.query
    lines = [
        f"look-alikes of {query['expnum']}/{query['ccdname']}:",
        format_table(pa.table({c: [h[c] for h in found.hits] for c in columns})),
    ]
    lines += warning_lines(found.warnings)
    if gallery is not None:
        lines.append(f"gallery: {gallery}")
    return "\n".join(lines)


def focal_plane_pictures(store: Store, results: list[ExposureResult], out: Path) -> list[Path]:
    """One picture per exposure: ``out`` itself for one, ``out``'s stem + ``-EXPNUM`` for several."""
    out = Path(out)
    if len(results) == 1:
        return [focal_plane_picture(store, results[0], out)]
    return [
        focal_plane_picture(store, r, out.with_name(f"{out.stem}-{r.expnum}{out.suffix}")) for r in results
    ]


def _locations(store: Store, ccd_ids: list[int]) -> dict[int, tuple[str, str]]:
    if not ccd_ids:
        return {}
    rows = store.query(f"SELECT ccd_id, path, hdu FROM ccds WHERE ccd_id IN ({', '.join(map(str, ccd_ids))})")
    return {r["ccd_id"]: (r["path"], r["hdu"]) for r in rows.to_pylist()}


def focal_plane_picture(store: Store, result: ExposureResult, out: Path) -> Path:
    """``out.png``: CCDs coloured by verdict; ``out.html``: the same with a thumbnail per CCD."""
    from query.reports.focal_plane import focal_plane_html, focal_plane_png
    from query.reports.thumbnails import thumbnail_png

    ccds = [
        {"ccdname": c.ccdname, "label": c.verdict.label, "prob": c.verdict.prob, "is_bad": c.verdict.is_bad}
        for c in result.ccds
        if c.ccdname
    ]
    title = (
        f"exposure {result.expnum}: {'bad, ' + result.verdict.category if result.verdict.is_bad else 'good'}"
    )
    if out.suffix.lower() == ".png":
        focal_plane_png(ccds, out, title)
        return out
    if out.suffix.lower() not in (".html", ".htm"):
        raise BadInputError(f"--plot {out}: give a .png or .html file name")
    thumbnails = {}
    if result.source == "store":
        locations = _locations(store, [c.ccd_id for c in result.ccds])
        for c in result.ccds:
            pixels = read_pixels(*locations[c.ccd_id]) if c.ccd_id in locations else None
            if pixels is not None:
                thumbnails[c.ccdname] = thumbnail_png(pixels, max_size=160)
    else:
        for hdu in ccd_hdus(result.source):
            pixels = read_pixels(result.source, str(hdu))
            if pixels is not None and any(c.ccdname == str(hdu) for c in result.ccds):
                thumbnails[str(hdu)] = thumbnail_png(pixels, max_size=160)
    verdict = {
        "expnum": result.expnum,
        "is_bad": result.verdict.is_bad,
        "category": result.verdict.category,
        "n_bad": result.verdict.n_bad,
        "n_ccds": result.verdict.n_ccds,
    }
    return focal_plane_html(ccds, out, title, thumbnails=thumbnails, verdict=verdict)


def similar_gallery(query: dict, hits: list[dict], out: Path, query_pixels: np.ndarray | None = None) -> Path:
    """The query CCD and its look-alikes as asinh-stretched thumbnails with captions."""
    from query.reports.gallery import similar_gallery_html
    from query.reports.thumbnails import thumbnail_png

    def png(pixels: np.ndarray | None) -> bytes:
        return thumbnail_png(pixels if pixels is not None else np.zeros((2, 1), np.float32), max_size=200)

    first = query_pixels if query_pixels is not None else read_pixels(query["path"], query["hdu"])
    query_card = {
        "png": png(first),
        "caption": f"{query['expnum']}/{query['ccdname']}  {query.get('filter') or ''}",
        "label": query.get("label"),
    }
    cards = [
        {
            "png": png(read_pixels(h["path"], h["hdu"])),
            "distance": h["distance"],
            "label": h["label"],
            "caption": f"{h['expnum']}/{h['ccdname']}  {h.get('filter') or ''}  L1={h['distance']:.3g}  "
            f"label={h['label'] or '-'}",
        }
        for h in hits
    ]
    return similar_gallery_html(
        query_card, cards, out, f"look-alikes of {query['expnum']}/{query['ccdname']}"
    )
