"""Label lists -> catalog rows: one reader per format, the category rules, the importer.

- :mod:`~ingest.labels.formats`: which format a file is, and :func:`~ingest.labels.formats.read_labels`;
- :mod:`~ingest.labels.badexp`, :mod:`~ingest.labels.delve`, :mod:`~ingest.labels.fits` (DES FITS tables
  and survey-ccds ``ccd_cuts``): the readers, over :mod:`~ingest.labels.common`;
- :mod:`~ingest.labels.rules`: raw reasons -> vec's categories (``configs/categories.toml``);
- :mod:`~ingest.labels.importer`: read, map and store (``vec labels import``).
"""
