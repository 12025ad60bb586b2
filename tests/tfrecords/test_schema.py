import numpy as np
import pytest
import tensorflow as tf

from components import write_tfrecords
from tfrecords import schema

ROW = {"source_id": "a.jpg", "filename": "a.jpg", "height": 4, "width": 5, "patientid": "p1", "age": "61",
       "view": "PA", "offset": "", "mortality_observed": 1, "mortality": 1, "label_source": "observed",
       "imputed_probability": float("nan")}


def test_parsing_some_keys_gives_those_features_as_the_full_parse_does():
    serialized = tf.constant(schema.make_example(b"\xff\xd8bytes", "jpeg", ROW).SerializeToString())
    full = schema.parse_example(serialized)
    some = schema.parse_example(serialized, ("image/source_id", "image/encoded", "patient/age"))
    assert sorted(some) == ["image/encoded", "image/source_id", "patient/age"]
    assert len(full) == len(schema.FEATURE_SPEC)
    for key, value in some.items():
        np.testing.assert_array_equal(value.numpy(), full[key].numpy())
    assert some["image/encoded"].numpy() == b"\xff\xd8bytes" and float(some["patient/age"]) == 61.0


def test_an_unknown_key_is_named():
    serialized = tf.constant(schema.make_example(b"x", "jpeg", ROW).SerializeToString())
    with pytest.raises(KeyError, match="image/nope"):
        schema.parse_example(serialized, ("image/nope",))


def test_the_forests_features_ride_along_and_older_records_read_as_not_recorded():
    row = {**ROW, "went_icu": "Y", "needed_supplemental_O2": "N", "intubation_present": "?", "extubated": ""}
    parsed = schema.parse_example(tf.constant(schema.make_example(b"x", "jpeg", row).SerializeToString()))
    assert [int(parsed[key]) for key in schema.CLINICAL_KEYS] == [1, 0, -1, -1, 4]
    example = schema.make_example(b"x", "jpeg", row)
    for key in schema.CLINICAL_KEYS:
        del example.features.feature[key]  # as written before the keys existed
    older = schema.parse_example(tf.constant(example.SerializeToString()))
    assert [int(older[key]) for key in schema.CLINICAL_KEYS] == [-1] * 5


def test_a_patients_site_is_that_of_their_first_row_and_older_shards_read_as_blank():
    rows = [{"patientid": "p1", "site": "Italy"}, {"patientid": "p2", "site": " "},
            {"patientid": "p1", "site": "Spain"}]
    assert write_tfrecords.patient_sites(rows) == ["Italy", "unknown", "Italy"]
    older = schema.make_example(b"x", "jpeg", {**ROW, "patient_site": "Italy"})
    del older.features.feature["patient/site"]  # as in shards written before sites
    assert schema.parse_example(tf.constant(older.SerializeToString()))["patient/site"].numpy() == b""
