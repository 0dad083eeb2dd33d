"""ingest.reader: CCD pixels and catalog metadata from real CP cutouts, generated CP-like and bad files."""

from __future__ import annotations

import gzip
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ingest.reader import (
    CCDMeta,
    CCDTask,
    list_ccd_hdus,
    nonfinite_fraction,
    read_ccd,
    read_header_meta,
    sexagesimal_to_degrees,
)
from tests.fitsfactory import (
    call_without_root,
    world_readable_tempdir,
    write_cp_exposure,
    write_not_fits,
    write_survey_ccds_table,
    write_truncated,
    write_zero_byte,
)
from vecstore.decam import ccdnum_for
from vecstore.errors import BadInputError

CUTOUT_DIR = Path(__file__).parent / "data" / "decam-cutouts"

# Header values printed once from each real ooi cutout (fitsio, primary + CCD header):
# file name -> (EXPNUM, EXTNAME, band, EXPTIME, AIRMASS, PLVER, pixel shape)
REAL_OOI_CUTOUTS = {
    "c4d_140818_232043_ooi_z_ls9.N12.fits": (349590, "N12", "z", 118.0, 1.36, "V4.8.2a", (51, 41)),
    "c4d_150110_053718_ooi_z_ls9.S11.fits": (396388, "S11", "z", 150.0, 1.74, "V4.8.2a", (100, 100)),
    "c4d_150110_053718_ooi_z_ls9.S4.fits": (396388, "S4", "z", 150.0, 1.74, "V4.8.2a", (100, 100)),
    "c4d_150329_083320_ooi_r_ls9.N11.fits": (425858, "N11", "r", 68.0, 1.36, "V4.8.2a", (51, 41)),
    "c4d_150329_083505_ooi_g_ls9.N11.fits": (425859, "N11", "g", 79.0, 1.36, "V4.8.2a", (51, 41)),
    "c4d_150411_035242_ooi_z_v1-N10.fits": (431608, "N10", "z", 114.0, 1.77, "V3.6.2", (150, 150)),
    "c4d_150412_073257_ooi_z_ls9.N11.fits": (432164, "N11", "z", 80.0, 1.36, "V4.8.2a", (51, 41)),
    "c4d_170316_062107_ooi_z_ls9.N2.fits": (630780, "N2", "z", 107.0, 1.8, "V4.8.2", (251, 245)),
    "c4d_171113_061941_ooi_r_ls9.S4.fits": (695773, "S4", "r", 88.0, 2.19, "V4.8.2a", (100, 101)),
    "c4d_180218_090701_ooi_z_ls9.N10.fits": (722778, "N10", "z", 99.0, 1.62, "V4.8.2a", (51, 41)),
    "c4d_180518_044138_ooi_r_ls9.N12.fits": (747382, "N12", "r", 75.0, 1.38, "V4.8.2a", (51, 41)),
    "c4d_180809_002630_ooi_g_ls9.N12.fits": (763152, "N12", "g", 93.0, 1.37, "V4.8.2a", (51, 41)),
    "c4d_180908_000426_ooi_g_ls9.N10.fits": (770496, "N10", "g", 100.0, 1.64, "V4.8.2a", (50, 41)),
    "c4d_181104_072440_ooi_g_ls9.S4.fits": (790643, "S4", "g", 140.0, 1.98, "V4.8.2a", (100, 101)),
    "c4d_181214_050844_ooi_g_ls9.S9.fits": (802955, "S9", "g", 200.0, 1.88, "V4.8.2a", (101, 101)),
    "c4d_181215_045000_ooi_z_ls9.S9.fits": (803277, "S9", "z", 88.0, 1.95, "V4.8.2a", (101, 101)),
    "c4d_181215_051332_ooi_r_ls9.S9.fits": (803291, "S9", "r", 60.0, 1.84, "V4.8.2a", (101, 101)),
}


def assert_bad_input(excinfo: pytest.ExceptionInfo, path: str | Path, hdu: str | None, *words: str) -> None:
    """The error names the file, the HDU (when given) and says what is wrong."""
    message = str(excinfo.value)
    assert str(path) in message
    if hdu is not None:
        assert f"HDU {hdu}" in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert excinfo.value.path == str(path)
    assert excinfo.value.hdu == hdu


# ----------------------------------------------------------------------------------------------------------
# Real CP cutouts


def test_every_real_ooi_cutout_is_in_the_expectations():
    assert sorted(path.name for path in CUTOUT_DIR.glob("*_ooi_*.fits")) == sorted(REAL_OOI_CUTOUTS)


