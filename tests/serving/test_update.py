"""The updated SavedModel serves the updated probabilities through the same signatures."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from serving import contract, signature, update
from tests.serving import helpers


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    folder = tmp_path_factory.mktemp("original")
    models = [helpers.tiny_classifier(seed) for seed in range(2)]
    signature.write_saved_model(models, folder / "model", threshold=0.5)
    (folder / "model" / update.ASSETS_EXTRA).mkdir()
    (folder / "model" / update.ASSETS_EXTRA / "model_card.json").write_text("{}")
    return folder / "model"


def _logit(p):
    p = np.clip(p, signature.LOGIT_EPS, 1 - signature.LOGIT_EPS)
    return np.log(p / (1 - p))


def test_served_updated_probabilities_are_the_computed_ones(original, tmp_path):
    intercept, slope, threshold = 0.7, 0.6, 0.5
    update.write_updated_saved_model(original, tmp_path / "updated", intercept, slope, threshold)
    images = [*helpers.sample_jpegs(3), b"not an image"]
    before = tf.saved_model.load(str(original)).signatures[contract.DEFAULT_SIGNATURE](image_bytes=tf.constant(images))
    loaded = tf.saved_model.load(str(tmp_path / "updated"))
    after = loaded.signatures[contract.DEFAULT_SIGNATURE](image_bytes=tf.constant(images))
    p = before[contract.PROBABILITY].numpy().astype(float)
    expected = special.expit(intercept + slope * _logit(p[:3]))
    np.testing.assert_allclose(after[contract.PROBABILITY].numpy()[:3], expected, atol=1e-5)
    assert np.isnan(after[contract.PROBABILITY].numpy()[3]) and after[contract.CLASS].numpy()[3] == -1
    assert after[contract.ERROR].numpy()[3] == before[contract.ERROR].numpy()[3] != b""
    np.testing.assert_array_equal(after[contract.CLASS].numpy()[:3], (expected >= threshold).astype(int))
    assert set(loaded.signatures) == {contract.DEFAULT_SIGNATURE, contract.IMAGES_SIGNATURE,
                                      contract.EXPLAIN_SIGNATURE}
    pixels = tf.random.uniform([2, helpers.IMAGE_SIZE, helpers.IMAGE_SIZE, 3], 0, 255, seed=1)
    raw = tf.saved_model.load(str(original)).signatures[contract.IMAGES_SIGNATURE](images=pixels)
    updated = loaded.signatures[contract.IMAGES_SIGNATURE](images=pixels)
    np.testing.assert_allclose(updated[contract.PROBABILITY].numpy(), special.expit(
        intercept + slope * _logit(raw[contract.PROBABILITY].numpy().astype(float))), atol=1e-5)
    assert (tmp_path / "updated" / update.ASSETS_EXTRA / "model_card.json").is_file()


def test_the_explain_signature_is_kept_and_its_folds_updated(original, tmp_path):
    intercept, slope = 0.7, 0.6
    update.write_updated_saved_model(original, tmp_path / "updated", intercept, slope, 0.5)
    images = tf.constant([*helpers.sample_jpegs(2), b"not an image"])
    before = tf.saved_model.load(str(original)).signatures[contract.EXPLAIN_SIGNATURE](image_bytes=images)
    after = tf.saved_model.load(str(tmp_path / "updated")).signatures[contract.EXPLAIN_SIGNATURE](image_bytes=images)
    folds = before[contract.FOLD_PROBABILITIES].numpy().astype(float)
    np.testing.assert_allclose(after[contract.FOLD_PROBABILITIES].numpy()[:2],
                               special.expit(intercept + slope * _logit(folds[:2])), atol=1e-5)
    assert np.isnan(after[contract.FOLD_PROBABILITIES].numpy()[2]).all()
    served = tf.saved_model.load(str(tmp_path / "updated")).signatures[contract.DEFAULT_SIGNATURE](image_bytes=images)
    np.testing.assert_allclose(after[contract.PROBABILITY].numpy(), served[contract.PROBABILITY].numpy(), atol=1e-6)
    np.testing.assert_array_equal(after[contract.MODEL_INPUT].numpy(), before[contract.MODEL_INPUT].numpy())


def test_an_older_export_without_explain_is_updated_without_it(tmp_path):
    models = [helpers.tiny_classifier(0)]
    server = signature.EnsembleServer(models)
    archive = tf.Module()
    archive.models = models
    archive.predict_bytes = tf.function(server.predict_bytes, input_signature=[
        tf.TensorSpec([None], tf.string, name=contract.INPUT_NAME)])
    archive.predict_images = tf.function(server.predict_images, input_signature=[
        tf.TensorSpec([None, helpers.IMAGE_SIZE, helpers.IMAGE_SIZE, 3], tf.float32, name=contract.IMAGES_INPUT_NAME)])
    tf.saved_model.save(archive, str(tmp_path / "old"), signatures={
        contract.DEFAULT_SIGNATURE: archive.predict_bytes, contract.IMAGES_SIGNATURE: archive.predict_images})
    update.write_updated_saved_model(tmp_path / "old", tmp_path / "updated", 0.1, 0.9, 0.5)
    assert set(tf.saved_model.load(str(tmp_path / "updated")).signatures) == {contract.DEFAULT_SIGNATURE,
                                                                              contract.IMAGES_SIGNATURE}
