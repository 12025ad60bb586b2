"""One decision rule (common/decision.py): evaluation and serving call 'died' at the same probabilities."""

import numpy as np
import tensorflow as tf

from common.decision import called_died
from components.evaluate import metrics as evaluate_metrics
from serving import signature
from tests.serving import helpers


def test_the_threshold_itself_counts_as_died_in_numpy_and_tensorflow():
    probabilities = [0.25, 0.5 - 1e-9, 0.5, 0.75]
    assert called_died(np.array(probabilities), 0.5).tolist() == [False, False, True, True]
    assert called_died(tf.constant(probabilities, tf.float64), 0.5).numpy().tolist() == [False, False, True, True]


def test_evaluation_and_serving_agree_on_a_probability_exactly_at_the_threshold():
    model = helpers.tiny_classifier(0)
    logit = model.get_layer("logit")
    logit.set_weights([np.zeros_like(w) for w in logit.get_weights()])  # logit 0: probability exactly 0.5
    served = signature.EnsembleServer([model], threshold=0.5).predict_bytes(tf.constant(helpers.sample_jpegs(1)))
    assert float(served["probability_of_death"][0]) == 0.5 and int(served["class"][0]) == 1
    values = evaluate_metrics.metric_values([1, 0], [0.5, 0.25], threshold=0.5)
    assert values["recall"] == 1.0 and values["precision"] == 1.0
