"""What made the vectors of a store: embedder, its weights, the preprocess preset, the dimension.

Stored in ``store_meta`` at the first commit; every later commit and every query that embeds a new file
must present the same, or is refused with an error that names both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

from vecstore.errors import ProvenanceError


@dataclass(frozen=True)
class Provenance:
    embedder: str
    preset: str
    dim: int
    weights_sha256: str = ""

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
        }

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> Provenance | None:
        if "embedder" not in meta:
            return None
        return cls(
            embedder=meta["embedder"],
            preset=meta["preset"],
            dim=int(meta["dim"]),
            weights_sha256=meta.get("weights_sha256", ""),
        )

    def describe(self) -> str:
        weights = f", weights sha256 {self.weights_sha256[:12]}" if self.weights_sha256 else ""
        return f"embedder '{self.embedder}' with preset '{self.preset}' ({self.dim}-d{weights})"


def check_compatible(stored: Provenance, offered: Provenance, store_path: str) -> None:
    """Refuse vectors that would not be comparable with the store's."""
    same = (stored.embedder, stored.preset, stored.dim) == (offered.embedder, offered.preset, offered.dim)
    if same and stored.weights_sha256 == offered.weights_sha256:
        return
    raise ProvenanceError(
        f"store {store_path} holds vectors from {stored.describe()}, but this run uses "
        f"{offered.describe()}; use the same embedder, preset and weights, or another store"
    )
