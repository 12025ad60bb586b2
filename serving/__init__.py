"""Serving: the exported graph (`signature`), TF Serving's model folder (`push`) and its REST JSON
rules (`rest`).

`components/export.py` writes and pushes the SavedModel; `pipeline/score.py`
scores folders of images with it; docs/serving.md shows how to serve it.
"""
