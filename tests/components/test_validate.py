"""The site's rows: only known outcomes, images the served model could not read set aside with its reason."""

import math

import numpy as np
import pytest

from common.errors import PipelineError
from components import validate


def _row(source_id, patient, died, view="PA", age="60", sex="M"):
    return {"source_id": source_id, "patientid": patient, "mortality_observed": str(died), "view": view, "age": age,
            "sex": sex, "filename": source_id}


def test_only_known_outcomes_are_validated():
    rows = [_row("a.png", "1", 1), _row("b.png", "2", 0), _row("c.png", "3", -1)]
    assert [r["source_id"] for r in validate.labelled_rows(rows)] == ["a.png", "b.png"]


def test_images_the_served_model_could_not_read_are_set_aside_with_the_reason():
    rows = [_row("a.png", "1", 1), _row("b.png", "2", 0), _row("c.png", "2", 0, age="")]
    scores = {"a.png": (0.7, ""), "b.png": (math.nan, "corrupt or truncated image data"), "c.png": (0.2, "")}
    site = validate.scored_rows(rows, scores)
    assert site["not_scored"] == [{"source_id": "b.png", "error": "corrupt or truncated image data"}]
    np.testing.assert_array_equal(site["columns"]["label"], [1, 0])
    assert math.isnan(site["columns"]["age"][1]) and site["columns"]["sex"][0] == 1.0


def test_a_site_with_one_outcome_is_a_named_error():
    with pytest.raises(PipelineError, match="only one outcome"):
        validate.scored_rows([_row("a.png", "1", 0), _row("b.png", "2", 0)], {"a.png": (0.3, ""), "b.png": (0.4, "")})
