import pytest

from common import imputation_forest
from sources import CLINICAL_COLUMNS


@pytest.mark.parametrize(
    "text,expected_bin",
    [("25", 0), ("30", 0), ("31", 1), ("40", 1), ("45", 2), ("55", 3), ("60", 3), ("61", 4), ("70", 4),
     ("75", 5), ("80", 5), ("81", 6), ("100", 6), ("101", 6), (">80", 6), ("60s", 4), ("", -1), ("?", -1),
     ("unknown", -1)],
)
def test_age_bins_match_the_study(text, expected_bin):
    assert imputation_forest.age_bin(text) == expected_bin


@pytest.mark.parametrize("text,value", [("Y", 1), (" y ", 1), ("N", 0), ("", -1), ("?", -1),
                                        ("Would have been stated", -1), ("Not visible", -1)])
def test_clinical_flags_keep_unknown_explicit(text, value):
    assert imputation_forest.flag_value(text) == value


def test_the_sources_columns_are_the_forests():
    assert CLINICAL_COLUMNS == imputation_forest.FLAG_COLUMNS


def test_a_row_without_the_flags_encodes_as_not_recorded():
    assert imputation_forest.encode({"age": "65"}) == {
        "went_icu": -1, "needed_supplemental_O2": -1, "intubation_present": -1, "extubated": -1, "age_bin": 4}
    assert imputation_forest.features([]).shape == (0, len(imputation_forest.FEATURE_NAMES))
