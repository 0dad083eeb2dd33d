"""Which CCD sizes count as the references' size, and what the warning says (pure functions)."""

from __future__ import annotations

from collections import Counter

from query.ccd_size import is_reference_size, size_warnings

FULL = (2046, 4094)  # (NAXIS1, NAXIS2) of a DECam CCD


def test_a_few_trimmed_columns_are_the_same_size_and_a_quarter_cutout_is_not():
    reference = Counter({FULL: 960})
    assert is_reference_size((2048, 4096), reference)
    assert is_reference_size((2000, 4094), reference)
    assert not is_reference_size((1023, 2047), reference)  # a quarter of the area
    assert not is_reference_size((4092, 8188), reference)  # four times it


def test_any_of_several_reference_sizes_will_do():
    reference = Counter({FULL: 900, (512, 1024): 60})
    assert is_reference_size((512, 1024), reference) and not is_reference_size((256, 512), reference)


def test_no_reference_sizes_means_no_check():
    assert is_reference_size((16, 16), Counter())
    assert size_warnings({"N4": (16, 16)}, Counter()) == []


def test_one_warning_per_unlike_size_naming_its_ccds_in_rows_by_columns():
    reference = Counter({FULL: 960, (1023, 2047): 40})
    warnings = size_warnings({"N4": (256, 512), "S4": FULL, "N5": (256, 512), "S5": (64, 128)}, reference)
    assert len(warnings) == 2
    assert warnings[0].startswith("CCD(s) N4, N5: 512 x 256 pixels (rows x columns)")
    assert warnings[1].startswith("CCD(s) S5: 128 x 64 pixels")
    assert "reference CCDs are 4094 x 2046 (960), 2047 x 1023 (40)" in warnings[0]
