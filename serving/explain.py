"""One uploaded X-ray explained: what the app's page shows and what its `/predict` API returns.

`Explainer` holds an exported SavedModel and its model card. `explain(path)` reads the file with the loader
ingest and `pipeline.score` use (`images.image_io.load_standard_image`: PNG, JPEG, and DICOM rendered by
`images.dicom`), calls the model's `explain` signature (`serving/signature.py`: the served probability and class,
each fold model's probability, the image as the models saw it and its Grad-CAM), and answers with one JSON-ready
object, the overlay picture and what the page should warn about. An export made before `explain` existed is
scored through `serving_default`, and the answer says what is missing instead of failing.

A file that cannot be used gets its named reason (`not_an_image: ...`) in `error`; nothing here logs or keeps
the upload, and the caller names the file neutrally (`upload.dcm`) so no reason quotes a real file name.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from images import dicom, image_io
from serving.contract import (CLASS, DEFAULT_SIGNATURE, ERROR, EXPLAIN_SIGNATURE, FOLD_PROBABILITIES, GRADCAM,
                              INPUT_NAME, MODEL_INPUT, PROBABILITY)

MODEL_CARD_JSON = "assets.extra/model_card.json"
MODEL_CARD_MARKDOWN = "assets.extra/model_card.md"
CLASS_MEANINGS = {1: "died", 0: "survived", -1: "not scored"}
# The DICOM header fields the page shows: how the picture was made, never who or when (no names, IDs, dates,
# UIDs, institution; not even age and sex).
DICOM_FIELDS = (("view_position", "view position"), ("body_part", "body part examined"), ("modality", "modality"),
                ("presentation_intent", "presentation intent"), ("photometric", "photometric interpretation"),
                ("bits_stored", "bits stored"), ("burned_in_annotation", "burned-in annotation"),
                ("transfer_syntax", "transfer syntax"))
SCREEN_WARNINGS = {
    "dicom_lateral_view": "The header says this is a lateral view: the model was trained on frontal (PA/AP) "
                          "chest X-rays only, so its answer here means nothing.",
    "dicom_not_chest": "The header says this is not a chest image: the model was trained on chest X-rays only, "
                       "so its answer here means nothing.",
    "dicom_not_xray_modality": "The header's modality is not a radiograph (CR or DX): the model was trained on "
                               "chest X-rays only, so its answer here means nothing.",
    "dicom_for_processing": "The header says this image is FOR PROCESSING (raw detector data, not for viewing): "
                            "the model was trained on images for presentation.",
}
# Ingest drops such an image (`sources/manifest.py`, reason `not_frontal`): a view in the header that is not one of
# the project's frontal views (decubitus LLD/RLD, oblique LAO/RAO/LPO/RPO, ...).
NOT_FRONTAL_WARNING = ("The header's view position is {view!r}, not a frontal view ({frontal}): the model was trained "
                       "on frontal chest X-rays only, so its answer here means nothing.")
BURNED_IN_WARNING = ("The header says text is burned into the pixels (BurnedInAnnotation YES): it may identify the "
                     "patient, and the model may read it.")
OVERLAY_ALPHA = 0.45


@dataclasses.dataclass(frozen=True)
class Explanation:
    """The `/predict` answer (`result`), the Grad-CAM overlay on the models' input (None when not scored or not
    exported), and the picture as the models saw it."""

    result: dict[str, Any]
    overlay: np.ndarray | None
    model_input: np.ndarray | None


class Explainer:
    """An exported model, its card, and what its export lacks for the page."""

    def __init__(self, saved_model_dir: Path, frontal_views: Sequence[str] = ()):
        """`frontal_views`: the views ingest keeps (the pipeline's --frontal_views); a DICOM header naming
        another is warned about. None given: no such warning."""
        import tensorflow as tf

        self.saved_model_dir, self.frontal_views = Path(saved_model_dir), tuple(frontal_views)
        loaded = tf.saved_model.load(str(self.saved_model_dir))
        self._loaded = loaded  # the signatures' functions need their object alive
        self.has_explain = EXPLAIN_SIGNATURE in loaded.signatures
        self._function = loaded.signatures[EXPLAIN_SIGNATURE if self.has_explain else DEFAULT_SIGNATURE]
        self.has_gradcam = self.has_explain and GRADCAM in self._function.structured_outputs
        card_path = self.saved_model_dir / MODEL_CARD_JSON
        self.card: dict[str, Any] | None = json.loads(card_path.read_text()) if card_path.is_file() else None
        markdown_path = self.saved_model_dir / MODEL_CARD_MARKDOWN
        self.card_markdown = markdown_path.read_text() if markdown_path.is_file() else None
        self.threshold = float(self.card["decision"]["threshold"]) if self.card else None

    def missing(self) -> list[str]:
        """What this export cannot show, in words for the page."""
        gaps = []
        if not self.has_explain:
            gaps.append(f"This export has no `{EXPLAIN_SIGNATURE}` signature (made before the app existed): no "
                        "fold-model spread and no Grad-CAM. Export the run again to get them.")
        elif not self.has_gradcam:
            gaps.append("The fold models have no `backbone` layer: no Grad-CAM.")
        if self.card is None:
            gaps.append(f"No model card ({MODEL_CARD_JSON}): intended use, data, validation and threshold unknown.")
        return gaps

    def explain_bytes(self, encoded: bytes) -> dict[str, np.ndarray]:
        """The signature's outputs for one encoded JPEG or PNG, as numpy arrays of the single item."""
        import tensorflow as tf

        outputs = self._function(**{INPUT_NAME: tf.constant([encoded])})
        return {name: value.numpy()[0] for name, value in outputs.items()}

    def explain(self, path: Path) -> Explanation:
        """Read `path` as ingest would, score it and explain it; a file that cannot be used gets its reason."""
        try:
            image = image_io.load_standard_image(Path(path))
        except image_io.ImageRejected as error:
            return Explanation(self.answer(error=str(error)), None, None)
        outputs = self.explain_bytes(image.encoded)
        warnings = []
        facts = image.dicom
        if facts is not None:
            reason = dicom.screen(facts)
            if reason:
                warnings.append(SCREEN_WARNINGS[reason])
            elif self.frontal_views and not_frontal(facts.view_position, self.frontal_views):
                warnings.append(NOT_FRONTAL_WARNING.format(view=facts.view_position.strip(),
                                                           frontal=", ".join(self.frontal_views)))
            if (facts.burned_in_annotation or "").upper() == "YES":
                warnings.append(BURNED_IN_WARNING)
        error = outputs[ERROR].decode()
        folds = outputs.get(FOLD_PROBABILITIES)
        answer = self.answer(probability=float(outputs[PROBABILITY]), klass=int(outputs[CLASS]), error=error,
                              folds=None if folds is None else [float(p) for p in folds], warnings=warnings,
                              dicom_header=None if facts is None else dicom_header(facts))
        seen = outputs.get(MODEL_INPUT) if not error else None
        heat = outputs.get(GRADCAM) if not error else None
        return Explanation(answer, None if heat is None else overlay(seen, heat), seen)

    def answer(self, probability: float = math.nan, klass: int = -1, error: str = "",
                folds: list[float] | None = None, warnings: list[str] | None = None,
                dicom_header: dict[str, str] | None = None) -> dict[str, Any]:
        """The one JSON object `/predict` returns; NaN becomes null."""
        return {PROBABILITY: _finite(probability), CLASS: klass, "class_meaning": CLASS_MEANINGS[klass],
                "threshold": self.threshold, ERROR: error,
                FOLD_PROBABILITIES: None if folds is None else [_finite(p) for p in folds],
                "warnings": warnings or [], "dicom": dicom_header,
                "model_status": (self.card or {}).get("model", {}).get("status")}


def not_frontal(view: str | None, frontal_views: Sequence[str]) -> bool:
    """A view the header names that is not one of `frontal_views`, as ingest tells it (case and spaces aside)."""
    view = (view or "").strip().lower()
    return bool(view) and view not in {frontal.strip().lower() for frontal in frontal_views}


def dicom_header(facts: dicom.DicomFacts) -> dict[str, str]:
    """The non-identifying header fields the page shows, present ones only."""
    return {label: str(getattr(facts, field)) for field, label in DICOM_FIELDS
            if getattr(facts, field) not in (None, "")}


def overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The Grad-CAM map, coloured (matplotlib's `jet`, peak red), blended over the uint8 RGB image."""
    from matplotlib import colormaps

    peak = float(np.max(heat))
    coloured = colormaps["jet"](heat / peak if peak > 0 else heat)[..., :3] * 255.0
    blended = (1 - OVERLAY_ALPHA) * image.astype(np.float32) + OVERLAY_ALPHA * coloured
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def _finite(value: float) -> float | None:
    """JSON has no NaN: an unscored probability is null."""
    return value if math.isfinite(value) else None
