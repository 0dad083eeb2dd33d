"""vec store: catalog (DuckDB), raw embeddings, post-processor, FAISS indexes, config, errors, CLI."""

__version__ = "0.1.0"
