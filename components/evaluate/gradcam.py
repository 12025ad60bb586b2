"""Grad-CAM heat maps of a few validation images, for evaluate's figure (`serving/gradcam.py` computes them)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from serving.gradcam import heat_maps, probe


def gradcam(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Heat maps in [0, 1], one per image, at the images' resolution."""
    return heat_maps(probe(model), tf.convert_to_tensor(images, tf.float32)).numpy()
