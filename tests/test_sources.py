"""ingest.sources: directories, survey-ccds tables, text lists, files -> sorted CCD tasks + failure rows."""

from __future__ import annotations

import gzip
import random
import shutil
from pathlib import Path

import fitsio
import numpy as np
import pytest

from ingest.reader import CCDTask, read_ccd, read_header_meta
from ingest.sources import SourceFailure, expand_sources
from tests.fitsfactory import (
    build_mixed_directory,
    call_without_root,
    world_readable_tempdir,
    write_cp_exposure,
    write_survey_ccds_table,
)
from tests.test_reader import CUTOUT_DIR, REAL_OOI_CUTOUTS
from vecstore.decam import CCD_SHAPE
from vecstore.errors import BadInputError

SURVEY_CCDS_TABLES = sorted(CUTOUT_DIR.glob("testcase*_survey-ccds-1.fits.gz"))


def _reasons(scan, path) -> list[str]:
    return [failure.reason for failure in scan.failures if failure.path == str(path)]


# ----------------------------------------------------------------------------------------------------------
# survey-ccds tables (real legacypipe tables and cutouts)


def _place_images_under_table_names(image_root: Path) -> dict[str, dict]:
    """Copy each real cutout to image_root / image_filename as the tables name it; return rows by file."""
    rows_by_name = {}
    for table in SURVEY_CCDS_TABLES:
        for row in fitsio.read(table, ext=1):
            relative = row["image_filename"].strip()
            destination = image_root / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(CUTOUT_DIR / Path(relative).name, destination)
            rows_by_name[Path(relative).name] = {name: row[name] for name in row.dtype.names}
    return rows_by_name


def test_real_survey_ccds_tables_give_one_task_per_row_and_every_ccd_reads(tmp_path):
    image_root = tmp_path / "images"
    rows_by_name = _place_images_under_table_names(image_root)
    assert sorted(rows_by_name) == sorted(REAL_OOI_CUTOUTS)  # the tables describe every ooi cutout

    scan = expand_sources(SURVEY_CCDS_TABLES, image_root=image_root)

    assert scan.failures == []
    assert len(scan.tasks) == len(REAL_OOI_CUTOUTS) == 17
    for task in scan.tasks:
        name = Path(task.path).name
        expnum, ccdname, band, exptime, airmass, plver, shape = REAL_OOI_CUTOUTS[name]
        row = rows_by_name[name]
        assert task.hdu == 1 and task.path.startswith(str(image_root / "decam" / "CP"))

        meta, pixels = read_ccd(task, release="dr10")

        assert (meta.expnum, meta.ccdname, meta.filter, meta.exptime) == (expnum, ccdname, band, exptime)
        assert (meta.plver, meta.hdu, meta.release, pixels.shape) == (plver, ccdname, "dr10", shape)
        assert (meta.ra, meta.dec) == (row["ra"], row["dec"])  # the table's CCD centre wins over headers
        assert meta.ccd_cuts == (0 if "ccd_cuts" in row else None)  # testcase5 is an older table without it


def test_table_image_filenames_default_to_the_table_directory(tmp_path):
    (tmp_path / "sub").mkdir()
    write_cp_exposure(tmp_path / "sub" / "e.fits.fz", 600001, ["N4", "S4"])
    table = write_survey_ccds_table(
        tmp_path / "ccds.fits.gz",
        [
            {
                "image_filename": "sub/e.fits.fz  ",
                "image_hdu": 2,
                "expnum": 600001,
                "ccdname": "S4 ",
                "ccd_cuts": 0,
            },
            {
                "image_filename": "sub/e.fits.fz  ",
                "image_hdu": -1,
                "expnum": 600001,
                "ccdname": "N4 ",
                "ccd_cuts": 8,
            },
        ],
    )
    scan = expand_sources([table])
    assert scan.failures == []
    path = str(tmp_path / "sub" / "e.fits.fz")
    assert [(task.path, task.hdu) for task in scan.tasks] == [
        (path, 2),
        (path, "N4"),
    ]  # image_hdu -1 -> ccdname
    assert scan.tasks[1].table_meta == {"expnum": 600001, "ccdname": "N4", "ccd_cuts": 8}
    assert [read_ccd(task)[0].ccd_cuts for task in scan.tasks] == [0, 8]


