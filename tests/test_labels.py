"""Label importers (ingest/labels/) and the category rules (ingest/labels/rules.py, configs/categories.toml).

The real lists in tests/data/labels must give the counts the data README and the paper quote; small
generated files stand in for other versions of the formats and for bad input.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections import Counter
from pathlib import Path

import fitsio
import numpy as np
import pytest

from ingest.labels.formats import (
    CCD_CUT_BITS,
    LabelFile,
    LabelFormatError,
    LabelRecord,
    base_reason,
    delve_counts,
    detect_source,
    read_ccd_cuts,
    read_decals_badexp,
    read_delve,
    read_des_fits,
    read_labels,
)
from ingest.labels.rules import (
    CATEGORIES,
    IGNORE,
    CategoryRules,
    mapping_table,
    unmapped_reasons,
)
from vecstore.errors import BadInputError, ConfigError

DATA = Path(__file__).parent / "data" / "labels"
BAD_EXPID = DATA / "decam-bad_expid.2023-09.txt"
DELVE = DATA / "delve-exclude.2023-07-26"
SURVEY_CCDS = sorted((DATA / "survey-ccds").glob("testcase*_survey-ccds-1.fits.gz"))


@pytest.fixture(scope="module")
def rules() -> CategoryRules:
    return CategoryRules.load()


@pytest.fixture(scope="module")
def bad_expid() -> LabelFile:
    return read_decals_badexp(BAD_EXPID)


@pytest.fixture(scope="module")
def delve() -> LabelFile:
    return read_delve(DELVE)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- the real bad_expid list -------------------------------------------------------------------------


def test_bad_expid_counts_match_the_data_readme(bad_expid):
    records = bad_expid.records
    assert len(records) == 3121
    assert len({r.expnum for r in records}) == 3110
    assert sum(r.level == "ccd" for r in records) == 6
    flags = Counter(r.flag for r in records)
    assert (flags[3], flags[2], flags[1]) == (596, 262, 73)
    assert bad_expid.warnings == ()


def test_bad_expid_fields_of_typical_lines(bad_expid):
    by_line = {r.line: r for r in bad_expid.records}
    first = by_line[3]  # "346343 expfactor=0.208  seeing=1.400"
    assert (first.expnum, first.flag, first.level) == (346343, None, "exposure")
    assert first.raw_reason == "expfactor=0.208 seeing=1.400"  # whitespace runs collapsed
    assert first.source == "decals-badexp" and first.file == str(BAD_EXPID)
    ccd = by_line[3265]  # "754142-S29 very noisy, slight amp jump, high ccdphrms"
    assert (ccd.expnum, ccd.ccdname, ccd.ccdnum, ccd.level) == (754142, "S29", 1, "ccd")
    assert sum(1 for r in bad_expid.records if r.flag is None and r.raw_reason == "") == 51


def test_bad_expid_same_refers_to_the_line_above(bad_expid, rules):
    dittos = [r for r in bad_expid.records if r.raw_reason.startswith("same")]
    assert [r.line for r in dittos] == [1206, 1207, 1208]
    assert all(r.raw_reason == 'same: windshake. DIQ>3" E-W elong' for r in dittos)
    assert {rules.categorize(r) for r in dittos} == {"Telescope_Moving"}


def test_label_record_is_frozen(bad_expid):
    with pytest.raises(dataclasses.FrozenInstanceError):
        bad_expid.records[0].expnum = 1


# --- the real DELVE lists ----------------------------------------------------------------------------


def test_delve_counts_with_comments_skipped(delve):
    assert delve_counts(delve.records) == (8633, 36, 51383)


def test_delve_counts_like_the_reference_script():
    labels = read_delve(DELVE, count_commented_problem_lines=True)
    assert delve_counts(labels.records) == (8634, 37, 51445)
    rho = [r for r in labels.records if r.raw_reason == "Rho Ophiuchi"]
    assert [(r.expnum, r.level, Path(r.file).name, r.line) for r in rho] == [
        (844998, "exposure", "problem-y6.txt", 33)
    ]


def test_delve_reasons_and_sub_reasons(delve):
    ccd_reasons = Counter(r.raw_reason for r in delve.records if r.level == "ccd")
    assert ccd_reasons["Ghost/Scatter"] == 16141
    assert ccd_reasons["Bad CCD"] == 4141  # ccd2, ccd41, ccd46 files; their SQL comments are not reasons
    assert ccd_reasons["Noise: Backplane 4"] == 40
    assert ccd_reasons["Streak: Airplane"] == 104
    assert not any("DECADE" in reason or "select" in reason for reason in ccd_reasons)
    assert {base_reason(r) for r in delve.records if r.level == "ccd"} == {
        "Ghost/Scatter",
        "Bad CCD",
        "Noise",
        "Streak",
    }


def test_delve_ccd_names_come_from_ccdnum_when_the_name_is_nan(delve):
    # y0/ghost-scatter-y0.txt line 2: "20121101  145507 nan nan 14"
    record = next(r for r in delve.records if Path(r.file).name == "ghost-scatter-y0.txt" and r.line == 2)
    assert (record.expnum, record.ccdnum, record.ccdname, record.level) == (145507, 14, "S15", "ccd")


def test_delve_reports_name_and_number_that_disagree(delve):
    assert [(Path(w.file).name, w.line) for w in delve.warnings] == [
        ("ghost-scatter-y0.txt", 16),
        ("ghost-scatter-y0.txt", 39),
    ]
    assert "S20" in delve.warnings[0].message and "20121103  146603  71 S20   9" in str(delve.warnings[0])
    record = next(r for r in delve.records if Path(r.file).name == "ghost-scatter-y0.txt" and r.line == 16)
    assert (record.ccdnum, record.ccdname) == (9, "S21")  # CCDNUM wins, as in make_exclude.py


def test_delve_single_file_and_detection():
    problem = read_labels(DELVE / "y6" / "problem-y6.txt")
    assert len(problem.records) == 37 and all(r.level == "exposure" for r in problem.records)
    assert detect_source(DELVE) == "delve"
    assert detect_source(DELVE / "y4" / "ccd2-y4.txt") == "delve"
    assert detect_source(BAD_EXPID) == "decals-badexp"


def test_delve_counts_definitions_on_a_small_tree(tmp_path):
    tree = tmp_path / "exclude"
    (tree / "y1").mkdir(parents=True)
    write(
        tree / "y1" / "problem-y1.txt",
        "#Nite           Exposure        Problem\n"
        "20130816        226942          Clouds \n"
        "20130816\t226943\tTelescope  Tracking\n"  # tabs, single spaces inside: still read
        "#20130817        226944          Canopus\n",
    )
    write(
        tree / "y1" / "noise-y1.txt",
        "#date     expnum ccd id ccdnum\n"
        "# Backplane 4\n"
        "20131124  257828 nan nan  28\n"
        "20131124  257828 nan nan  28\n"  # listed twice: two rows, like the reference script
        "20131124  226942 nan N4  nan\n"  # name only: CCDNUM from the name
        "# DECADE Addition\n"  # provenance, keeps the sub-reason
        "20131125  257829 nan nan  01\n",
    )
    write(tree / "y1" / "streak-y1.txt", "#date     expnum ccd id ccdnum\n")  # header only
    labels = read_delve(tree)
    assert [r.raw_reason for r in labels.records] == [
        "Noise: Backplane 4",
        "Noise: Backplane 4",
        "Noise: Backplane 4",
        "Noise: Backplane 4",
        "Clouds",
        "Telescope Tracking",
    ]
    assert [r.ccdname for r in labels.records[:4]] == ["S4", "S4", "N4", "S29"]
    assert delve_counts(labels.records) == (4, 3, 4 + 2 * 62)
    commented = read_delve(tree, count_commented_problem_lines=True)
    assert delve_counts(commented.records) == (5, 4, 4 + 3 * 62)


def test_delve_file_names_give_reasons(tmp_path):
    header = "#date expnum ccd id ccdnum\n"
    write(tmp_path / "readout-y9.txt", header + "20200101 900000 nan nan 5\n")
    write(tmp_path / "ccd31-y9.txt", header + "20200101 900001 nan S7 31\n")
    write(tmp_path / "processing-y01.txt", header + "# PSF failure\n20131104  250897 nan nan  49\n")
    reasons = sorted(r.raw_reason for r in read_delve(tmp_path).records)
    assert reasons == ["Bad CCD", "Processing: PSF failure", "Readout"]


# --- DES-style FITS exclude tables -------------------------------------------------------------------


def write_des_table(path: Path, columns: dict[str, np.ndarray]) -> Path:
    table = np.zeros(len(next(iter(columns.values()))), dtype=[(n, a.dtype) for n, a in columns.items()])
    for name, values in columns.items():
        table[name] = values
    fitsio.write(str(path), table, clobber=True)
    return path


def test_des_fits_table(tmp_path):
    path = write_des_table(
        tmp_path / "des_y6_exclude.fits",
        {
            "EXPNUM": np.array([229341, 229341, 480000, 500000], dtype=np.int32),
            "CCDNUM": np.array([4, 0, 62, 63], dtype=np.int16),
            "REASON": np.array([b"Ghost/Scatter  ", b"Telescope Moving", b"NObjects", b"Noise"], dtype="S16"),
            "ANALYST": np.array([b"rgruendl", b"", b"kadrlica", b"x"], dtype="S10"),
        },
    )
    assert detect_source(path) == "des-fits"
    labels = read_labels(path)
    fields = [
        (r.expnum, r.level, r.ccdnum, r.ccdname, r.raw_reason, r.analyst, r.line) for r in labels.records
    ]
    assert fields == [
        (229341, "ccd", 4, "S25", "Ghost/Scatter", "rgruendl", 1),
        (229341, "exposure", None, None, "Telescope Moving", None, 2),  # CCDNUM 0 = whole exposure
        (480000, "ccd", 62, "N31", "NObjects", "kadrlica", 3),
    ]
    assert [(w.line, "63" in w.message) for w in labels.warnings] == [(4, True)]
    assert "expnum=500000" in labels.warnings[0].content


def test_des_fits_without_ccdnum_is_exposure_level(tmp_path):
    path = write_des_table(
        tmp_path / "exposures.fits",
        {"expnum": np.array([1, 2], dtype=np.int64), "reason": np.array(["Clouds", "PSF"], dtype="U8")},
    )
    records = read_des_fits(path).records
    assert [(r.expnum, r.level, r.analyst) for r in records] == [(1, "exposure", None), (2, "exposure", None)]


# --- survey-ccds ccd_cuts ----------------------------------------------------------------------------


def test_ccd_cut_bits_are_legacypipes():
    assert len(CCD_CUT_BITS) == 20
    assert CCD_CUT_BITS["badexp_file"] == 0x200 and CCD_CUT_BITS["depth_cut_2"] == 0x40000
    assert CCD_CUT_BITS["plver"] == 0x80000
    assert sorted(CCD_CUT_BITS.values()) == [1 << i for i in range(20)]


def test_generated_survey_ccds_table(tmp_path):
    table = np.zeros(4, dtype=[("EXPNUM", ">i8"), ("CCDNAME", "S4"), ("CAMERA", "S6"), ("CCD_CUTS", ">i4")])
    table["EXPNUM"] = [722778, 770496, 432164, 425859]
    table["CCDNAME"] = [b"N10 ", b"s4", b"N11", b"CCD1"]
    table["CAMERA"] = [b"decam ", b"decam", b"decam", b"mosaic"]
    table["CCD_CUTS"] = [0x200 | 0x1000, 0, 0x80000 | 0x100000, 0x1]
    path = tmp_path / "survey-ccds-decam-dr10.fits.gz"
    fitsio.write(str(path), table, clobber=True)
    assert detect_source(path) == "ccd-cuts"
    labels = read_ccd_cuts(path)
    fields = [(r.expnum, r.ccdname, r.ccdnum, r.flag, r.raw_reason, r.line) for r in labels.records]
    assert fields == [
        (722778, "N10", 41, 0x200, "badexp_file", 1),
        (722778, "N10", 41, 0x1000, "seeing_bad", 1),
        (432164, "N11", 42, 0x80000, "plver", 3),
        (432164, "N11", 42, 0x100000, "unknown_bit_0x100000", 3),
    ]
    assert all(r.level == "ccd" and r.source == "ccd-cuts" for r in labels.records)
    assert [(w.line, "mosaic" in w.message) for w in labels.warnings] == [(4, True)]


@pytest.mark.parametrize("path", [p for p in SURVEY_CCDS if "testcase5" not in p.name], ids=lambda p: p.name)
def test_real_survey_ccds_tables_have_no_cuts(path):
    assert detect_source(path) == "ccd-cuts"
    assert read_labels(path) == LabelFile((), ())
    assert int(fitsio.read(str(path), columns=["ccd_cuts"])["ccd_cuts"].sum()) == 0


def test_real_survey_ccds_table_without_ccd_cuts_is_refused():
    path = next(p for p in SURVEY_CCDS if "testcase5" in p.name)
    with pytest.raises(BadInputError, match="testcase5.*ccd_cuts"):
        read_ccd_cuts(path)
    with pytest.raises(BadInputError, match="testcase5.*des-fits.*ccd-cuts"):
        detect_source(path)


# --- category rules on the real lists ----------------------------------------------------------------


def test_every_real_reason_is_mapped_or_ignored_but_nebulae(bad_expid, delve, rules):
    records = bad_expid.records + delve.records
    # Nebulae are real sky, not one of the 11 artifacts: unmapped on purpose (configs/categories.toml).
    assert unmapped_reasons(records, rules) == [("delve", "Flame Nebula", 14), ("delve", "Orion Nebula", 6)]
    used = {rules.categorize(r) for r in records}
    assert used == set(CATEGORIES) | {IGNORE, None}


def test_paper_rules_on_the_real_bad_expid(bad_expid, rules):
    categories = Counter(rules.categorize(r) for r in bad_expid.records)
    # flag 1, plus unflagged twilight / bright-sky comments and "hexapod update ... weird saturated features"
    assert categories["Saturated"] == 73 + 5
    by_flag = Counter((r.flag, rules.categorize(r)) for r in bad_expid.records)
    assert by_flag[(1, "Saturated")] == 73 and by_flag[(2, "Clouds_Transparency")] == 262
    empty = [r for r in bad_expid.records if r.raw_reason == "" and r.flag not in (1, 2)]
    assert len(empty) == 52 and {rules.categorize(r) for r in empty} == {IGNORE}


def test_real_delve_reasons_map_as_documented(delve, rules):
    def category_of(reason: str) -> str | None:
        return rules.categorize(next(r for r in delve.records if r.raw_reason == reason))

    expected = {
        "Ghost/Scatter": "Ghost_Scatter",
        "Ghosting": "Ghost_Scatter",
        "Canopus": "Ghost_Scatter",
        "Gamma Eri": "Ghost_Scatter",
        "Flame Nebula": None,  # real sky: unmapped on purpose
        "NObjects": "NObjects",
        "Sky/NObjects": "NObjects",
        "Bad CCD": "Bad_CCD",
        "Readout": "Bad_CCD",
        "Blank": "Bad_CCD",
        "Streak: Lightbulb": "Bad_CCD",
        "Noise": "Noise",
        "Noisy Backplane": "Noise",
        "Noise: Backplane 4": "Noise",
        "Wonky": "Wonky",
        "Junk": "Wonky",
        "Mirror Issue": "Wonky",
        "Telescope Tracking": "Telescope_Moving",
        "Telescope Moving": "Telescope_Moving",
        "Out of Focus": "Out_of_Focus",
        "Clouds": "Clouds_Transparency",
        "PSF": "PSF",
        "Streak": IGNORE,
        "Streak: Airplane": IGNORE,
        "Fringing": IGNORE,
        "Observer Marked": IGNORE,
    }
    assert {reason: category_of(reason) for reason in expected} == expected


def test_mapping_table_covers_all_records(bad_expid, delve, rules):
    records = bad_expid.records + delve.records
    table = mapping_table(records, rules)
    assert sum(count for *_, count in table) == len(records)
    assert ("delve", "Ghost/Scatter", "Ghost_Scatter", 16141) in table
    assert ("decals-badexp", "expfactor=N seeing=N", "Nonoptimal_Exposure", 1709) in table
    assert ("decals-badexp", "expfactor=N seeing=N", "PSF", 14) in table  # expfactor > 1 lines


# --- another version of bad_expid --------------------------------------------------------------------

ANOTHER_BAD_EXPID = (
    "#EXPID\tFlag\tcomments\n"
    "#Flags: 1=possibly saturated; 2=clouds; 3=other source\n"
    "\n"
    "# ===== 2024-02-01 DR11 additions =====\n"
    "900001\t3\texp factor = 0.5\n"
    "900002 expfactor=1.2  seeing=2.300\n"
    "900003 EXPFACTOR=0.40 SEEING=1.1\n"
    "900004\t\t3\tOUT OF FOCUS\n"
    "900005 3   Telescope Tracking failure\n"
    "900006 2\n"
    "900007 1 twilight\n"
    "900008-n4\t3\tBad AMP\n"
    "900008-S30 dead CCD\n"
    "900009-N10  Noisy Backplane\n"
    "900010  3  TRANSPARENCY < 0.5\n"
    "900011 Ghosting from Canopus\n"
    "900012 3 expfactor>0.5 but psf elongated\n"
    "900013 exp factor < 0.3\n"
    "900014 expfactor=1.0\n"
    "900015\n"
    "CCD-level flags from the DR11 review\n"  # an uncommented section header: skipped with a warning
    "900016 3 Trailed; Double Image\n"
)

EXPECTED_ANOTHER = {
    900001: "Nonoptimal_Exposure",
    900002: "PSF",  # expfactor above 1 is not Nonoptimal; the seeing keyword decides
    900003: "Nonoptimal_Exposure",
    900004: "Out_of_Focus",
    900005: "Telescope_Moving",
    900006: "Clouds_Transparency",
    900007: "Saturated",
    900010: "Clouds_Transparency",
    900011: "Ghost_Scatter",
    900012: "PSF",  # "> 0.5" says nothing about being below 1
    900013: "Nonoptimal_Exposure",
    900014: None,  # exactly 1 is not below 1, and nothing else is said: reported as unmapped
    900015: IGNORE,
    900016: "Telescope_Moving",
}


def test_another_bad_expid_version_parses(tmp_path):
    path = write(tmp_path / "decam-bad_expid.txt", ANOTHER_BAD_EXPID)
    labels = read_labels(path)
    assert len(labels.records) == 17
    ccds = [(r.expnum, r.ccdname, r.ccdnum, r.flag, r.raw_reason) for r in labels.records if r.level == "ccd"]
    assert ccds == [
        (900008, "N4", 35, 3, "Bad AMP"),
        (900008, "S30", 2, None, "dead CCD"),
        (900009, "N10", 41, None, "Noisy Backplane"),
    ]
    assert [(w.line, w.content) for w in labels.warnings] == [(21, "CCD-level flags from the DR11 review")]
    assert str(labels.warnings[0]).startswith(f"{path}:21: ")


def test_another_bad_expid_version_categories(tmp_path, rules):
    labels = read_decals_badexp(write(tmp_path / "bad.txt", ANOTHER_BAD_EXPID))
    exposure_level = {r.expnum: rules.categorize(r) for r in labels.records if r.level == "exposure"}
    assert exposure_level == EXPECTED_ANOTHER
    ccd_level = {r.ccdname: rules.categorize(r) for r in labels.records if r.level == "ccd"}
    assert ccd_level == {"N4": "Bad_CCD", "S30": "Bad_CCD", "N10": "Noise"}
    assert unmapped_reasons(labels.records, rules) == [("decals-badexp", "expfactor=1.0", 1)]


@pytest.mark.parametrize(
    ("comment", "nonoptimal"),
    [
        ("expfactor=0.208  seeing=1.400", True),
        ("exp factor = 0.5", True),
        ("exp factor < 0.3", True),
        ("expfactor<1", True),
        ("depth factor <<0.3", True),
        ("expfactor: .7", True),
        ("expfactor=1.2", False),
        ("expfactor=1.0", False),
        ("expfactor <= 1", False),
        ("expfactor > 0.5", False),
        ("expfactor obs", False),
    ],
)
def test_exposure_factor_is_compared_as_a_number(rules, comment, nonoptimal):
    record = LabelRecord("decals-badexp", "exposure", 1, None, None, 3, comment, None, "x", 1)
    assert (rules.categorize(record) == "Nonoptimal_Exposure") is nonoptimal


# --- bad input ----------------------------------------------------------------------------------------


ALL_READERS = [read_decals_badexp, read_delve, read_des_fits, read_ccd_cuts, read_labels]


@pytest.mark.parametrize("reader", ALL_READERS)
def test_missing_file(tmp_path, reader):
    with pytest.raises(BadInputError, match="nowhere.txt.*does not exist"):
        reader(tmp_path / "nowhere.txt")


def test_missing_file_detect(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        detect_source(tmp_path / "nowhere.txt")


@pytest.mark.parametrize("reader", [read_decals_badexp, read_delve, read_labels])
def test_empty_file(tmp_path, reader):
    path = write(tmp_path / "problem-y1.txt", "  \n\n")
    with pytest.raises(BadInputError, match="problem-y1.txt.*empty"):
        reader(path)


def test_empty_file_inside_a_delve_directory_is_a_warning(tmp_path):
    write(tmp_path / "streak-y1.txt", "")
    write(tmp_path / "problem-y1.txt", "20130816  226942  Clouds\n")
    labels = read_delve(tmp_path)
    assert len(labels.records) == 1
    assert [Path(w.file).name for w in labels.warnings] == ["streak-y1.txt"]


def test_comment_only_file_has_no_records(tmp_path):
    labels = read_decals_badexp(write(tmp_path / "bad.txt", "#EXPID Flag comments\n# nothing yet\n"))
    assert labels == LabelFile((), ())


def test_unparsable_lines_are_skipped_with_a_warning(tmp_path):
    text = "346343 expfactor=0.2\nabc123 3 clouds\n346344-XY9 3 bad CCD name\n346345 2\n"
    path = write(tmp_path / "bad.txt", text)
    labels = read_decals_badexp(path)
    assert [r.expnum for r in labels.records] == [346343, 346345]
    assert [(w.file, w.line, w.content) for w in labels.warnings] == [
        (str(path), 2, "abc123 3 clouds"),
        (str(path), 3, "346344-XY9 3 bad CCD name"),
    ]
    assert "not EXPNUM" in labels.warnings[0].message and "XY9" in labels.warnings[1].message


def test_unparsable_delve_lines_are_skipped_with_a_warning(tmp_path):
    write(
        tmp_path / "problem-y1.txt",
        "#Nite  Exposure  Problem\n20130816  226942  Clouds\nClouds 226943\n20130816  226944\n",
    )
    write(
        tmp_path / "noise-y1.txt",
        "#date expnum ccd id ccdnum\n20131124 257828 nan nan 28\n20131124 abc nan nan 28\n"
        "20131124 257829 nan nan nan\n20131124 257830 nan nan 99\n20131124 257831 nan\n",
    )
    labels = read_delve(tmp_path)
    assert [(r.expnum, r.level, r.raw_reason) for r in labels.records] == [
        (257828, "ccd", "Noise"),
        (257829, "exposure", "Noise"),  # every CCD column nan: the line names the whole exposure
        (257831, "exposure", "Noise"),  # ccd nan, id and ccdnum missing: the same
        (226942, "exposure", "Clouds"),
        (226944, "exposure", ""),  # no problem text: the exposure is still excluded, and a note says so
    ]
    assert [(Path(w.file).name, w.line, w.kind) for w in labels.warnings] == [
        ("noise-y1.txt", 3, "unreadable"),
        ("noise-y1.txt", 5, "unreadable"),
        ("problem-y1.txt", 3, "unreadable"),
        ("problem-y1.txt", 4, "note"),
    ]
    assert "20131124 abc nan nan 28" in str(labels.warnings[0])
    assert "99 is not a DECam CCDNUM" in labels.warnings[1].message


def test_wholly_unreadable_text_file(tmp_path):
    path = write(tmp_path / "notes.txt", "this is\nnot a label list\n")
    with pytest.raises(
        LabelFormatError, match=r"notes.txt: not a label list \(formats tried: decals-badexp\)"
    ):
        read_decals_badexp(path)
    with pytest.raises(
        LabelFormatError, match="notes.txt.*formats tried: decals-badexp, delve.*matches none"
    ):
        detect_source(path)


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "bad_expid.txt"
    path.write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(BadInputError, match="bad_expid.txt.*binary"):
        read_decals_badexp(path)


def test_broken_fits_is_refused(tmp_path):
    path = tmp_path / "exclude.fits.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"SIMPLE  =                    T" + b"\x00" * 50)
    with pytest.raises(BadInputError, match="exclude.fits.gz"):
        read_des_fits(path)
    text = write(tmp_path / "exclude.fits", "EXPNUM CCDNUM REASON\n")
    with pytest.raises(BadInputError, match="exclude.fits: not a FITS file"):
        read_des_fits(text)


def test_fits_without_needed_columns(tmp_path):
    path = write_des_table(tmp_path / "t.fits", {"EXPNUM": np.array([1], dtype=np.int32)})
    with pytest.raises(BadInputError, match="t.fits: no table HDU has the columns expnum, reason"):
        read_des_fits(path)


def test_directory_without_lists(tmp_path):
    write(tmp_path / "README.md", "nothing\n")
    with pytest.raises(BadInputError, match="no DELVE list files"):
        read_delve(tmp_path)
    with pytest.raises(BadInputError, match="pass --source one of: decals-badexp, delve, des-fits, ccd-cuts"):
        detect_source(tmp_path)


def test_ambiguous_text_is_refused(tmp_path):
    # Named like a bad_expid list, but holding a DELVE problem list.
    path = write(tmp_path / "decam-bad_expid.txt", "#Nite  Exposure  Problem\n20130816  226942  Clouds\n")
    with pytest.raises(BadInputError, match="any of: decals-badexp, delve"):
        detect_source(path)
    assert read_labels(path, source="delve").records[0].raw_reason == "Clouds"


def test_unknown_source_is_refused():
    with pytest.raises(BadInputError, match="unknown label source 'des'.*ccd-cuts"):
        read_labels(BAD_EXPID, source="des")


# --- rule file errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[rule]]\ncategory = "PSF"\nreasons = "psf"\n', "rule 1: unknown key 'reasons'"),
        ('[[rule]]\ncategory = "Blurry"\n', "unknown category 'Blurry' in key 'category'"),
        ('[[rule]]\nsource = "des"\ncategory = "PSF"\n', "unknown source 'des' in key 'source'"),
        ('[[rule]]\nreason = "("\ncategory = "PSF"\n', "key 'reason' is not a valid regular expression"),
        ('[[rule]]\nquantity = "expfactor"\ncategory = "PSF"\n', "'quantity' and 'below' go together"),
        ('[[rule]]\nflag = "1"\ncategory = "PSF"\n', "key 'flag' must be an integer"),
        ('[[rule]]\nlevel = "amp"\ncategory = "PSF"\n', "key 'level'"),
        ('[[rule]]\nreason = "x"\n', "missing key 'category'"),
        ('version = 2\n[[rule]]\ncategory = "PSF"\n', "unknown key 'version'"),
        ("[[rule]\n", "not valid TOML"),
    ],
)
def test_bad_rule_files(tmp_path, toml, message):
    path = write(tmp_path / "categories.toml", toml)
    with pytest.raises(ConfigError, match=message):
        CategoryRules.load(path)


def test_missing_rule_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        CategoryRules.load(tmp_path / "none.toml")


def test_first_matching_rule_wins_and_none_is_unmapped(tmp_path):
    path = write(
        tmp_path / "r.toml",
        '[[rule]]\nsource = "delve"\nreason = "^cloud"\ncategory = "Clouds_Transparency"\n'
        '[[rule]]\nreason = "cloud|streak"\ncategory = "ignore"\n',
    )
    rules = CategoryRules.load(path)

    def record(source, reason):
        return LabelRecord(source, "exposure", 1, None, None, None, reason, None, "f", 1)

    assert rules.categorize(record("delve", "CLOUDS")) == "Clouds_Transparency"
    assert rules.categorize(record("decals-badexp", "clouds")) == IGNORE
    assert rules.categorize(record("delve", "Wonky")) is None
    assert unmapped_reasons([record("delve", "Wonky")] * 2, rules) == [("delve", "Wonky", 2)]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ghost-scatter-y0.txt", "Ghost/Scatter"),
        ("ghost-scatter-sim.txt", "Ghost/Scatter"),
        ("ghost-scatter.txt", "Ghost/Scatter"),
        ("noise-dr3.txt", "Noise"),
        ("ccd36-sim.txt", "Bad CCD"),
        ("ccd2-y4.txt", "Bad CCD"),
        ("streak-y9.txt", "Streak"),
        ("odd-stuff-y3.txt", "Odd Stuff"),
    ],
)
def test_reason_from_list_file_name_with_any_tag(name, reason):
    from ingest.labels.formats import reason_for_file

    assert reason_for_file(Path(name)) == reason


# --- tolerant reading: a bad line never stops a file or a directory (issues 11 and 13) ----------------


def write_later_delve_tree(root: Path) -> Path:
    """A DELVE-style tree in the looser layout of later lists: CRLF, tabs, trailing blanks, an
    uncommented header, extra and missing trailing columns, a ``nan nan`` line and one junk line."""
    year = root / "exclude" / "y9"
    year.mkdir(parents=True)
    (year / "problem-y9.txt").write_bytes(
        b"#Nite  Exposure  Problem\r\n"
        b"20191221\t921460\tSaturated  \r\n"
        b"20191221  921461  Scattered Light\r\n"
        b"20191221  921462  Dome Light\r\n"
        b"\r\n"
    )
    write(
        year / "ghost-scatter-y9.txt",
        "date expnum ccd id ccdnum\n"  # header without '#'
        "20191221  921464 nan nan  \n"  # a later list's line: ccd and id nan, no ccdnum -> whole exposure
        "20191221  921465 nan N4 35 extra\n"  # a column more than the header: ignored
        "20191221  921466 71 S20\n"  # ccdnum missing: the name says S20
        "junk line here\n"  # unreadable, reported, the rest still read
        "20191221\t921467\tnan\tnan\t14\n",
    )
    return root / "exclude"


def test_later_delve_layout_reads_everything_but_the_junk_line(tmp_path, rules):
    tree = write_later_delve_tree(tmp_path)
    labels = read_labels(tree)
    fields = [(r.expnum, r.level, r.ccdname, r.raw_reason) for r in labels.records]
    assert fields == [
        (921464, "exposure", None, "Ghost/Scatter"),
        (921465, "ccd", "N4", "Ghost/Scatter"),
        (921466, "ccd", "S20", "Ghost/Scatter"),
        (921467, "ccd", "S15", "Ghost/Scatter"),
        (921460, "exposure", None, "Saturated"),
        (921461, "exposure", None, "Scattered Light"),
        (921462, "exposure", None, "Dome Light"),
    ]
    assert delve_counts(labels.records) == (7, 4, 3 + 4 * 62)
    unreadable = labels.of_kind("unreadable")
    assert [(Path(w.file).name, w.line, w.content) for w in unreadable] == [
        ("ghost-scatter-y9.txt", 5, "junk line here")
    ]
    assert unreadable[0].message == "expected 5 columns (date expnum ccd id ccdnum), found 3"
    assert labels.warnings == unreadable
    assert [rules.categorize(r) for r in labels.records[4:]] == [
        "Saturated",
        "Ghost_Scatter",
        "Ghost_Scatter",
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("20191221  921464 nan nan", ("exposure", None)),
        ("20191221  921464 nan nan nan", ("exposure", None)),
        ("20191221  921464 NaN", ("exposure", None)),
        ("20191221  921464 nan nan 14", ("ccd", "S15")),
        ("20191221  921464 nan S15", ("ccd", "S15")),
        ("20191221  921464", "expected 5 columns"),  # stops after expnum: says nothing about its CCD
        ("20191221  921464 71 nan", "expected 5 columns"),  # a ccd index but no CCD: not "all nan"
        ("20191221  921464 nan nan 99", "99 is not a DECam CCDNUM"),
        ("20191221  921464 nan XY9 nan", "'XY9' is not a DECam CCD name"),
    ],
)
def test_delve_ccd_line_without_a_ccd(tmp_path, line, expected):
    good = "20191221  900000 nan nan 1\n" * 2  # so that one bad line cannot make the file mostly bad
    labels = read_delve(write(tmp_path / "noise-y9.txt", f"#date expnum ccd id ccdnum\n{good}{line}\n"))
    if isinstance(expected, tuple):
        assert (labels.records[-1].level, labels.records[-1].ccdname) == expected
        assert labels.warnings == ()
    else:
        assert len(labels.records) == 2 and expected in labels.warnings[0].message


README_LIKE = (
    "# vec\n"
    "\n"
    "An embedding store that finds bad exposures.\n"
    "16 CCDs per exposure are sampled; 80 exposures are held out.\n"
    "Install with pip, then run the demo:\n"
    "    vec demo\n"
    "4094 x 2046 pixels per CCD.\n"
    "## Labels\n"
    "See the docs.\n"
)


def test_readme_like_text_is_refused_naming_file_and_formats(tmp_path):
    path = write(tmp_path / "README.md", README_LIKE)
    with pytest.raises(LabelFormatError) as caught:
        read_labels(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a label list (formats tried: decals-badexp, delve): ")
    assert "4 of 6 non-comment lines cannot be read as decals-badexp (first: line 3: first field" in message
    assert isinstance(caught.value, BadInputError)  # the CLI's one VecError handler exits 1
    with pytest.raises(LabelFormatError, match=r"formats tried: delve\): .*cannot be read as delve"):
        read_labels(path, source="delve")


@pytest.mark.parametrize(("n_bad", "refused"), [(2, False), (3, True)])
def test_a_file_is_refused_only_when_most_lines_are_unreadable(tmp_path, n_bad, refused):
    text = "#EXPID Flag comments\n" + "500001 2 clouds\n" * (5 - n_bad) + "not a label\n" * n_bad
    path = write(tmp_path / "decam-bad_expid.txt", text)
    if refused:
        with pytest.raises(LabelFormatError, match=f"{n_bad} of 5 non-comment lines"):
            read_decals_badexp(path)
    else:
        assert [w.line for w in read_decals_badexp(path).of_kind("unreadable")] == [5, 6]


def test_bad_expid_tolerates_crlf_tabs_and_an_uncommented_header(tmp_path):
    path = tmp_path / "decam-bad_expid.txt"
    path.write_bytes(
        b"\xef\xbb\xbfEXPID\tFlag\tcomments\r\n900100\t3\tSaturated  \r\n900101 Scattered Light\r\n"
    )
    labels = read_labels(path)
    assert [(r.expnum, r.flag, r.raw_reason) for r in labels.records] == [
        (900100, 3, "Saturated"),
        (900101, None, "Scattered Light"),
    ]
    assert labels.warnings == ()


def test_directory_keeps_importing_past_a_refused_file(tmp_path):
    tree = write_later_delve_tree(tmp_path)
    write(tree / "y9" / "notes.txt", "Lists checked by hand in March.\nAsk before editing.\n")
    labels = read_delve(tree)
    assert len(labels.records) == 7
    refused = labels.of_kind("refused")
    assert [(Path(w.file).name, w.line) for w in refused] == [("notes.txt", None)]
    assert refused[0].message.startswith("2 of 2 non-comment lines cannot be read as delve")


def test_directory_where_every_file_is_refused(tmp_path):
    write(tmp_path / "problem-y1.txt", "Clouds 226943\nnothing here\n")
    with pytest.raises(
        LabelFormatError, match=r"no list file could be read \(1 refused; first: .*problem-y1"
    ):
        read_delve(tmp_path)


def test_des_fits_nan_ccdnum_is_the_whole_exposure(tmp_path):
    path = write_des_table(
        tmp_path / "exclude.fits",
        {
            "EXPNUM": np.array([1, 2, 3], dtype=np.int32),
            "CCDNUM": np.array([4, np.nan, 63], dtype=np.float32),
            "REASON": np.array([b"Ghosting", b"Clouds", b"Noise"], dtype="S8"),
        },
    )
    labels = read_des_fits(path)
    assert [(r.expnum, r.level, r.ccdnum) for r in labels.records] == [(1, "ccd", 4), (2, "exposure", None)]
    assert [(w.line, w.kind) for w in labels.warnings] == [(3, "unreadable")]


def test_mostly_unreadable_fits_table_is_refused(tmp_path):
    path = write_des_table(
        tmp_path / "exclude.fits",
        {"EXPNUM": np.array([1, -2, 0], dtype=np.int32), "REASON": np.array([b"Clouds"] * 3, dtype="S8")},
    )
    with pytest.raises(LabelFormatError, match=r"exclude.fits.*des-fits.*2 of 3 rows"):
        read_des_fits(path)


# --- reason synonyms in any source --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("Saturated", "Saturated"),
        ("saturation", "Saturated"),
        ("bleed trail", "Saturated"),
        ("Scattered Light", "Ghost_Scatter"),
        ("ghost", "Ghost_Scatter"),
        ("reflection", "Ghost_Scatter"),
        ("Dome Light", "Ghost_Scatter"),
        ("Dome Obscuration", "Wonky"),  # the dome itself in the way, not its light
        ("clouds", "Clouds_Transparency"),
        ("transparency", "Clouds_Transparency"),
        ("out of focus", "Out_of_Focus"),
        ("donut", "Out_of_Focus"),
        ("pupil ghost donut", "Ghost_Scatter"),
        ("trailed", "Telescope_Moving"),
        ("telescope moving", "Telescope_Moving"),
        ("tracking", "Telescope_Moving"),
        ("bad psf", "PSF"),
        ("seeing", "PSF"),
        ("noise", "Noise"),
        ("noisy", "Noise"),
        ("bad ccd", "Bad_CCD"),
        ("Bad_CCD", "Bad_CCD"),
        ("dead amp", "Bad_CCD"),
        ("Nonoptimal_Exposure", "Nonoptimal_Exposure"),
        ("Bad Astrometry", None),  # unmapped on purpose: not an image artifact of these categories
        ("Nebula", None),  # unmapped on purpose: real sky
    ],
)
@pytest.mark.parametrize("source", ["delve", "des-fits", "decals-badexp"])
def test_reason_synonyms_map_in_any_source(rules, source, reason, category):
    flag = 3 if source == "decals-badexp" else None
    record = LabelRecord(source, "exposure", 1, None, None, flag, reason, None, "x", 1)
    assert rules.categorize(record) == category


def test_synonyms_in_a_delve_list_and_a_bad_expid_comment(tmp_path, rules):
    delve = write(
        tmp_path / "problem-y9.txt",
        "#Nite Exposure Problem\n20200101 900000 Saturated\n20200101 900001 Scattered Light\n"
        "20200101 900002 Dome Light\n",
    )
    badexp = write(
        tmp_path / "decam-bad_expid.txt", "900010 3 Saturated\n900011 Scattered Light\n900012 3 Dome Light\n"
    )
    expected = ["Saturated", "Ghost_Scatter", "Ghost_Scatter"]
    assert [rules.categorize(r) for r in read_labels(delve).records] == expected
    assert [rules.categorize(r) for r in read_labels(badexp).records] == expected
