"""One family of errors for everything vec refuses or cannot do.

Each subclasses a built-in so library callers can catch what they expect (``ValueError``,
``FileNotFoundError``...), and the CLI has a single handler that prints the message on one line and exits 1.
Messages say what is wrong, where (file, CCD, key), and what to do about it.
"""

from __future__ import annotations


class VecError(Exception):
    """Base class of every error vec raises on purpose."""


class NotAStoreError(VecError, FileNotFoundError):
    """The path is not a vec store directory."""


class StoreLockedError(VecError, RuntimeError):
    """Another process holds the store (writer lock or the DuckDB file lock) for too long."""


class ProvenanceError(VecError, ValueError):
    """Vectors made by another embedder or preprocess preset than the store's."""


class IndexSpecError(VecError, ValueError):
    """A FAISS factory string that vec refuses (unsupported with the L1 metric, or malformed)."""


class ConfigError(VecError, ValueError):
    """An unknown key, a wrong type, or an unreadable configuration file."""


class ReadOnlyError(VecError, PermissionError):
    """A write was attempted through a read-only path (e.g. ``vec sql`` without ``--write``)."""


class BadInputError(VecError, ValueError):
    """An input that cannot be used (a file, a CCD, an argument's value, a query); the message names it and
    the reason."""


class EmbedderError(VecError, ValueError):
    """Unknown embedder name, missing or incompatible weights."""


class NotTrainedError(VecError, RuntimeError):
    """A query that needs a trained model (post-processor and reference index) on a store without one."""


class NotFoundError(VecError, LookupError):
    """An exposure, CCD, model version or run that the store does not have."""


class TrainingError(VecError, ValueError):
    """The labels cannot make a model: too few labelled exposures or CCDs for what was asked."""


class ConflictError(VecError, ValueError):
    """Two sources disagree about one thing (``vec merge``: a CCD with two different vectors or rows)."""


class InconsistentStoreError(VecError, RuntimeError):
    """The catalog and the embedding parts of a store disagree, or the store predates what this needs."""


class NotInstalledError(VecError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class EngineError(VecError, RuntimeError):
    """An embedding process or a Ray stage failed; the message carries its own error."""
