"""Input scaling for Xception ("tf" mode: 0..255 -> -1..1), as a function and a layer."""

from __future__ import annotations

import keras
import numpy as np

from keras_xception.checks import one_of

__all__ = ["preprocess_input", "preprocessing_layer"]

_DATA_FORMATS = (None, "channels_first", "channels_last")


def preprocess_input(x, data_format=None):
    """Scale images from [0, 255] to [-1, 1], the input range Xception was trained on.

    Equivalent to ``keras.applications.xception.preprocess_input`` (``x / 127.5 -
    1``) but it **never modifies its input**: a new array or tensor is returned.

    Args:
        x: Images with values in [0, 255]: a NumPy array (any numeric dtype;
            integers such as ``uint8`` become ``keras.config.floatx()``, float
            arrays keep their dtype), a nested list, a TensorFlow/backend
            tensor, or a symbolic Keras tensor. Any shape; the scaling is
            per-element, so batch and layout do not matter.
        data_format: ``None``, ``"channels_first"`` or ``"channels_last"``.
            Accepted for API compatibility; "tf" scaling is the same for both.

    Returns:
        A NumPy array for NumPy/list input, otherwise a tensor of the same kind.

    Raises:
        ValueError: for an unknown ``data_format`` or non-numeric input.
    """
    one_of(data_format, "data_format", _DATA_FORMATS)
    if isinstance(x, (np.ndarray, list, tuple, int, float, np.number)):
        arr = np.asarray(x)
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(
                f"`preprocess_input` expects real-valued images in [0, 255]; received an array of dtype {arr.dtype}."
            )
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(keras.config.floatx())
        return arr / arr.dtype.type(127.5) - arr.dtype.type(1.0)  # new array: input untouched
    dtype = keras.backend.standardize_dtype(getattr(x, "dtype", "float32"))
    if dtype == "bool" or not (dtype.startswith(("float", "int", "uint", "bfloat"))):
        raise ValueError(
            f"`preprocess_input` expects real-valued images in [0, 255]; received a tensor of dtype {dtype}."
        )
    if not dtype.startswith(("float", "bfloat")):
        x = keras.ops.cast(x, keras.config.floatx())
    return x / 127.5 - 1.0


def preprocessing_layer(name: str = "preprocess_input") -> keras.layers.Layer:
    """A Keras layer doing :func:`preprocess_input`, for models that take raw 0..255 images.

    It is a plain ``keras.layers.Rescaling(1 / 127.5, offset=-1)``, so models
    using it save and load without custom objects.
    """
    return keras.layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name=name)