@pytest.mark.parametrize("name", sorted(REAL_OOI_CUTOUTS))
def test_real_cutout_reads_from_headers(name):
    expnum, ccdname, band, exptime, airmass, plver, shape = REAL_OOI_CUTOUTS[name]
    path = CUTOUT_DIR / name
    assert list_ccd_hdus(path) == [ccdname]

    meta, pixels = read_ccd(CCDTask(path, ccdname), release="test")

    assert (meta.expnum, meta.ccdname, meta.filter, meta.exptime) == (expnum, ccdname, band, exptime)
    assert (meta.airmass, meta.plver, meta.hdu, meta.release) == (airmass, plver, ccdname, "test")
    assert meta.ccdnum == ccdnum_for(ccdname)
    assert meta.ccd_id == expnum * 100 + meta.ccdnum
    assert meta.mjd_obs > 56000 and 0 <= meta.ra < 360 and -90 <= meta.dec <= 90
    assert meta.ccd_cuts is None and meta.ebv is None  # these come only from a survey-ccds table
    assert pixels.shape == shape and pixels.dtype == np.float32 and pixels.dtype.isnative
    assert np.isfinite(pixels).all()


def test_real_cutout_without_band_keyword_takes_first_word_of_filter():
    meta = read_header_meta(CCDTask(CUTOUT_DIR / "c4d_150411_035242_ooi_z_v1-N10.fits", 1))
    assert meta.filter == "z"
    assert meta.plver == "V3.6.2"


def test_ra_dec_prefer_ccd_centre_and_fall_back_to_pointing():
    # this CCD header has CENRA1 = 186.8658, CENDEC1 = 25.31524 (the primary RA/DEC is the pointing)
    centred = read_header_meta(CCDTask(CUTOUT_DIR / "c4d_150411_035242_ooi_z_v1-N10.fits", "N10"))
    assert (centred.ra, centred.dec) == (186.8658, 25.31524)
    # no CENRA1 here: primary RA = '16:17:32.640' (hours), DEC = '12:22:19.200'
    pointing = read_header_meta(CCDTask(CUTOUT_DIR / "c4d_140818_232043_ooi_z_ls9.N12.fits", "N12"))
    assert pointing.ra == pytest.approx(244.386)
    assert pointing.dec == pytest.approx(12.372)


@pytest.mark.parametrize(
    ("text", "hours", "degrees"),
    [
        ("16:17:32.640", True, 244.386),
        ("00:00:00", True, 0.0),
        ("12:22:19.200", False, 12.372),
        ("+25:33:43.8", False, 25.56216667),
        ("-25:33:43.8", False, -25.56216667),
        ("-00:30:00", False, -0.5),  # the sign belongs to the whole angle, not to the 0 degrees
    ],
)
def test_sexagesimal_to_degrees(text, hours, degrees):
    assert sexagesimal_to_degrees(text, hours=hours) == pytest.approx(degrees)


# ----------------------------------------------------------------------------------------------------------
# Generated CP-like exposures


@pytest.mark.parametrize(("compress", "suffix"), [("rice", ".fits.fz"), (None, ".fits")])
def test_generated_exposure_reads_every_ccd_with_metadata(tmp_path, compress, suffix):
    path = write_cp_exposure(
        tmp_path / f"c4d_x_ooi_i_v1{suffix}", 700123, ["N4", "S31", "N31"], compress=compress, band="i",
        exptime=45.0, mjd_obs=58100.5, airmass=1.05, plver="V5.0", ra="01:00:00.00", dec="-10:30:00.0",
    )  # fmt: skip
    assert list_ccd_hdus(path) == ["N4", "S31", "N31"]

    for ccdname in ("N4", "S31", "N31"):
        meta, pixels = read_ccd(CCDTask(path, ccdname))
        assert meta == CCDMeta(
            ccd_id=700123 * 100 + ccdnum_for(ccdname), expnum=700123, ccdname=ccdname,
            ccdnum=ccdnum_for(ccdname), filter="i", exptime=45.0, mjd_obs=58100.5, airmass=1.05,
            plver="V5.0", ra=15.0, dec=-10.5, path=str(path), hdu=ccdname, naxis1=32, naxis2=64,
        )  # fmt: skip
        assert pixels.shape == (64, 32) and pixels.dtype == np.float32
        assert 900 < float(pixels.mean()) < 1100


