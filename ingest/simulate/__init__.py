"""A DECam survey simulator with known artifacts, for tests, benchmarks and ``vec demo``.

:func:`~ingest.simulate.survey.simulate_survey` writes fpacked CP-like exposures and their truth lists;
its parts: observing conditions, focal-plane geometry, stars and galaxies, effects, the eleven artifact
categories, FITS writing and the truth lists.
"""
