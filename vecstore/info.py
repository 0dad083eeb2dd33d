"""What ``vec info`` reports: counts, provenance, model versions and disk use of a store."""

from __future__ import annotations

from typing import Any

from vecstore import models
from vecstore.store import Store


def store_info(store: Store, *, verify: bool = False) -> dict[str, Any]:
    meta = store.meta()
    counts = store.counts()
    info: dict[str, Any] = {
        "store": str(store.path),
        "vec_version": meta.get("vec_version"),
        "created_at": meta.get("created_at"),
        "provenance": store.provenance().as_meta() if store.provenance() else None,
        "counts": {
            "exposures": counts["exposures"],
            "ccds_embedded": counts["ccds"],
            "embedding_parts": counts["embedding_parts"],
            "labels": counts["labels"],
            "failures": counts["failures"],
            "runs": counts["runs"],
            "ccd_predictions": counts["ccd_predictions"],
        },
        "models": {"current": models.current_version(store), "versions": models.list_versions(store)},
        "disk_bytes": store.disk_usage(),
    }
    if verify:
        info["verified"] = store.verify()
    return info


def format_info(info: dict[str, Any]) -> str:
    lines = [f"store       {info['store']}  (vec {info['vec_version']}, created {info['created_at']})"]
    prov = info["provenance"]
    lines.append(
        "embedder    "
        + (
            f"{prov['embedder']}  preset {prov['preset']}  dim {prov['dim']}  "
            f"weights sha256 {prov['weights_sha256'][:16] or '-'}"
            if prov
            else "(no vectors yet)"
        )
    )
    lines += [f"{name:<16}{value:>12,}" for name, value in info["counts"].items()]
    m = info["models"]
    lines.append(f"models      current {m['current'] or '-'}; versions {', '.join(m['versions']) or '-'}")
    disk = info["disk_bytes"]
    lines.append("disk        " + "  ".join(f"{k} {_human(v)}" for k, v in disk.items()))
    if "verified" in info:
        lines.append(
            f"verified    {info['verified']['vectors']:,} vectors == {info['verified']['ccds']:,} CCDs"
        )
    return "\n".join(lines)


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