def test_header_only_read_matches_full_read(tmp_path):
    path = write_cp_exposure(tmp_path / "e.fits.fz", 500001, ["S4"])
    assert read_header_meta(CCDTask(path, "S4")) == read_ccd(CCDTask(path, "S4"))[0]


def test_hdu_by_index_by_name_any_case_and_digit_string(tmp_path):
    path = write_cp_exposure(tmp_path / "e.fits.fz", 500002, ["N4", "S4"])
    metas = [read_header_meta(CCDTask(path, hdu)) for hdu in (2, "S4", "s4", "2")]
    assert {(meta.ccdname, meta.hdu) for meta in metas} == {("S4", "S4")}


def test_unnamed_hdu_is_labelled_by_index_and_named_from_ccdname_keyword(tmp_path):
    path = write_cp_exposure(
        tmp_path / "e.fits.fz", 500003, ["N7"], ccd_header_overrides={"N7": {"EXTNAME": None}}
    )
    assert list_ccd_hdus(path) == [1]
    meta = read_header_meta(CCDTask(path, 1))
    assert (meta.hdu, meta.ccdname, meta.ccdnum) == ("1", "N7", ccdnum_for("N7"))


def test_ccdnum_comes_from_the_decam_name_when_header_has_none(tmp_path):
    path = write_cp_exposure(
        tmp_path / "e.fits.fz", 500004, ["S25"], ccd_header_overrides={"S25": {"CCDNUM": None}}
    )
    assert read_header_meta(CCDTask(path, "S25")).ccdnum == 4


def test_ccdname_comes_from_ccdnum_when_no_keyword_is_a_decam_name(tmp_path):
    overrides = {"im4": {"CCDNAME": None, "DETPOS": None, "CCDNUM": 4}}
    path = write_cp_exposure(tmp_path / "e.fits.fz", 500005, ["im4"], ccd_header_overrides=overrides)
    meta = read_header_meta(CCDTask(path, "im4"))
    assert (meta.ccdname, meta.ccdnum, meta.hdu) == ("S25", 4, "im4")


def test_expnum_from_ccd_header_when_primary_has_none(tmp_path):
    path = write_cp_exposure(
        tmp_path / "e.fits.fz", 1, ["N1"], header_overrides={"EXPNUM": None},
        ccd_header_overrides={"N1": {"EXPNUM": 654321}},
    )  # fmt: skip
    assert read_header_meta(CCDTask(path, "N1")).expnum == 654321


def test_table_row_overrides_and_fills_header_values(tmp_path):
    path = write_cp_exposure(
        tmp_path / "e.fits.fz", 500006, ["N4"], header_overrides={"AIRMASS": None, "PLVER": None}
    )
    row = {  # upper-case names, padded byte strings and numpy scalars, as a FITS table row gives them
        "EXPNUM": np.int64(500006), "CCDNAME": b"N4  ", "FILTER": b"r ", "EXPTIME": np.float32(91.5),
        "MJD_OBS": 58000.5, "AIRMASS": np.float32(1.25), "PLVER": "V4.8.2a ", "RA": 10.5, "DEC": -3.25,
        "CCD_CUTS": np.int64(0x4000), "EBV": np.float32(0.03), "OBJECT": "ignored",
    }  # fmt: skip
    meta = read_header_meta(CCDTask(path, 1, row), release="dr10")
    assert (meta.exptime, meta.mjd_obs, meta.plver, meta.ra, meta.dec) == (
        91.5,
        58000.5,
        "V4.8.2a",
        10.5,
        -3.25,
    )
    assert meta.airmass == pytest.approx(1.25)
    assert (meta.ccd_cuts, meta.release, meta.hdu) == (0x4000, "dr10", "N4")
    assert meta.ebv == pytest.approx(0.03)


def test_blank_table_values_fall_back_to_headers(tmp_path):
    path = write_cp_exposure(tmp_path / "e.fits.fz", 500007, ["N4"], exptime=33.0, plver="V4.9")
    meta = read_header_meta(CCDTask(path, "N4", {"expnum": 500007, "exptime": float("nan"), "plver": "   "}))
    assert (meta.exptime, meta.plver) == (33.0, "V4.9")


def test_expnum_may_come_from_the_table_alone(tmp_path):
    path = write_cp_exposure(tmp_path / "e.fits.fz", 1, ["N4"], header_overrides={"EXPNUM": None})
    assert read_header_meta(CCDTask(path, "N4", {"expnum": 777})).ccd_id == 777 * 100 + ccdnum_for("N4")


