"""The one decision rule: a case is called "died" when its probability of death is at or above the
threshold. Evaluation, training's per-epoch metrics and the served `class` output all call this, so
the reported confusion matrix describes exactly what serving answers."""


def called_died(probability, threshold):
    """Elementwise `probability >= threshold`, for numpy arrays and TensorFlow tensors alike."""
    return probability >= threshold
