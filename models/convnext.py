"""ConvNeXt-Tiny (Liu et al. 2022) from Keras core, with its 7x7 convolutions made depthwise layers.

`keras.applications.ConvNeXtTiny` writes each block's channel-wise 7x7 convolution
as `Conv2D(groups=channels)`. On CPU, Keras' TensorFlow backend compiles every
grouped Conv2D with XLA (TensorFlow's own CPU kernel lacks them), which is far
slower than `DepthwiseConv2D`'s kernel: that one op made the whole model train
5-6x slower here (`bench/convnext_depthwise.py`, `bench/results/convnext_depthwise.txt`).
A channel-wise grouped convolution *is* a depthwise one, so the model is
cloned with each of those layers replaced by a `DepthwiseConv2D` of the same
name, size, padding and initial weights (the kernel reshaped from
(7, 7, 1, C) to (7, 7, C, 1)): the same network from the same start, computed
by the fast kernel. Glorot initialisation gives both layouts the same
distribution (fan_in + fan_out is 49 (C + 1) in both).

A `.weights.h5` file written by a stock `keras.applications.ConvNeXtTiny` body
does not load into this one (the kernels' shapes differ); one written by this
body's `save_weights` does.
"""

import keras
import numpy as np


def _is_channelwise(layer) -> bool:
    return (type(layer) is keras.layers.Conv2D and layer.groups > 1
            and layer.groups == layer.filters == layer.input.shape[-1])


def _as_depthwise(conv):
    config = conv.get_config()
    return keras.layers.DepthwiseConv2D(
        kernel_size=config["kernel_size"], strides=config["strides"], padding=config["padding"],
        data_format=config["data_format"], dilation_rate=config["dilation_rate"], use_bias=config["use_bias"],
        depthwise_initializer=config["kernel_initializer"], bias_initializer=config["bias_initializer"],
        name=config["name"], dtype=config["dtype"])


def with_depthwise_convolutions(model):
    """A copy of functional `model` whose channel-wise grouped Conv2D layers are DepthwiseConv2D.

    Every weight keeps its value (grouped kernels reshaped), so the copy computes
    the same function as `model`.
    """
    def clone(layer):
        if _is_channelwise(layer):
            return _as_depthwise(layer)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer, copied in zip(model.layers, copy.layers, strict=True):  # the same order; inputs are renamed
        for source, target in zip(layer.weights, copied.weights, strict=True):
            target.assign(np.reshape(source.numpy(), target.shape))
    return copy


def convnext_tiny(image_shape):
    """ConvNeXt-T body (no top, no preprocessing, random weights) with depthwise 7x7 convolutions."""
    stock = keras.applications.ConvNeXtTiny(include_top=False, weights=None, input_shape=image_shape,
                                            include_preprocessing=False)
    return with_depthwise_convolutions(stock)
