"""One fold's pieces (components/train/fold.py): the LR sweep of a phase and the atomic checkpoint.

On the stage-3 ResNet-18 (the same blocks, parameter groups and batch norm as the whole one, a quarter of
its weights): what is asserted is the fold's, whatever the network."""

import numpy as np
import pytest

from common import files
from components.train import fold, input_pipeline, loop, strategy as strat

IMAGE_SIZE = 32
ARCH = "resnet18_stage3"


def _examples(n: int) -> input_pipeline.Examples:
    rng = np.random.default_rng(0)
    ids = np.array([f"img{i}" for i in range(n)])
    return input_pipeline.Examples(images=rng.uniform(0, 255, (n, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32),
                                   labels=np.arange(n) % 2, label_sources=np.array(["observed"] * n),
                                   source_ids=ids, patients=ids, sha256=ids,
                                   clinical=np.full((n, 5), -1), sites=np.array([""] * n),
                                   aux=np.zeros((n, 0), np.int64))


@pytest.fixture(scope="module")
def session():
    p = fold.TrainParams(arch=ARCH, image_size=IMAGE_SIZE, batch_size=8, lr_finder_steps=6, precision="fp32")
    return fold.Session(p, strat.get_strategy("default"), "fp32")


@pytest.mark.parametrize("phase", fold.PHASES)
def test_an_lr_sweep_restores_the_model_and_optimizer_and_repeats_exactly(session, phase):
    train = _examples(24)
    session.reset(7)
    batches = fold._FoldBatches(session, 0, train, fold_seed=7)
    before = loop.snapshot(session.state_variables(phase))
    sweep_batches = lambda: batches.epochs(f"lr_{phase}", range(1), session.p.lr_finder_steps)  # noqa: E731
    lr, curve = fold.lr_sweep(session, phase, sweep_batches(), session.p)
    assert lr == curve["suggestion"] and 1 <= len(curve["lrs"]) <= session.p.lr_finder_steps
    assert curve["lrs"][0] == pytest.approx(session.p.lr_finder_start)
    for a, b in zip(before, loop.snapshot(session.state_variables(phase))):
        np.testing.assert_array_equal(a, b)
    again = fold.lr_sweep(session, phase, sweep_batches(), session.p)
    assert again[0] == lr
    for key in ("lrs", "losses", "raw_losses"):
        np.testing.assert_array_equal(again[1][key], curve[key])


def test_a_checkpoint_is_written_whole_and_loads_back(session, tmp_path):
    variables = session.state_variables("frozen")
    path = tmp_path / "ckpt-frozen-000.npz"
    fold._save_checkpoint(path, variables)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left beside it
    saved = loop.snapshot(variables)
    for v in variables:
        if "float" in str(v.dtype):
            v.assign(v + 1)
    fold._load_checkpoint(path, variables)
    for a, b in zip(saved, loop.snapshot(variables)):
        np.testing.assert_array_equal(a, b)
    assert not any(p.name.startswith(files.TMP_PREFIX) for p in tmp_path.iterdir())


def test_a_streamed_fold_trains_exactly_as_the_in_memory_one(sample_tfrecords, tmp_path):
    import dataclasses

    p = fold.TrainParams(arch=ARCH, image_size=IMAGE_SIZE, batch_size=8, lr_finder_steps=4, precision="fp32",
                         epochs_frozen=1, epochs_unfrozen=1, recompute_batch_norm=True)
    session = fold.Session(p, strat.get_strategy("default"), "fp32")
    results = {}
    for budget in (float("inf"), 0.0):
        examples = input_pipeline.load_examples(sample_tfrecords, "observed", IMAGE_SIZE, memory_budget_gb=budget)
        train, val = examples.subset(np.arange(0, 24)), examples.subset(np.arange(24, len(examples)))
        result = fold.run_fold(session, 0, train, val, tmp_path / str(budget), log=lambda line: None)
        results[budget] = {k: v for k, v in result.items() if k != "timings"}
    assert isinstance(val.images, input_pipeline.StreamedImages)
    assert results[0.0] == results[float("inf")]  # LRs, every metric of the last epoch, after recomputed BN
    assert dataclasses.asdict(p)["memory_budget_gb"] == 8.0
