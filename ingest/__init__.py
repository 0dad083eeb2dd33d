"""Files to rows and vectors: sources, FITS reading, preprocessing, embedders, batch embedding, labels, simulator."""