def test_integer_pixels_become_native_float32(tmp_path):
    data = np.arange(64 * 32, dtype=">i2").reshape(64, 32)
    path = write_cp_exposure(tmp_path / "e.fits", 500008, ["N4"], compress=None, pixels={"N4": data})
    _, pixels = read_ccd(CCDTask(path, "N4"))
    assert pixels.dtype == np.dtype(np.float32) and pixels.dtype.isnative
    np.testing.assert_array_equal(pixels, data.astype(np.float32))


def test_gzipped_fits_image_reads(tmp_path):
    plain = write_cp_exposure(tmp_path / "e.fits", 500009, ["N4"], compress=None)
    gzipped = tmp_path / "e.fits.gz"
    gzipped.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_ccd(CCDTask(gzipped, "N4"))[0].expnum == 500009


def _read_ccd_id(task: CCDTask) -> int:
    return read_ccd(task)[0].ccd_id


def test_tasks_are_read_in_worker_processes_each_with_its_own_handle(tmp_path):
    path = write_cp_exposure(tmp_path / "e.fits.fz", 500010, ["N1", "N2", "N3", "N4"])
    tasks = [CCDTask(path, hdu) for hdu in list_ccd_hdus(path)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        ids = list(pool.map(_read_ccd_id, tasks))
    assert ids == [500010 * 100 + n for n in (32, 33, 34, 35)]


def test_few_inf_pixels_become_nan_and_are_counted(tmp_path):
    data = np.full((64, 32), 500.0, dtype=np.float32)
    data[0, :4] = np.inf
    data[1, :2] = -np.inf
    data[2, :3] = np.nan
    path = write_cp_exposure(tmp_path / "e.fits", 500011, ["N4"], compress=None, pixels={"N4": data})
    _, pixels = read_ccd(CCDTask(path, "N4"))
    assert not np.isinf(pixels).any()
    assert np.isnan(pixels).sum() == 9
    assert nonfinite_fraction(pixels) == pytest.approx(9 / data.size)


# ----------------------------------------------------------------------------------------------------------
# Bad inputs: one test each, every message names the file, the HDU (when one is concerned) and the problem


def test_zero_byte_file(tmp_path):
    path = write_zero_byte(tmp_path / "c4d_ooi.fits.fz")
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask(path, 1))
    assert_bad_input(excinfo, path, None, "empty file (0 bytes)")
    with pytest.raises(BadInputError, match="empty file"):
        list_ccd_hdus(path)


def test_truncated_fz(tmp_path):
    whole = write_cp_exposure(tmp_path / "whole.fits.fz", 500012, ["N1", "N2", "N3"], shape=(256, 128))
    path = write_truncated(whole, tmp_path / "cut.fits.fz", keep_fraction=0.8)
    assert read_ccd(CCDTask(path, "N1"))[0].ccdname == "N1"  # what survived is still readable
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask(path, "N3"))
    assert_bad_input(excinfo, path, "N3", "truncated")


def test_not_a_fits_file(tmp_path):
    path = write_not_fits(tmp_path / "c4d_ooi.fits.fz")
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask(path, "N4"))
    assert_bad_input(excinfo, path, None, "not a FITS file")


def test_missing_expnum(tmp_path):
    path = write_cp_exposure(tmp_path / "e.fits.fz", 1, ["N4"], header_overrides={"EXPNUM": None})
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask(path, "N4"))
    assert_bad_input(excinfo, path, "N4", "no EXPNUM")


@pytest.mark.parametrize("hdu", [5, "S4"])
def test_hdu_named_in_table_but_absent(tmp_path, hdu):
    path = write_cp_exposure(tmp_path / "e.fits.fz", 500013, ["N4"])
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask(path, hdu, {"expnum": 500013, "ccdname": "S4"}))
    assert_bad_input(excinfo, path, str(hdu), "the file has 2 HDU(s) [0:(no name), 1:N4]")


def test_all_nan_ccd(tmp_path):
    nan = np.full((64, 32), np.nan, dtype=np.float32)
    path = write_cp_exposure(tmp_path / "e.fits.fz", 500014, ["N4"], pixels={"N4": nan})
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask(path, "N4"))
    assert_bad_input(excinfo, path, "N4", "all 2048 pixels are NaN")


