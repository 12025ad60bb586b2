"""The train stage: cross-validated fine-tuning of the study's classifier.

Modules in the order a batch meets them: `splits` (folds), `input_pipeline`
(TFRecords -> cached 224 px images -> tf.data), `rebalance` (class weights,
rejection resampling), the augmentations (`images/augment.py`, shared with evaluate's
test-time augmentation), `strategy`
(tf.distribute + precision), `schedule` (one-cycle), `lr_finder`, `loop` (the
one custom training step for every strategy), `fold` (one fold's phases,
checkpoints, result), `outputs` (the artifact's file layout, its writers and
readers) and `component` (the pipeline stage).
"""
