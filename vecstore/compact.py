"""``vec compact``: merge small embedding parts into large ones, under the store's commit protocol.

An ingest commits one part per batch (16 CCDs by default), so a large store has many small parts, and a
whole-store read opens each of them. Compaction rewrites groups of small parts as single parts of up to
``[store] compact_target_rows`` rows. Each group is one commit (:meth:`Store.replace_parts`): the new part
is made durable under a temp name and renamed, one catalog transaction moves the CCDs to it and un-commits
the old parts, and the old files are removed after. A ``kill -9`` at any moment leaves a consistent store;
the parts it leaves unreferenced are removed on the next writable open (:meth:`Store.recover`).

Rules that keep compaction simple and safe:

- only parts of fewer than the target rows are merged, and a group never exceeds the target, so a part
  that reached the target is never rewritten again (each vector is rewritten a bounded number of times);
- a group holds parts of one run and one dtype: ``embedding_parts.run_id`` still names the run that
  committed every CCD of a part (``vec merge`` relies on it), and vectors are copied in their stored dtype,
  so they stay bitwise the same;
- rows of the new part are sorted by ccd_id, so one exposure's CCDs sit in one or two row groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from vecstore import parts
from vecstore.errors import BadInputError
from vecstore.store import PartRecord, Store


@dataclass(frozen=True)
class CompactResult:
    parts_before: int
    parts_after: int
    parts_merged: int  # old parts replaced
    parts_written: int  # new parts
    rows_moved: int

    def describe(self) -> str:
        if not self.parts_written:
            return f"nothing to compact: {self.parts_before:,} parts"
        return (
            f"merged {self.parts_merged:,} parts ({self.rows_moved:,} CCDs) into {self.parts_written:,}: "
            f"{self.parts_before:,} -> {self.parts_after:,} parts"
        )


def format_parts(summary: dict[str, int]) -> str:
    """One line for ``vec info``: the parts of :meth:`Store.parts_summary`."""
    return (
        f"parts       {summary['parts']:,} ({summary['small_parts']:,} under the "
        f"{summary['target_rows']:,}-row compaction "
        f"target); rows per part min {summary['rows_min']:,} median {summary['rows_median']:,} max "
        f"{summary['rows_max']:,}; {summary['bytes'] / 2**20:.1f} MB"
    )


def plan(records: Iterable[PartRecord], target_rows: int) -> list[list[PartRecord]]:
    """Groups of two or more small parts (fewer than ``target_rows`` rows) to merge, each of one run and
    dtype, packed in part_id order into groups of at most ``target_rows`` rows."""
    if target_rows < 2:
        raise BadInputError(f"compaction target must be at least 2 rows per part, got {target_rows}")
    by_kind: dict[tuple[int | None, str], list[PartRecord]] = {}
    for record in sorted(records, key=lambda r: r.part_id):
        if record.n_rows < target_rows:
            by_kind.setdefault((record.run_id, record.dtype), []).append(record)
    return [group for kind in by_kind.values() for group in _pack(kind, target_rows) if len(group) > 1]


def _pack(records: list[PartRecord], target_rows: int) -> Iterator[list[PartRecord]]:
    group: list[PartRecord] = []
    rows = 0
    for record in records:
        if group and rows + record.n_rows > target_rows:
            yield group
            group, rows = [], 0
        group.append(record)
        rows += record.n_rows
    if group:
        yield group


def compact(store: Store, target_rows: int, groups: list[list[PartRecord]] | None = None) -> CompactResult:
    """Merge ``groups`` (default: :func:`plan` of the store's parts), one commit per group."""
    records = store.part_records()
    if groups is None:
        groups = plan(records, target_rows)
    rows_moved = 0
    for group in groups:
        rows_moved += merge_group(store, group)
    merged = sum(len(g) for g in groups)
    return CompactResult(
        parts_before=len(records),
        parts_after=len(records) - merged + len(groups),
        parts_merged=merged,
        parts_written=len(groups),
        rows_moved=rows_moved,
    )


def merge_group(store: Store, group: list[PartRecord]) -> int:
    """Rewrite ``group`` as one part, rows sorted by ccd_id, values in their stored dtype; rows moved."""
    ids, vectors = zip(*(parts.read_part(store.parts_dir / record.file) for record in group), strict=True)
    all_ids = np.concatenate(ids)
    order = np.argsort(all_ids, kind="stable")
    store.replace_parts(group, all_ids[order], np.concatenate(vectors)[order])
    return len(all_ids)
