"""What a client sends and gets back: the served signatures' names (serving/signature.py says what each is).

They live apart from the graph so that the scoring job, the model card and any client can read them without
loading TensorFlow.
"""

INPUT_NAME = "image_bytes"  # ends in _bytes: TF Serving's REST API maps {"b64": ...} onto it
IMAGES_INPUT_NAME = "images"
PROBABILITY = "probability_of_death"
CLASS = "class"
ERROR = "error"
DEFAULT_SIGNATURE = "serving_default"
IMAGES_SIGNATURE = "predict_images"
# The page's signature (`pipeline.app`): serving_default's outputs and what explains them.
EXPLAIN_SIGNATURE = "explain"
FOLD_PROBABILITIES = "fold_probabilities"
GRADCAM = "gradcam"
MODEL_INPUT = "model_input"