def test_table_rows_with_missing_images_fail_and_the_rest_goes_on(tmp_path):
    write_cp_exposure(tmp_path / "here.fits.fz", 600002, ["N4"])
    table = write_survey_ccds_table(
        tmp_path / "ccds.fits",
        [
            {"image_filename": "here.fits.fz", "image_hdu": 1, "expnum": 600002, "ccdname": "N4"},
            {"image_filename": "gone.fits.fz", "image_hdu": 1, "expnum": 600003, "ccdname": "N4"},
            {"image_filename": "", "image_hdu": 1, "expnum": 600004, "ccdname": "N4"},
        ],
    )
    scan = expand_sources([table])
    assert [Path(task.path).name for task in scan.tasks] == ["here.fits.fz"]
    assert _reasons(scan, tmp_path / "gone.fits.fz") == [
        f"image file not found (named by row 1 of survey-ccds table {table}; image_root {tmp_path})"
    ]
    assert _reasons(scan, table) == [f"row 2 of survey-ccds table {table} has an empty image_filename"]


def test_hdu_named_in_a_table_but_absent_fails_when_read(tmp_path):
    write_cp_exposure(tmp_path / "e.fits.fz", 600005, ["N4"])
    table = write_survey_ccds_table(
        tmp_path / "ccds.fits",
        [{"image_filename": "e.fits.fz", "image_hdu": 3, "expnum": 600005, "ccdname": "N5"}],
    )
    (task,) = expand_sources([table]).tasks
    with pytest.raises(
        BadInputError, match=r"e\.fits\.fz, HDU 3: HDU index 3 does not exist; the file has 2 HDU"
    ):
        read_ccd(task)


# ----------------------------------------------------------------------------------------------------------
# Directories, files, lists


def test_real_cutout_directory_skips_weights_masks_and_tables():
    scan = expand_sources([CUTOUT_DIR])
    assert scan.failures == []
    assert sorted(Path(task.path).name for task in scan.tasks) == sorted(REAL_OOI_CUTOUTS)
    # kept, the ood and oow of 180218 N10 are the same CCD as its ooi: the ooi wins, they are repeats
    kept_all = expand_sources([CUTOUT_DIR], skip_products=())
    assert kept_all.tasks == scan.tasks
    assert [(Path(path).name, reason.split(":")[0]) for path, _, reason in kept_all.failures] == [
        ("c4d_180218_090701_ood_z_ls9.N10.fits", "listed twice"),
        ("c4d_180218_090701_oow_z_ls9.N10.fits", "listed twice"),
    ]


