"""ConvNeXt with depthwise layers is Keras' ConvNeXt-T, computed by the depthwise kernel."""

import keras
import numpy as np
import tensorflow as tf

from models.convnext import convnext_tiny, with_depthwise_convolutions

SIZE = 64


def _stock():
    return keras.applications.ConvNeXtTiny(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3),
                                           include_preprocessing=False)


def _grouped_convolutions(model):
    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and layer.groups > 1]


def test_every_grouped_convolution_becomes_a_depthwise_one_of_the_same_name():
    stock = _stock()
    grouped = _grouped_convolutions(stock)
    assert len(grouped) == 18  # one per block: 3 + 3 + 9 + 3
    body = convnext_tiny((SIZE, SIZE, 3))
    assert _grouped_convolutions(body) == []
    assert all(type(body.get_layer(name)) is keras.layers.DepthwiseConv2D for name in grouped)
    expected_types = [keras.layers.DepthwiseConv2D if layer.name in grouped else type(layer) for layer in stock.layers]
    assert [type(layer) for layer in body.layers] == expected_types
    assert body.count_params() == stock.count_params()


def test_the_copy_computes_the_same_function_forward_and_backward():
    stock = _stock()
    copy = with_depthwise_convolutions(stock)
    images = np.random.RandomState(0).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(copy(images).numpy(), stock(images).numpy(), rtol=1e-4, atol=1e-5)
    # Training moves both the same way: one identical SGD step leaves the outputs equal.
    for model in (stock, copy):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(images, training=True)))
        for weight, gradient in zip(model.trainable_weights, tape.gradient(loss, model.trainable_weights)):
            weight.assign_sub(0.1 * gradient)
    np.testing.assert_allclose(copy(images).numpy(), stock(images).numpy(), rtol=1e-3, atol=1e-4)


def test_other_layers_are_left_alone():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 3, groups=2, name="two_groups")(inputs)  # grouped, not channel-wise
    x = keras.layers.Conv2D(8, 1, name="plain")(x)
    model = keras.Model(inputs, x)
    copy = with_depthwise_convolutions(model)
    assert [type(layer) for layer in copy.layers] == [type(layer) for layer in model.layers]
    images = np.random.RandomState(1).normal(size=(1, 8, 8, 4)).astype(np.float32)
    np.testing.assert_allclose(copy(images).numpy(), model(images).numpy(), rtol=1e-5, atol=1e-6)
