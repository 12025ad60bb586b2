import json

import numpy as np
import pytest
import tensorflow as tf

from components import configs
from components.train import input_pipeline
from images import augment
from tfrecords import writer


def test_load_examples_selects_rows_by_label_source(sample_tfrecords):
    observed = input_pipeline.load_examples(sample_tfrecords, "observed", 32)
    everything = input_pipeline.load_examples(sample_tfrecords, "observed+imputed", 32)
    counts = json.loads((sample_tfrecords / "manifest.json").read_text())["label_counts"]
    assert len(observed) == sum(v for k, v in counts.items() if k.startswith("observed/"))
    assert len(everything) == sum(counts.values())
    assert set(observed.label_sources) == {"observed"}
    assert observed.images.shape[1:] == (32, 32, 3) and observed.images.dtype == np.float32
    assert 0 <= observed.images.min() and observed.images.max() <= 255


def test_a_corrupted_shard_stops_loading(sample_tfrecords, tmp_path):
    import shutil
    copy = tmp_path / "tf"
    shutil.copytree(sample_tfrecords, copy)
    shard = writer.shard_paths(copy)[0]
    data = bytearray(open(shard, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(shard, "wb").write(bytes(data))
    with pytest.raises(writer.CorruptShardError):
        input_pipeline.load_examples(copy, "observed", 32)


TRAINING_AUGMENTATION = augment.make_dataset_augment_fn(configs.AugmentConfig(), 0)  # as a fold maps it


def _epochs(seeds, context=None, resample=False, fn=TRAINING_AUGMENTATION):
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (20, 16, 16, 3)).astype(np.float32))
    labels = (np.arange(20) % 4 == 0).astype(np.int64)
    return list(input_pipeline.train_dataset(images, labels, np.ones(20, np.float32), global_batch=8, steps=2,
                                             seeds=seeds, augment_fn=fn, resample=resample,
                                             input_context=context))


def _epoch(seed, context=None):
    return _epochs([seed], context)


def test_the_training_augmentation_is_traced_once_for_every_pipeline_and_feeds_the_same_batches():
    traced = augment.make_dataset_augment_fn(configs.AugmentConfig(), 0)
    pipelines = [_epochs([11, 12], fn=traced) for _ in range(2)]
    assert traced.experimental_get_tracing_count() == 1
    untraced = augment.make_augment_fn(configs.AugmentConfig(), 0)
    for batches in pipelines:
        for a, b in zip(batches, _epochs([11, 12], fn=untraced)):
            np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())


@pytest.mark.parametrize("resample", [False, True])
def test_one_phase_pipeline_feeds_the_batches_of_separate_epoch_pipelines(resample):
    seeds = [11, 12, 13]
    phase = _epochs(seeds, resample=resample)
    separate = [batch for seed in seeds for batch in _epochs([seed], resample=resample)]
    assert len(phase) == len(separate) == 6
    for joined, alone in zip(phase, separate):
        for a, b in zip(joined, alone):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    # A phase resumed at its second epoch feeds the uninterrupted phase's batches from there on.
    for resumed, full in zip(_epochs(seeds[1:], resample=resample), phase[2:]):
        np.testing.assert_array_equal(resumed[0].numpy(), full[0].numpy())


def test_an_epoch_is_a_pure_function_of_its_seed():
    a, b, c = _epoch(1), _epoch(1), _epoch(2)
    assert len(a) == 2 and a[0][0].shape == (8, 16, 16, 3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[0].numpy(), y[0].numpy())
    assert any(not np.array_equal(x[0].numpy(), y[0].numpy()) for x, y in zip(a, c))


def test_two_input_pipelines_split_the_global_batch():
    parts = [_epoch(1, tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i,
                                                  num_replicas_in_sync=2)) for i in (0, 1)]
    for part in parts:
        assert len(part) == 2 and part[0][0].shape[0] == 4  # per-replica batch = 8 / 2


def test_steps_per_epoch_drops_the_last_partial_batch():
    assert input_pipeline.steps_per_epoch(126, 64) == 1
    assert input_pipeline.steps_per_epoch(341, 64) == 5
    assert input_pipeline.steps_per_epoch(20, 64) == 1


@pytest.fixture(scope="module")
def both(sample_tfrecords):
    """The sample's rows decoded in memory, and the same rows streamed (a budget nothing fits)."""
    in_memory = input_pipeline.load_examples(sample_tfrecords, "observed+imputed", 32)
    streamed = input_pipeline.load_examples(sample_tfrecords, "observed+imputed", 32, memory_budget_gb=0)
    assert isinstance(streamed.images, input_pipeline.StreamedImages) and isinstance(in_memory.images, np.ndarray)
    return in_memory, streamed


def test_streamed_rows_are_the_in_memory_rows(both):
    in_memory, streamed = both
    for name in ("labels", "label_sources", "source_ids", "patients", "sha256"):
        np.testing.assert_array_equal(getattr(streamed, name), getattr(in_memory, name))
    rows = np.array([1, 4, 5, 9, 30])
    sizes = [2, 3]
    batches = list(input_pipeline.image_batches(streamed.subset(rows).images, sizes))
    assert [len(b) for b in batches] == sizes
    assert list(input_pipeline.image_batches(streamed.subset(rows[:0]).images, [])) == []
    np.testing.assert_array_equal(np.concatenate(batches), in_memory.images[rows])


@pytest.mark.parametrize("resample", [False, True])
def test_streaming_feeds_the_in_memory_batches_while_the_buffer_holds_every_row(both, resample):
    in_memory, streamed = both
    rows = np.arange(3, 30)

    def batches(images, labels):
        return list(input_pipeline.train_dataset(images, labels, np.ones(len(labels), np.float32), global_batch=8,
                                                 steps=3, seeds=[5, 6], augment_fn=TRAINING_AUGMENTATION,
                                                 resample=resample))

    expected = batches(tf.constant(in_memory.images[rows]), in_memory.labels[rows])
    got = batches(streamed.subset(rows).images, streamed.labels[rows])
    assert len(got) == len(expected) == 6
    for a, b in zip(got, expected):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_a_smaller_shuffle_buffer_streams_other_batches_of_the_same_rows(sample_tfrecords, both):
    in_memory, _ = both
    small = input_pipeline.load_examples(sample_tfrecords, "observed+imputed", 32, memory_budget_gb=0,
                                         shuffle_buffer=4)
    fn = augment.make_augment_fn(configs.AugmentConfig(method="none"), 0)
    n = len(small)

    def labels_fed(images):
        return np.concatenate([b[1].numpy() for b in input_pipeline.train_dataset(
            images, small.labels, np.ones(n, np.float32), global_batch=n, steps=1, seeds=[5], augment_fn=fn,
            resample=False)])

    streamed, held = labels_fed(small.images), labels_fed(tf.constant(in_memory.images))
    assert sorted(streamed) == sorted(held) == sorted(small.labels.astype(float))  # each row once per epoch
    assert not np.array_equal(streamed, held)
