"""The train stage's parameters: the pipeline's train settings plus what the variant decides.

Built once from the stage's parameters (`TrainParams(**params)`); later stages read the ones a run trained
with from its summary (`outputs.read_params`).
"""

from __future__ import annotations

import dataclasses

from components import configs


@dataclasses.dataclass(frozen=True)
class TrainParams(configs.TrainConfig):
    """The train stage's settings (configs.TrainConfig) plus what the variant decides."""

    variant: str = configs.outside_fold_key("original_weights")  # named apart by the two below
    labels: str = "observed"            # 'observed' | 'observed+imputed'
    rebalance: str = "class_weights"    # 'none' | 'class_weights' | 'resample'


# What names a fold's work folder (components/train/component.py: `fold_key`).
FOLD_KEY_FIELDS = configs.fold_key_fields(TrainParams)
