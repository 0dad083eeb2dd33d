"""What made the vectors of a store: embedder, its weights, the preprocess preset, the dimension, and what
the vector's components are (its layout).

Stored in ``store_meta`` at the first commit; every later commit and every query that embeds a new file
must present the same, or is refused with an error that names both sides. The layout travels with it, so
every way vectors reach a store (either engine, ``vec merge``) keeps it: ``feature_names`` name the
components of a ``qa`` vector (the SQL view ``features``), ``blocks`` split a hybrid vector into the parts
the post-processor balances.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from vecstore.errors import ProvenanceError


@dataclass(frozen=True)
class Provenance:
    embedder: str
    preset: str
    dim: int
    weights_sha256: str = ""
    feature_names: tuple[str, ...] | None = None  # one name per component, when each means something
    blocks: tuple[tuple[str, int], ...] | None = None  # (name, width) of the concatenated parts of a hybrid

    @property
    def preset_name(self) -> str | None:
        """The preset's registry name (``preset`` is stored as NAME@VERSION, or "none" for embedders
        that take no preset), to build the same embedder again."""
        return None if self.preset == "none" else self.preset.split("@")[0]

    def as_meta(self) -> dict[str, str]:
        return {
            "embedder": self.embedder,
            "preset": self.preset,
            "dim": str(self.dim),
            "weights_sha256": self.weights_sha256,
            **self.layout_meta(),
        }

    def layout_meta(self) -> dict[str, str]:
        """The layout as ``store_meta`` keeps it (JSON lists), only the parts this embedder has."""
        layout = {}
        if self.feature_names:
            layout["feature_names"] = json.dumps(list(self.feature_names))
        if self.blocks:
            layout["blocks"] = json.dumps([list(block) for block in self.blocks])
        return layout

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> Provenance | None:
        if "embedder" not in meta:
            return None
        names = json.loads(meta["feature_names"]) if "feature_names" in meta else None
        blocks = json.loads(meta["blocks"]) if "blocks" in meta else None
        return cls(
            embedder=meta["embedder"],
            preset=meta["preset"],
            dim=int(meta["dim"]),
            weights_sha256=meta.get("weights_sha256", ""),
            feature_names=tuple(names) if names else None,
            blocks=tuple((str(name), int(width)) for name, width in blocks) if blocks else None,
        )

    def same_vectors(self, other: Provenance) -> bool:
        """Whether vectors of ``other`` are comparable with these (the layout follows from the rest)."""
        return (self.embedder, self.preset, self.dim, self.weights_sha256) == (
            other.embedder,
            other.preset,
            other.dim,
            other.weights_sha256,
        )

    def with_layout_of(self, other: Provenance) -> Provenance:
        """This provenance, with ``other``'s layout where this one has none (stores built before the
        layout travelled with the provenance)."""
        return replace(
            self,
            feature_names=self.feature_names or other.feature_names,
            blocks=self.blocks or other.blocks,
        )

    def describe(self) -> str:
        weights = f", weights sha256 {self.weights_sha256[:12]}" if self.weights_sha256 else ""
        return f"embedder '{self.embedder}' with preset '{self.preset}' ({self.dim}-d{weights})"


@dataclass(frozen=True)
class VectorLayout:
    """What the post-processor needs to know of a store's vectors, read once from its provenance: the
    embedder (which scaler ``auto`` means), the blocks of a hybrid and the names of ``qa`` components."""

    embedder: str = ""
    blocks: tuple[tuple[str, int], ...] | None = None
    feature_names: tuple[str, ...] | None = None

    @classmethod
    def of(cls, provenance: Provenance | None) -> VectorLayout:
        """The layout of a store's vectors; empty for a store that has none yet."""
        if provenance is None:
            return cls()
        return cls(provenance.embedder, provenance.blocks, provenance.feature_names)

    @property
    def block_list(self) -> list[list] | None:
        """The blocks as a model's settings store them (JSON lists); None for a one-block vector."""
        return [list(block) for block in self.blocks] if self.blocks else None


def check_compatible(stored: Provenance, offered: Provenance, store_path: str) -> None:
    """Refuse vectors that would not be comparable with the store's."""
    if stored.same_vectors(offered):
        return
    raise ProvenanceError(
        f"store {store_path} holds vectors from {stored.describe()}, but this run uses "
        f"{offered.describe()}; {_what_to_do(stored, offered)}"
    )


def _what_to_do(stored: Provenance, offered: Provenance) -> str:
    """The way out: the same embedder again or, when the qa statistics themselves changed (a newer vec:
    qa's weights "sha256" is its version, e.g. qa-v3, and a hybrid's dimension grows), a fresh store, as no
    option brings the old statistics back."""
    has_qa = "qa" in offered.embedder.split("+")
    qa_changed = stored.dim != offered.dim or _qa_version(stored) != _qa_version(offered)
    if stored.embedder == offered.embedder and has_qa and qa_changed:
        return (
            "the qa statistics of this vec differ from the store's, and vectors of two versions are not "
            "comparable: ingest the files again into a new store (vec --store NEW ingest ...), then import "
            "the labels and run vec train there"
        )
    return "use the same embedder, preset and weights, or another store"


def _qa_version(provenance: Provenance) -> str:
    return provenance.weights_sha256 if provenance.weights_sha256.startswith("qa-") else ""
