import numpy as np
import pytest
import tensorflow as tf

from components import configs
from components.train import input_pipeline, rebalance
from images import augment


def test_class_weights_are_the_studys_formula():
    labels = [0] * 30 + [1] * 10
    w = rebalance.class_weights(labels)
    assert w[0] == pytest.approx(40 / (2 * 30)) and w[1] == pytest.approx(40 / (2 * 10))
    per_example = rebalance.example_weights(labels, "class_weights")
    # each class carries half of the total weight
    assert per_example[:30].sum() == pytest.approx(per_example[30:].sum())
    assert (rebalance.example_weights(labels, "none") == 1).all()


def test_resampling_feeds_fifty_fifty_over_2000_draws():
    labels = np.array([0] * 80 + [1] * 20)
    images = tf.zeros((100, 4, 4, 3))
    fn = augment.make_augment_fn(configs.AugmentConfig(method="none"), 0)
    counter = rebalance.FedCounter()
    for epoch in range(4):  # 4 epochs x 10 steps x 64 = 2,560 draws, as the training loop draws them
        ds = input_pipeline.train_dataset(images, labels, np.ones(100, np.float32), global_batch=64, steps=10,
                                          seeds=[epoch], augment_fn=fn, resample=True)
        for _, batch_labels, _ in ds:
            counter.add(batch_labels.numpy())
    assert counter.counts.sum() >= 2000
    assert abs(counter.positive_fraction - 0.5) <= 0.05


def test_without_resampling_the_stream_keeps_the_class_ratio():
    labels = np.array([0] * 80 + [1] * 20)
    fn = augment.make_augment_fn(configs.AugmentConfig(method="none"), 0)
    ds = input_pipeline.train_dataset(tf.zeros((100, 4, 4, 3)), labels, np.ones(100, np.float32),
                                      global_batch=50, steps=2, seeds=[0], augment_fn=fn, resample=False)
    fed = np.concatenate([b[1].numpy() for b in ds])
    assert len(fed) == 100 and fed.mean() == pytest.approx(0.2)  # one epoch = each row once
