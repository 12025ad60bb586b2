"""Pipeline wiring, configs and runners."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) hides the progress lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
