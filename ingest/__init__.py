"""Files to rows and vectors: sources, FITS, preprocessing, embedders, batch embedding, labels, simulator."""