def test_all_zero_ccd(tmp_path):
    zeros = np.zeros((64, 32), dtype=np.float32)
    path = write_cp_exposure(tmp_path / "e.fits.fz", 500015, ["N4"], pixels={"N4": zeros})
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask(path, "N4"))
    assert_bad_input(excinfo, path, "N4", "all pixels are 0")


@pytest.mark.parametrize(
    ("fraction", "message"),
    [
        (1.0, "all 2048 pixels are NaN or inf"),
        (0.75, "75.0% of pixels are NaN or inf (more than the 50% allowed)"),
    ],
)
def test_inf_pixels_over_the_limit(tmp_path, fraction, message):
    data = np.full(64 * 32, 500.0, dtype=np.float32)
    data[: int(fraction * data.size)] = np.inf
    path = write_cp_exposure(
        tmp_path / "e.fits", 500016, ["N4"], compress=None, pixels={"N4": data.reshape(64, 32)}
    )
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask(path, "N4"))
    assert_bad_input(excinfo, path, "N4", message)


def test_three_dimensional_image(tmp_path):
    cube = np.ones((3, 64, 32), dtype=np.float32)
    path = write_cp_exposure(tmp_path / "e.fits", 500017, ["N4"], compress=None, pixels={"N4": cube})
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask(path, "N4"))
    assert_bad_input(excinfo, path, "N4", "3-D image of shape (3, 64, 32)")


def test_unreadable_file():
    # root reads files whatever their mode, so the read runs as user "nobody" when the tests run as root
    with world_readable_tempdir() as directory:
        path = write_cp_exposure(directory / "locked.fits.fz", 500018, ["N4"])
        path.chmod(0)
        with pytest.raises(BadInputError) as excinfo:
            call_without_root(read_ccd, CCDTask(path, "N4"))
    assert_bad_input(excinfo, path, None, "permission denied")


def test_directory_with_a_fits_name(tmp_path):
    path = tmp_path / "c4d_ooi.fits.fz"
    path.mkdir()
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask(path, 1))
    assert_bad_input(excinfo, path, None, "is a directory")


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask(tmp_path / "gone.fits.fz", 1))
    assert_bad_input(excinfo, tmp_path / "gone.fits.fz", None, "no such file")


def test_unknown_ccd_name_without_ccdnum(tmp_path):
    overrides = {"XX9": {"CCDNAME": None, "DETPOS": None}}
    path = write_cp_exposure(tmp_path / "e.fits.fz", 500019, ["XX9"], ccd_header_overrides=overrides)
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask(path, "XX9"))
    assert_bad_input(excinfo, path, "XX9", "'XX9' is not a DECam CCD name", "no CCDNUM")


def test_ccdnum_that_disagrees_with_the_ccd_name(tmp_path):
    path = write_cp_exposure(
        tmp_path / "e.fits.fz", 500020, ["N4"], ccd_header_overrides={"N4": {"CCDNUM": 7}}
    )
    with pytest.raises(BadInputError) as excinfo:
        read_header_meta(CCDTask(path, "N4"))
    assert_bad_input(excinfo, path, "N4", "CCDNUM 7 disagrees with CCD name N4")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"expnum": 999}, "table row is for EXPNUM 999 but the file is EXPNUM 500021"),
        ({"ccdname": "S4"}, "table row is for CCD S4 but this HDU holds CCD N4"),
        ({"camera": "90prime"}, "camera '90prime', not DECam"),
    ],
)
def test_table_row_that_does_not_describe_the_hdu(tmp_path, row, message):
    path = write_cp_exposure(tmp_path / "e.fits.fz", 500021, ["N4"])
    with pytest.raises(BadInputError) as excinfo:
        read_header_meta(CCDTask(path, 1, row))
    assert_bad_input(excinfo, path, "N4", message)


def test_a_table_hdu_is_not_a_ccd(tmp_path):
    path = write_survey_ccds_table(tmp_path / "ccds.fits", [{"image_filename": "a.fits", "image_hdu": 1}])
    assert list_ccd_hdus(path) == []
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask(path, 1))
    assert_bad_input(excinfo, path, "1", "is a BINARY_TBL, not an image")


def test_messages_name_the_path_as_given(tmp_path, monkeypatch):
    shutil.copy(CUTOUT_DIR / "c4d_180218_090701_ooi_z_ls9.N10.fits", tmp_path / "copy.fits")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInputError) as excinfo:
        read_ccd(CCDTask("copy.fits", "S4"))
    assert_bad_input(excinfo, "copy.fits", "S4", "no HDU named 'S4'")
