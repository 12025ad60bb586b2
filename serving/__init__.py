"""Serving: the exported graph (`signature`), TF Serving's model folder (`push`), its warmup
requests (`warmup`) and a served model updated for a site (`update`).

`components/export.py` writes and pushes the SavedModel; `pipeline/score.py`
scores folders of images with it; docs/serving.md shows how to serve it. TF Serving's REST JSON
rules, which the tests send requests by, are a test stand-in: `tests/serving/rest.py`.
"""
