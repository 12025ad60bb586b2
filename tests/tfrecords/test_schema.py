import numpy as np
import pytest
import tensorflow as tf

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
