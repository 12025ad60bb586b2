"""One fold of `--method=linear_probe`: fit the probe on the training rows, predict the validation rows,
write the fold's outputs as a fine-tuned fold does (components/train/linear_probe.py has the method)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from common import files
from components.train import fold as fold_lib, input_pipeline, linear_probe, metrics, outputs


def run_fold(classifier: keras.Model, extractor: keras.Model, fold: int, train: input_pipeline.Examples,
             val: input_pipeline.Examples, p, work_dir: Path, weights: str) -> dict[str, Any]:
    """One fold's probe (or the finished one from `work_dir`): fit on `train`, predict `val`, write the
    fold's outputs as a fine-tuned fold does; returns its record."""
    done = work_dir / fold_lib.DONE
    if done.is_file():
        return json.loads(done.read_text())
    work_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    x_train = linear_probe.features(extractor, train.images, p.eval_batch_size)
    probe = linear_probe.fit(x_train, train.labels, train.patients, p.rebalance, p.seed + fold)
    model = linear_probe.probe_classifier(classifier, probe)
    logits = linear_probe.features(model, val.images, p.eval_batch_size)[:, 0]
    seconds = time.perf_counter() - start
    result = {"fold": fold, "method": "linear_probe", "num_train": len(train), "num_val": len(val),
              **probe.record(),
              "final": fold_lib.validation_metrics(val, logits),
              "fed_counts": np.bincount(train.labels, minlength=2).tolist(), "timings": {"linear_probe": seconds},
              "train_images": 0, "weights": weights}
    outputs.write_fold(work_dir / outputs.RESULT_DIR, fold, model, [], {},
                       outputs.prediction_rows(val, metrics.sigmoid(logits)), result)
    files.write_json_atomic(done, result)
    return result
