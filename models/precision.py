"""A trained classifier as a float32 one, for serving and evaluation on any CPU."""

from __future__ import annotations

import keras


def as_float32(model: keras.Model) -> keras.Model:
    """The same model computing in float32. Mixed-bfloat16 training keeps float32 weights, so
    nothing is lost; the served graph then runs on any CPU and matches its own check exactly."""

    def to_float32(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {key: to_float32(value) for key, value in node.items()}
        if isinstance(node, list):
            return [to_float32(value) for value in node]
        return node

    clone = model.__class__.from_config(to_float32(model.get_config()))
    clone.set_weights(model.get_weights())
    return clone
