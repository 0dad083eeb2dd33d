"""Batch embedding: one driver (plan, commit, corpus updates) and the engines that feed it batches.

- :mod:`~ingest.engine.local`: DataLoader workers on one node, one process per device;
- :mod:`~ingest.engine.ray`: the same per-batch work as Ray Data stages on a cluster (``--engine ray``).
"""
