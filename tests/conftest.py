"""Shared fixtures: temporary stores, and one full-size DECam exposure written once for the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from vecstore.store import Store


@pytest.fixture
def store(tmp_path):
    with Store.create(tmp_path / "store") as s:
        yield s


@pytest.fixture(scope="session")
def full_size_exposure(tmp_path_factory) -> Path:
    """A fpacked CP exposure of all 62 CCDs at 4094 x 2046 (~8 s to write), alone in its directory.

    Constant sky (noise=0) keeps Rice compression and decompression fast; the factory offsets each CCD's
    sky by its CCDNUM. Tests read it and must not change it.
    """
    from tests.fitsfactory import write_cp_exposure
    from vecstore.decam import ALL_CCDNAMES, CCD_SHAPE

    path = tmp_path_factory.mktemp("full-size") / "c4d_full_ooi_r_v1.fits.fz"
    return write_cp_exposure(path, 700001, ALL_CCDNAMES, CCD_SHAPE, noise=0.0)
