"""ResNet-18 architecture (He et al. 2015), laid out exactly like torchvision's.

Only the architecture lives here: no preprocessing, no head, no weight loading
(`models/torchvision_weights.py` fills it from a torchvision checkpoint).

Layer names map 1:1 to torchvision state-dict module names: Keras's '_' is
torchvision's '.' (this table is the one place the mapping is written down).

    Keras layer              torchvision module       tensors
    conv1                    conv1                    weight (OIHW -> HWIO)
    bn1                      bn1                      weight, bias, running_mean, running_var
    layer{s}_{b}_conv{1,2}   layer{s}.{b}.conv{1,2}   weight
    layer{s}_{b}_bn{1,2}     layer{s}.{b}.bn{1,2}     as bn1
    layer{s}_0_downsample_0  layer{s}.0.downsample.0  weight (1x1 stride-2 conv, s = 2, 3, 4)
    layer{s}_0_downsample_1  layer{s}.0.downsample.1  as bn1

`stages` cuts the body after that stage (keras-hub's ResNet takes its stage
list the same way): `stages=3` ends at layer3, 256 channels at 1/16 of the
input, 2.8M parameters instead of 11.2M, for data too small for stage 4. Its
layer names are the full network's, so the same checkpoints load into it
(`omitted_modules` names the stages a loader must leave out).

Numerical parity with torch: symmetric zero padding, explicit before the stride-2
convolutions (Keras 'same' pads those asymmetrically) and 'same' in the stride-1 3x3 ones,
where it is symmetric and the convolution pads as it computes (no pad and slice ops of a
whole activation each way: bench/results/models.txt); no convolution biases, and
batch normalization with epsilon 1e-5 and momentum 0.9 (torch's momentum 0.1
weighs the new batch, Keras's weighs the running value) on the fused kernel
(`models/fused_batch_norm.py`: faster on CPU, and its moving variance is
torch's unbiased one). torch's max-pool pads
with -inf; it follows a ReLU here, so every window holds a value >= 0 and zero
padding gives identical results.
"""

import keras
from keras import layers

from models.fused_batch_norm import FusedBatchNormalization
from models.serialization import SERIALIZATION_PACKAGE

STAGE_BLOCKS = (2, 2, 2, 2)
STAGE_FILTERS = (64, 128, 256, 512)
BATCH_NORM_EPSILON = 1e-5
BATCH_NORM_MOMENTUM = 0.9


def _conv(filters, kernel_size, strides, name, padding="valid"):
    # torchvision's from-scratch init: kaiming_normal_(mode="fan_out", nonlinearity="relu").
    # A new initializer per layer: a shared unseeded one would give every layer the same values.
    initializer = keras.initializers.VarianceScaling(2.0, mode="fan_out",
                                                     distribution="untruncated_normal")
    return layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=False,
                         kernel_initializer=initializer, name=name)


def _conv3x3(x, filters, strides, name):
    """torch's 3x3 convolution with padding 1."""
    if strides == 1:
        return _conv(filters, 3, 1, name, padding="same")(x)
    return _conv(filters, 3, strides, name)(layers.ZeroPadding2D(1, name=name.replace("conv", "pad"))(x))


def _batch_norm(name):
    return FusedBatchNormalization(epsilon=BATCH_NORM_EPSILON, momentum=BATCH_NORM_MOMENTUM, name=name)


def _basic_block(x, filters, strides, prefix):
    """torchvision BasicBlock: two 3x3 conv+BN, shortcut 1x1 conv+BN when the shape changes."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, strides, f"{prefix}_downsample_0")(x)
        shortcut = _batch_norm(f"{prefix}_downsample_1")(shortcut)
    y = _conv3x3(x, filters, strides, f"{prefix}_conv1")
    y = _batch_norm(f"{prefix}_bn1")(y)
    y = layers.ReLU(name=f"{prefix}_relu1")(y)
    y = _conv3x3(y, filters, 1, f"{prefix}_conv2")
    y = _batch_norm(f"{prefix}_bn2")(y)
    y = layers.Add(name=f"{prefix}_add")([y, shortcut])
    return layers.ReLU(name=f"{prefix}_relu2")(y)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class ResNet18Backbone(keras.Model):
    """Channels-last ResNet-18 body: (H, W, 3) normalised image -> (H/32, W/32, 512) features,
    or with `stages` < 4 the body cut after that stage (stages=3: (H/16, W/16, 256))."""

    def __init__(self, image_shape=(None, None, 3), stages=len(STAGE_BLOCKS), **kwargs):
        if not 1 <= stages <= len(STAGE_BLOCKS):
            raise ValueError(f"stages must be between 1 and {len(STAGE_BLOCKS)}, got {stages}")
        inputs = keras.Input(shape=image_shape, name="images")
        x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
        x = _conv(64, 7, 2, "conv1")(x)
        x = _batch_norm("bn1")(x)
        x = layers.ReLU(name="relu")(x)
        x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
        for stage, (blocks, filters) in enumerate(zip(STAGE_BLOCKS[:stages], STAGE_FILTERS), start=1):
            for block in range(blocks):
                strides = 2 if stage > 1 and block == 0 else 1
                x = _basic_block(x, filters, strides, f"layer{stage}_{block}")
        super().__init__(inputs=inputs, outputs=x, **kwargs)
        self.image_shape = tuple(image_shape)
        self.stages = stages

    @property
    def omitted_modules(self):
        """torchvision modules of the full ResNet-18 that this body leaves out (layer4 when stages=3)."""
        return tuple(f"layer{stage}" for stage in range(self.stages + 1, len(STAGE_BLOCKS) + 1))

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "image_shape": self.image_shape,
                "stages": self.stages}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
