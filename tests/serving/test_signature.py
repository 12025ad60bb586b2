"""The exported graph: its signatures as TF Serving lists them, REST requests, bad items in a batch."""

import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from serving import contract, signature
from tests.serving import rest
from tests.serving import helpers


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Three tiny fold models and their averaged SavedModel."""
    keras_models = [helpers.tiny_classifier(seed) for seed in range(3)]
    path = tmp_path_factory.mktemp("export") / "saved_model"
    signature.write_saved_model(keras_models, path)
    loaded = tf.saved_model.load(str(path))
    return keras_models, path, loaded


def _serve(loaded, body):
    """What TF Serving does with a REST body: decode the JSON, run the signature, encode the answer."""
    function = loaded.signatures[contract.DEFAULT_SIGNATURE]
    inputs, request_format = rest.decode_predict_request(body, {contract.INPUT_NAME: "string"})
    outputs = function(**{name: tf.constant(value) for name, value in inputs.items()})
    return json.loads(rest.encode_predict_response({k: v.numpy() for k, v in outputs.items()}, request_format))


def _tensor(info) -> tuple[str, tuple[int, ...]]:
    return types_pb2.DataType.Name(info.dtype), tuple(dim.size for dim in info.tensor_shape.dim)


def test_the_serving_meta_graph_holds_the_signatures_tf_serving_reads(exported):
    """saved_model.pb's serving meta graph, read as TF Serving (and `saved_model_cli show`) read it."""
    _, path, _ = exported
    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    (meta_graph,) = [graph for graph in saved.meta_graphs if "serve" in graph.meta_info_def.tags]
    default = meta_graph.signature_def["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    assert {name: _tensor(info) for name, info in default.inputs.items()} == {"image_bytes": ("DT_STRING", (-1,))}
    assert {name: _tensor(info) for name, info in default.outputs.items()} == {
        "probability_of_death": ("DT_FLOAT", (-1,)), "class": ("DT_INT64", (-1,)), "error": ("DT_STRING", (-1,))}
    images = meta_graph.signature_def["predict_images"]
    assert {name: _tensor(info) for name, info in images.inputs.items()} == {"images": ("DT_FLOAT", (-1, 64, 64, 3))}


def test_a_rest_request_gives_the_keras_ensemble_probability(exported):
    keras_models, _, loaded = exported
    jpegs = helpers.sample_jpegs(2)
    gray_png = helpers.png_bytes(np.asarray(tf.io.decode_jpeg(jpegs[0], channels=1))[..., 0])
    images = jpegs + [gray_png]
    for body in (rest.predict_body(images),  # {"instances": [{"b64": ...}, ...]}, what curl -d @body.json sends
                 rest.predict_body(images, input_name=contract.INPUT_NAME)):
        predictions = _serve(loaded, body)["predictions"]
        assert len(predictions) == len(images)
        for image, prediction in zip(images, predictions):
            expected = helpers.keras_probabilities(keras_models, image)
            assert prediction["error"] == ""
            assert prediction["probability_of_death"] == pytest.approx(expected, abs=1e-5)
            assert prediction["class"] == int(expected >= 0.5)


def test_bad_items_are_flagged_one_by_one_and_the_rest_scored(exported):
    keras_models, _, loaded = exported
    good = helpers.sample_jpegs(1)[0]
    tiny = helpers.png_bytes(np.zeros((8, 8), np.uint8))
    batch = {
        "good": good,
        "text": b"this is not an image",
        "empty": b"",
        "truncated_jpeg": good[: len(good) // 3],
        "header_only_jpeg": good[:4],
        "truncated_png": helpers.png_bytes(np.full((40, 40), 7, np.uint8))[:30],
        "too_small": tiny,
        "good_again": good,
    }
    predictions = _serve(loaded, rest.predict_body(list(batch.values())))["predictions"]
    by_name = dict(zip(batch, predictions))
    expected = helpers.keras_probabilities(keras_models, good)
    for name in ("good", "good_again"):
        assert by_name[name]["error"] == ""
        assert by_name[name]["probability_of_death"] == pytest.approx(expected, abs=1e-5)
    reasons = {
        "text": "not a JPEG or PNG", "empty": "not a JPEG or PNG", "truncated_jpeg": "corrupt or truncated",
        "header_only_jpeg": "corrupt or truncated", "truncated_png": "corrupt or truncated",
        "too_small": "image size out of range",
    }
    for name, reason in reasons.items():
        assert by_name[name]["error"].startswith(reason), (name, by_name[name])
        assert np.isnan(by_name[name]["probability_of_death"]) and by_name[name]["class"] == -1


def test_a_sixteen_bit_png_is_served_as_training_saw_it(exported, tmp_path):
    """Training stored the 16-bit file as image_io converted it; serving must score the raw file the same."""
    from images import image_io
    keras_models, _, loaded = exported
    raw = helpers.sixteen_bit_png()
    (tmp_path / "gray16.png").write_bytes(raw)
    as_trained = image_io.load_standard_image(tmp_path / "gray16.png")
    assert as_trained.converted and as_trained.encoded != raw
    prediction = _serve(loaded, rest.predict_body([raw]))["predictions"][0]
    assert prediction["error"] == ""
    expected = helpers.keras_probabilities(keras_models, as_trained.encoded)
    assert prediction["probability_of_death"] == pytest.approx(expected, abs=1e-6)


def test_a_batch_with_no_good_image_answers_instead_of_failing(exported):
    _, _, loaded = exported
    predictions = _serve(loaded, rest.predict_body([b"nope", b""]))["predictions"]
    assert [p["class"] for p in predictions] == [-1, -1]
    assert all(p["error"] for p in predictions)


def test_the_json_answer_is_what_tf_serving_writes(exported):
    _, _, loaded = exported
    body = _serve(loaded, rest.predict_body([helpers.sample_jpegs(1)[0], b"x"]))
    function = loaded.signatures[contract.DEFAULT_SIGNATURE]
    raw = rest.encode_predict_response({k: v.numpy() for k, v in function(
        image_bytes=tf.constant([helpers.sample_jpegs(1)[0], b"x"])).items()})
    assert '"probability_of_death": NaN' in raw and set(body) == {"predictions"}
    assert sorted(body["predictions"][0]) == ["class", "error", "probability_of_death"]


def test_predict_images_matches_serving_default_on_preprocessed_tensors(exported):
    from images import preprocessing
    _, _, loaded = exported
    jpegs = helpers.sample_jpegs(3)
    images = tf.stack([preprocessing.preprocess(tf.constant(j), helpers.IMAGE_SIZE) for j in jpegs])
    from_images = loaded.signatures[contract.IMAGES_SIGNATURE](images=images)["probability_of_death"]
    from_bytes = loaded.signatures[contract.DEFAULT_SIGNATURE](image_bytes=tf.constant(jpegs))["probability_of_death"]
    np.testing.assert_allclose(from_images.numpy(), from_bytes.numpy(), atol=1e-6)


def test_the_class_threshold_is_set_at_export():
    models = [helpers.tiny_classifier(0)]
    jpegs = helpers.sample_jpegs(4)
    probability = signature.EnsembleServer(models).predict_bytes(tf.constant(jpegs))["probability_of_death"].numpy()
    middle = float(np.sort(probability)[1])  # one of four below, three at or above
    classes = signature.EnsembleServer(models, threshold=middle).predict_bytes(tf.constant(jpegs))["class"].numpy()
    assert list(classes) == [int(p >= middle) for p in probability] and classes.sum() == 3
    with pytest.raises(ValueError, match="threshold"):
        signature.EnsembleServer(models, threshold=1.5)


def test_models_must_honour_the_contract():
    import keras
    two_outputs = keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="one logit"):
        signature.EnsembleServer([two_outputs])
    with pytest.raises(ValueError, match="different image sizes"):
        signature.EnsembleServer([helpers.tiny_classifier(0, 64), helpers.tiny_classifier(1, 32)])


def test_a_real_resnet18_exports_and_matches_keras(tmp_path):
    from models import build_classifier
    model, _ = build_classifier("resnet18", image_size=64)
    path = tmp_path / "resnet18"
    signature.write_saved_model([model], path)
    loaded = tf.saved_model.load(str(path))
    image = helpers.sample_jpegs(1)[0]
    prediction = _serve(loaded, rest.predict_body([image]))["predictions"][0]
    assert prediction["probability_of_death"] == pytest.approx(helpers.keras_probabilities([model], image), abs=1e-5)


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    """Two tiny fold models with a backbone, recalibrated, and their `explain` answer to two X-rays and a text."""
    keras_models = [helpers.tiny_backbone_classifier(seed) for seed in range(2)]
    path = tmp_path_factory.mktemp("explain") / "saved_model"
    signature.write_saved_model(keras_models, path, recalibration=(0.3, 0.7))
    loaded = tf.saved_model.load(str(path))
    images = [*helpers.sample_jpegs(2), b"Patient notes"]
    return (keras_models, loaded, images,
            {k: v.numpy() for k, v in loaded.signatures[contract.EXPLAIN_SIGNATURE](image_bytes=tf.constant(images)).items()})


def test_explain_answers_as_serving_default_does(explained):
    _, loaded, images, explanation = explained
    served = loaded.signatures[contract.DEFAULT_SIGNATURE](image_bytes=tf.constant(images))
    np.testing.assert_allclose(explanation[contract.PROBABILITY], served[contract.PROBABILITY].numpy(), atol=1e-6)
    np.testing.assert_array_equal(explanation[contract.CLASS], served[contract.CLASS].numpy())
    np.testing.assert_array_equal(explanation[contract.ERROR], served[contract.ERROR].numpy())


def test_explain_gives_each_fold_on_the_served_scale_and_its_grad_cam(explained):
    from scipy import special

    from images import preprocessing
    from serving import gradcam
    keras_models, _, images, explanation = explained
    folds = explanation[contract.FOLD_PROBABILITIES]
    assert folds.shape == (3, 2) and np.isnan(folds[2]).all()
    for member, model in enumerate(keras_models):
        raw = helpers.keras_probabilities([model], images[0])
        assert folds[0, member] == pytest.approx(special.expit(0.3 + 0.7 * special.logit(raw)), abs=1e-5)
    seen = explanation[contract.MODEL_INPUT]
    assert seen.shape == (3, 64, 64, 3) and seen.dtype == np.uint8 and seen[2].max() == 0
    maps = explanation[contract.GRADCAM]
    decoded = preprocessing.preprocess(tf.constant(images[0]), helpers.IMAGE_SIZE)[None]
    np.testing.assert_array_equal(seen[0], np.round(decoded[0].numpy()).astype(np.uint8))
    expected = np.mean([gradcam.heat_maps(gradcam.probe(m), decoded).numpy() for m in keras_models], axis=0)
    np.testing.assert_allclose(maps[:1], expected, atol=1e-4)
    assert maps.shape == (3, 64, 64) and maps.min() >= 0 and maps.max() <= 1 and maps[2].max() == 0


def test_explain_without_a_backbone_has_no_grad_cam(exported):
    _, _, loaded = exported
    outputs = loaded.signatures[contract.EXPLAIN_SIGNATURE](image_bytes=tf.constant(helpers.sample_jpegs(1)))
    assert contract.GRADCAM not in outputs and outputs[contract.FOLD_PROBABILITIES].shape == (1, 3)
