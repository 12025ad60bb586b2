import keras
import pytest


@pytest.fixture
def mixed_bfloat16():
    """Mixed bfloat16 for one test, float32 restored after it."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")