def test_directory_is_searched_recursively_for_every_image_suffix(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_cp_exposure(tmp_path / "a" / "b" / "c4d_1_ooi_r_v1.fits.fz", 600010, ["S4", "N4"])
    write_cp_exposure(tmp_path / "c4d_2_ooi_r_v1.fits", 600011, ["N1"], compress=None)
    plain = write_cp_exposure(tmp_path / "plain.tmp", 600012, ["S1"], compress=None)
    (tmp_path / "c4d_3_ooi_r_v1.fits.gz").write_bytes(gzip.compress(plain.read_bytes()))
    write_cp_exposure(tmp_path / "c4d_1_oow_r_v1.fits.fz", 600010, ["N4"])  # weight map: skipped
    write_cp_exposure(tmp_path / "c4d_1_ood_r_v1.fits.fz", 600010, ["N4"])  # data-quality mask: skipped
    (tmp_path / "notes.txt").write_text("not a source\n")

    scan = expand_sources([tmp_path])

    assert scan.failures == []
    assert [(Path(task.path).relative_to(tmp_path).as_posix(), task.hdu) for task in scan.tasks] == [
        ("a/b/c4d_1_ooi_r_v1.fits.fz", "S4"),  # CCDNUM 28 before N4 (35)
        ("a/b/c4d_1_ooi_r_v1.fits.fz", "N4"),
        ("c4d_2_ooi_r_v1.fits", "N1"),
        ("c4d_3_ooi_r_v1.fits.gz", "S1"),
    ]
    assert all(task.table_meta is None for task in scan.tasks)


def test_text_list_of_files_with_comments_and_hdu_suffixes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    first = write_cp_exposure(data / "first.fits.fz", 600020, ["N4", "S4"])
    second = write_cp_exposure(data / "second.fits.fz", 600021, ["N1", "N2"])
    folder = data / "more"
    folder.mkdir()
    write_cp_exposure(folder / "third.fits.fz", 600022, ["S31"])
    listing = tmp_path / "files.txt"
    listing.write_text(
        "# CCDs to ingest\n"
        "\n"
        "data/first.fits.fz   # relative to the list's directory\n"
        f"{second}[N2]\n"
        f"  {folder}  \n"
        "data/missing.fits.fz\n"
    )
    scan = expand_sources([listing])
    assert [(task.path, task.hdu) for task in scan.tasks] == [  # sorted by path: data/more < data/second
        (str(first), "S4"),
        (str(first), "N4"),
        (str(folder / "third.fits.fz"), "S31"),
        (str(second), "N2"),
    ]
    assert scan.failures == [SourceFailure(str(data / "missing.fits.fz"), None, "no such file or directory")]


def test_a_list_inside_a_list_is_not_followed(tmp_path):
    inner = tmp_path / "inner.txt"
    inner.write_text("whatever.fits\n")
    outer = tmp_path / "outer.txt"
    outer.write_text("inner.txt\n")
    scan = expand_sources([outer])
    assert scan.tasks == []
    assert "lists do not nest" in _reasons(scan, inner)[0]


def test_binary_junk_is_neither_fits_nor_a_list(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 4)
    scan = expand_sources([junk])
    assert _reasons(scan, junk) == ["neither a FITS file nor a UTF-8 text list of files"]


def test_fits_file_given_directly_or_one_hdu_of_it(tmp_path):
    path = write_cp_exposure(tmp_path / "c4d_9_ood_r_v1.fits.fz", 600030, ["N4", "S4", "N31"])
    whole = expand_sources([path])
    assert [task.hdu for task in whole.tasks] == ["S4", "N4", "N31"]  # a named file is read even if "ood"
    one = expand_sources([f"{path}[n31]", f"{path}[1]"])
    assert [task.hdu for task in one.tasks] == [1, "n31"]


def test_missing_sources_become_failures_and_the_rest_goes_on(tmp_path):
    good = write_cp_exposure(tmp_path / "good.fits.fz", 600040, ["N4"])
    scan = expand_sources([tmp_path / "nope", good, tmp_path / "nope.fits.fz[N4]"])
    assert [Path(task.path).name for task in scan.tasks] == ["good.fits.fz"]
    assert scan.failures == [
        SourceFailure(str(tmp_path / "nope"), None, "no such file or directory"),
        SourceFailure(str(tmp_path / "nope.fits.fz"), "N4", "no such file or directory"),
    ]


def test_ccd_filter_by_names_or_predicate(tmp_path):
    path = write_cp_exposure(tmp_path / "e.fits.fz", 600050, ["N4", "S4", "N5"])
    by_name = expand_sources([path], ccd_filter={"n4", "S4"})
    assert [task.hdu for task in by_name.tasks] == ["S4", "N4"]
    by_predicate = expand_sources([path], ccd_filter=lambda task: task.hdu == "N5")
    assert [task.hdu for task in by_predicate.tasks] == ["N5"]


def test_order_does_not_depend_on_the_order_sources_are_given(tmp_path):
    paths = [write_cp_exposure(tmp_path / f"e{i}.fits.fz", 600060 + i, ["N2", "S2", "N1"]) for i in range(4)]
    expected = expand_sources(paths).tasks
    shuffled = paths[:]
    random.Random(1).shuffle(shuffled)
    assert expand_sources(shuffled).tasks == expected
    assert [task.hdu for task in expected[:3]] == ["S2", "N1", "N2"]


# ----------------------------------------------------------------------------------------------------------
# The same CCD listed twice


def test_same_file_and_hdu_listed_twice(tmp_path):
    path = write_cp_exposure(tmp_path / "e.fits.fz", 600070, ["N4"])
    scan = expand_sources([path, f"{path}[N4]", tmp_path])
    assert scan.tasks == [CCDTask(str(path), "N4")]
    # listed three times: identical failure rows are reported once
    assert _reasons(scan, path) == [f"listed twice: same file and HDU as {path} HDU N4; kept that one"]


def test_same_exposure_and_ccd_in_two_files_is_kept_once(tmp_path):
    v1 = write_cp_exposure(tmp_path / "c4d_150411_035242_ooi_z_v1.fits.fz", 600071, ["N4", "S4"])
    ls9 = write_cp_exposure(tmp_path / "c4d_150411_035242_ooi_z_ls9.fits.fz", 600071, ["N4"])
    scan = expand_sources([tmp_path])
    assert [(Path(task.path).name, task.hdu) for task in scan.tasks] == [
        ("c4d_150411_035242_ooi_z_ls9.fits.fz", "N4"),  # first in sorted order
        ("c4d_150411_035242_ooi_z_v1.fits.fz", "S4"),
    ]
    assert _reasons(scan, v1) == [f"listed twice: same EXPNUM 600071 CCD N4 as {ls9} HDU N4; kept that one"]


def test_a_ccd_from_a_table_and_a_directory_keeps_the_table_row(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    path = write_cp_exposure(images / "e.fits.fz", 600072, ["N4"])
    table = write_survey_ccds_table(
        tmp_path / "ccds.fits",
        [{"image_filename": "e.fits.fz", "image_hdu": 1, "expnum": 600072, "ccdname": "N4", "ccd_cuts": 2}],
    )
    scan = expand_sources([images, table], image_root=images)
    assert [(task.hdu, task.table_meta["ccd_cuts"]) for task in scan.tasks] == [(1, 2)]
    assert _reasons(scan, path) == [f"listed twice: same EXPNUM 600072 CCD N4 as {path} HDU 1; kept that one"]


# ----------------------------------------------------------------------------------------------------------
# A directory of good and bad files: every bad one is named with its reason, every good CCD still reads


def _ingest_directory(root: Path) -> tuple[list[int], list[tuple[str, str | None, str]], list[str]]:
    """What an ingest run does: expand, then read every task; bad CCDs become failure rows."""
    scan = expand_sources([root])
    read_ids, failures, messages = [], [tuple(failure) for failure in scan.failures], []
    for task in scan.tasks:
        try:
            read_ids.append(read_ccd(task)[0].ccd_id)
        except BadInputError as error:
            failures.append((error.path, error.hdu, error.reason))
            messages.append(str(error))
    return read_ids, failures, messages


def test_mixed_directory_names_every_bad_file_and_reads_every_good_ccd():
    with (
        world_readable_tempdir() as root
    ):  # the read runs as "nobody" when we are root, see call_without_root
        good_ids, bad = build_mixed_directory(root)
        read_ids, failures, messages = call_without_root(_ingest_directory, root)

    assert good_ids <= set(read_ids)
    assert len(read_ids) == len(set(read_ids))
    for name, words in bad.items():
        reasons = [reason for path, _, reason in failures if Path(path).name == name]
        assert any(words in reason for reason in reasons), (name, words, failures)
    unexpected = {Path(path).name for path, _, _ in failures} - set(bad)
    assert not unexpected, failures
    for message in messages:  # read errors name the file and the HDU
        assert str(root) in message and ", HDU " in message


# ----------------------------------------------------------------------------------------------------------
# A full-size exposure


@pytest.mark.slow
def test_full_size_fpacked_exposure_with_62_ccds_expands_and_its_ccds_read(full_size_exposure):
    scan = expand_sources([full_size_exposure.parent])
    assert scan.failures == [] and len(scan.tasks) == 62
    assert {meta.ccd_id for meta in map(read_header_meta, scan.tasks)} == {
        700001 * 100 + n for n in range(1, 63)
    }
    # pixels of the first, a middle and the last HDU (every one is read by the full-size ingest test)
    for task in (scan.tasks[0], scan.tasks[30], scan.tasks[-1]):
        meta, pixels = read_ccd(task)
        assert pixels.shape == CCD_SHAPE == (4094, 2046) and pixels.dtype == np.float32
        assert float(pixels[0, 0]) == 1000.0 + meta.ccdnum  # the factory offsets each CCD's sky by CCDNUM
