"""TF Serving's warmup file: one PredictionLog per image, read back with TF Serving's own protos."""

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving import contract, warmup
from tests.serving import helpers


def test_each_image_is_one_serving_default_request_of_its_own(tmp_path):
    images = helpers.sample_jpegs(2)
    path = warmup.write_warmup_requests(tmp_path, "covid", images)
    assert path == tmp_path / "assets.extra" / "tf_serving_warmup_requests"
    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(str(path))]
    assert len(logs) == 2
    for log, image in zip(logs, images):
        request = log.predict_log.request
        assert (request.model_spec.name, request.model_spec.signature_name) == ("covid", contract.DEFAULT_SIGNATURE)
        assert list(request.inputs) == [contract.INPUT_NAME]
        assert tf.make_ndarray(request.inputs[contract.INPUT_NAME]).tolist() == [image]
