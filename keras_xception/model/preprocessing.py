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
        x: Images in [0, 255], any shape: a NumPy array or nested list (integers become
            ``keras.config.floatx()``, floats keep their dtype), or a backend or symbolic tensor.
        data_format: ``None``, ``"channels_first"`` or ``"channels_last"`` (the scaling is the same).

    Returns:
        A NumPy array for NumPy/list input, otherwise a tensor of the same kind.

    Raises:
        ValueError: for an unknown ``data_format`` or non-numeric input.
    """
    one_of(data_format, "data_format", _DATA_FORMATS)
    numpy = isinstance(x, (np.ndarray, list, tuple, int, float, np.number))
    x = np.asarray(x) if numpy else x
    dtype = str(x.dtype) if numpy else keras.backend.standardize_dtype(getattr(x, "dtype", "float32"))
    if dtype == "bool" or not dtype.startswith(("float", "int", "uint", "bfloat")):
        kind = "an array" if numpy else "a tensor"
        raise ValueError(
            f"`preprocess_input` expects real-valued images in [0, 255]; received {kind} of dtype {dtype}."
        )
    if not dtype.startswith(("float", "bfloat")):
        x = x.astype(keras.config.floatx()) if numpy else keras.ops.cast(x, keras.config.floatx())
    if numpy:
        return x / x.dtype.type(127.5) - x.dtype.type(1.0)  # a new array: the input is untouched
    return x / 127.5 - 1.0


def preprocessing_layer(name: str = "preprocess_input") -> keras.layers.Layer:
    """:func:`preprocess_input` as a plain ``keras.layers.Rescaling`` (no custom object to save)."""
    return keras.layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name=name)
