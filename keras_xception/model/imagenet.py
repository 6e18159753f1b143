"""ImageNet-1k class index and ``decode_predictions``, offline (the index ships in ``resources/``)."""

from __future__ import annotations

import functools
import json
from importlib import resources

import numpy as np

from keras_xception.checks import positive_int

__all__ = ["decode_predictions", "class_index", "NUM_CLASSES"]

NUM_CLASSES = 1000


@functools.lru_cache(maxsize=1)
def class_index() -> tuple[tuple[str, str], ...]:
    """The 1000 ``(wnid, class_name)`` pairs, in model-output order."""
    text = resources.files("keras_xception").joinpath("resources/imagenet_class_index.json").read_text()
    d = json.loads(text)
    return tuple((d[str(i)][0], d[str(i)][1]) for i in range(NUM_CLASSES))


def decode_predictions(preds, top=5):
    """Turn ImageNet class scores into ``(wnid, class_name, score)`` tuples.

    Args:
        preds: Scores of shape ``(batch, 1000)`` (NumPy array, list or tensor).
        top: How many classes to return per image, 1..1000.

    Returns:
        One list per image of ``top`` tuples ``(wnid, class_name, score)``, best first.

    Raises:
        ValueError: if ``preds`` is not shaped ``(batch, 1000)`` or ``top`` is not in 1..1000.
    """
    if positive_int(top, "top") > NUM_CLASSES:
        raise ValueError(f"`top` must be an integer in 1..{NUM_CLASSES}; received top={top!r}.")
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != NUM_CLASSES:
        raise ValueError(
            "`decode_predictions` expects a batch of ImageNet predictions, an array of shape "
            f"(batch, {NUM_CLASSES}); received shape {preds.shape}. Build the model with "
            "include_top=True and classes=1000."
        )
    if not np.issubdtype(preds.dtype, np.number):
        raise ValueError(f"`preds` must be numeric; received dtype {preds.dtype}.")
    index = class_index()
    best = np.argsort(-preds, axis=1, kind="stable")[:, :top]
    return [[(*index[i], float(row[i])) for i in row_best] for row, row_best in zip(preds, best)]
