"""The one door from ``query`` to ``ingest``: read and embed a file that is not in the store, as ingest would.

Every query path that meets a new FITS file (``vec classify FILE``, ``vec similar FILE``, ``--add``) comes
through here, so they all build the store's own embedder (from its :class:`~vecstore.provenance.Provenance`)
and round the vectors to the store's on-disk dtype: a file classified on the fly gets exactly the verdict
it gets once ingested. A CCD that cannot be used becomes a failure entry, as in ``vec ingest``; only a
file with no usable CCD is an error. Pictures read the pixels of stored CCDs through here too
(:func:`read_pixels`): this is the only ``query`` module that imports ``ingest`` (tests/test_layout.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vecstore.errors import BadInputError, NotTrainedError, VecError
from vecstore.store import Store


@dataclass
class FileCCDs:
    """The usable CCDs of one file (metadata and pixels) and the ones that failed (path, hdu, reason)."""

    path: str
    metas: list = field(default_factory=list)
    images: list = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    def require_some(self) -> None:
        if not self.metas:
            reasons = "; ".join(
                f"HDU {f['hdu']}: {f['reason']}" if f["hdu"] else f["reason"] for f in self.failures
            )
            raise BadInputError(f"{self.path}: no usable CCD ({reasons or 'no CCD image HDUs'})")


def embedder_for_store(store: Store, weights: str | None = None):
    """The embedder that made this store's vectors, checked against its provenance."""
    from ingest.embedders import create_embedder
    from ingest.engine.driver import embedder_provenance

    provenance = store.provenance()
    if provenance is None:
        raise NotTrainedError(
            f"store {store.path} has no vectors yet, so it cannot say how to embed a new file"
        )
    embedder = create_embedder(provenance.embedder, weights=weights, preset=provenance.preset_name)
    store.check_provenance(embedder_provenance(embedder))
    return embedder


def read_file(path: str | Path, hdu: int | str | None = None, *, limit: int | None = None) -> FileCCDs:
    """Every CCD HDU of ``path`` (or only ``hdu``; or the first ``limit`` usable ones), each read on its
    own so one bad CCD spoils nothing."""
    from ingest.reader import CCDTask, read_ccd
    from ingest.sources import expand_sources

    result = FileCCDs(str(path))
    if hdu is not None:
        tasks = [CCDTask(str(path), hdu)]
    else:
        scan = expand_sources([str(path)])
        tasks = scan.tasks
        result.failures += [{"path": f.path, "hdu": f.hdu, "reason": f.reason} for f in scan.failures]
    for task in tasks:
        if limit is not None and len(result.metas) >= limit:
            break
        try:
            meta, image = read_ccd(task)
        except BadInputError as error:
            result.failures.append(
                {
                    "path": str(path),
                    "hdu": getattr(error, "hdu", str(task.hdu)),
                    "reason": getattr(error, "reason", str(error)),
                }
            )
            continue
        result.metas.append(meta)
        result.images.append(image)
    return result


def read_pixels(path: str, hdu: int | str) -> np.ndarray | None:
    """One CCD's pixels for a picture; None when the file is gone or unreadable (the store keeps vectors,
    not images, so a moved file costs a thumbnail, not the page)."""
    from ingest.reader import CCDTask, read_ccd

    try:
        return read_ccd(CCDTask(path, int(hdu) if str(hdu).isdigit() else hdu))[1]
    except (OSError, VecError):
        return None


def ccd_hdus(path: str) -> list:
    """The CCD image HDUs of a FITS file, by name where they have one."""
    from ingest.reader import list_ccd_hdus

    return list_ccd_hdus(path)


def embed_as_stored(store: Store, embedder, images: list, metas: list) -> np.ndarray:
    """Embed, then round through the store's on-disk dtype (what an ingest would have kept)."""
    vectors = embedder.embed_images(images, [dataclasses.asdict(m) for m in metas])
    dtype = np.float16 if store.embedding_dtype == "float16" else np.float32
    return vectors.astype(dtype).astype(np.float32)


def ingest_files(store: Store, paths: list[str], release: str, weights: str | None = None):
    """Add FITS files to the store with the store's own embedder and preset (``vec classify --add``)."""
    from ingest.engine.driver import IngestOptions
    from ingest.engine.local import ingest

    provenance = store.provenance()
    if provenance is None:
        raise NotTrainedError(
            f"store {store.path} has no vectors yet: ingest a survey with `vec ingest` first"
        )
    options = IngestOptions.from_config(  # the store's [ingest] section, the store's own embedder
        store.config.ingest,
        release=release,
        embedder=provenance.embedder,
        preset=provenance.preset_name or "",  # "" = the embedder's default (none for qa)
        weights=weights,
        workers=0,  # one file: reading it in this process is quicker than starting workers
    )
    return ingest(store, paths, options)


def added_expnums(store: Store, summary, paths: list[str]) -> list[int]:
    """Exposures an :func:`ingest_files` run committed, or that those paths already had in the store."""
    listing = [str(p) for p in paths]
    marks = ", ".join("?" for _ in listing)
    rows = store.query(
        f"SELECT DISTINCT expnum FROM ccds WHERE run_id = ? OR path IN ({marks}) ORDER BY expnum",
        [summary.run_id, *listing],
    )
    return rows.column("expnum").to_pylist()
