"""How stale a trained run's batch-norm moving statistics are, and what recomputing them changes.

    python -m bench.batch_norm_staleness --train_dir OUT/train/<key> --tfrecords_dir OUT/tfrecords/<key>

For each fold of a finished train artifact: load the saved model (float32),
recompute its trainable batch-norm statistics from the fold's training rows
(`components/train/batch_norm_stats.py`, as `--recompute_batch_norm` does),
and print the ratio of the saved moving variance to the recomputed one (median
over channels; body layers summarised, head layers each), then the fold's
validation ROC AUC, balanced accuracy at 0.5 and mean probability, before and
after. A diagnosis of one run, not a speed benchmark; it reads the validation
rows only to show the effect, after the decision it informs was made.
"""

import argparse
from pathlib import Path

from common.quiet import quiet_tensorflow_logs

quiet_tensorflow_logs()  # before TensorFlow loads

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.metrics import balanced_accuracy_score, roc_auc_score  # noqa: E402

import models  # noqa: E402,F401  (registers the project's layers for loading)
from components.train import batch_norm_stats, input_pipeline, outputs  # noqa: E402


def _scores(labels, probabilities):
    return (roc_auc_score(labels, probabilities), balanced_accuracy_score(labels, probabilities > 0.5),
            float(np.mean(probabilities)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_dir", type=Path, required=True)
    parser.add_argument("--tfrecords_dir", type=Path, required=True)
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args()
    summary = outputs.read_summary(args.train_dir)
    examples = input_pipeline.load_examples(args.tfrecords_dir, summary["labels"], summary["params"]["image_size"])
    print(f"train artifact {args.train_dir}, {summary['weights']}")
    print("fold | moving/recomputed variance: body median (min-max, the stalest layer) | head layers | "
          "val ROC AUC before -> after | balanced acc before -> after | mean p before -> after")
    totals = []
    for k in range(len(summary["folds"])):
        keras.utils.set_random_seed(0)
        val_ids = set(outputs.read_fold_predictions(outputs.fold_dir(args.train_dir, k))["source_id"])
        is_val = np.isin(examples.source_ids, list(val_ids))
        train, val = examples.subset(np.where(~is_val)[0]), examples.subset(np.where(is_val)[0])
        model = keras.models.load_model(outputs.model_path(args.train_dir, k), compile=False)
        predict = lambda: tf.sigmoid(model(tf.constant(val.images), training=False)[:, 0]).numpy()  # noqa: E731
        before = _scores(val.labels, predict())
        layers = batch_norm_stats.trainable_batch_norm_layers(model)
        saved = [layer.moving_variance.numpy() for layer in layers]
        batch_norm_stats.recompute(model, train.images, args.batch_size)
        ratios = {layer.name: float(np.median(old / layer.moving_variance.numpy()))
                  for layer, old in zip(layers, saved)}
        after = _scores(val.labels, predict())
        body = {name: r for name, r in ratios.items() if not name.startswith("head_")}
        stalest = max(body, key=body.get)
        head = " ".join(f"{name} {r:.2f}" for name, r in ratios.items() if name.startswith("head_"))
        print(f"{k} | {np.median(list(body.values())):.2f} "
              f"({min(body.values()):.2f}-{body[stalest]:.2f} {stalest}) | {head} | "
              f"{before[0]:.3f} -> {after[0]:.3f} | {before[1]:.3f} -> {after[1]:.3f} | "
              f"{before[2]:.2f} -> {after[2]:.2f}")
        totals.append(before + after)
    means = np.mean(totals, axis=0)
    print(f"mean | | | {means[0]:.3f} -> {means[3]:.3f} | {means[1]:.3f} -> {means[4]:.3f} | "
          f"{means[2]:.2f} -> {means[5]:.2f}")


if __name__ == "__main__":
    main()
