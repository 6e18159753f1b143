"""The images int8 post-training quantization is calibrated on (:func:`calibration_images`: arrays, datasets
or image files, checked), and the batch check shared with :class:`~keras_xception.deploy.predictor.Predictor`."""

from __future__ import annotations

import os
import warnings

import numpy as np

from keras_xception.checks import positive_int
from keras_xception.data.dataset import map_batches
from keras_xception.data.files import list_images
from keras_xception.data.transform import Transform
from keras_xception.deploy.runtimes import RECOMMENDED_CALIBRATION

__all__ = ["as_batch", "calibration_images", "warn_if_few"]


def calibration_images(
    source,
    *,
    input_shape,
    transform: Transform | None = None,
    limit=RECOMMENDED_CALIBRATION,
    seed=0,
    what="calibration",
) -> np.ndarray:
    """Model inputs from ``source`` as one float32 array of at most ``limit`` images.

    Args:
        source: A numpy array (a batch of model inputs, already preprocessed), a ``tf.data.Dataset`` yielding
            such batches, single images, or ``(inputs, labels)`` pairs, a directory of image files (searched
            recursively), or a list of image paths. Files are read with ``transform`` (a random sample of
            ``limit`` of them when there are more, so every class folder is represented); unreadable ones are
            warned about and left out.
        input_shape: The model's input shape without the batch dimension.
        transform: How files become model inputs (required for files).
        limit: The most images to take (None: all).
        what: The argument's name, for messages (``"calibration"``, ``"holdout"``).

    Raises:
        ValueError: ``source`` is None, of another type or shape, holds no image or non-finite values.
    """
    import tensorflow as tf

    if source is None:
        raise ValueError(
            f"`{what}` is required: give a directory of images (read with the model's transform), a numpy "
            f"array of preprocessed model inputs or a tf.data.Dataset of them; about {RECOMMENDED_CALIBRATION} "
            "images are recommended."
        )
    cap = positive_int(limit, f"{what}_size", allow_none=True) or np.iinfo(np.int64).max
    input_shape = tuple(input_shape)
    paths = isinstance(source, (list, tuple)) and bool(source) and isinstance(source[0], (str, os.PathLike))
    if paths or isinstance(source, (str, os.PathLike)):
        images = _read_files(source, transform, cap, seed, what)
    elif isinstance(source, tf.data.Dataset):
        images = _take_from_dataset(source, input_shape, cap, what)
    elif isinstance(source, np.ndarray):
        images = as_batch(source, input_shape, what, one=True)[:cap]
    else:
        raise ValueError(
            f"`{what}` must be a directory of images, a list of image paths, a numpy array of model inputs or "
            f"a tf.data.Dataset; received {type(source).__name__}."
        )
    if images is None or len(images) == 0:
        raise ValueError(f"`{what}` holds no readable image.")
    if not np.all(np.isfinite(images)):
        raise ValueError(f"`{what}` images contain NaN or infinite values.")
    return np.ascontiguousarray(images, dtype=np.float32)


def _read_files(source, transform, cap, seed, what):
    """The readable images of a folder (recursively) or a list of paths, a seeded sample of ``cap``
    (None when there is no file)."""
    if transform is None:
        raise ValueError(f"Reading `{what}` image files needs the model's transform.")
    if isinstance(source, (list, tuple)):
        paths = [os.fspath(p) for p in source]
    elif os.path.isdir(source):
        paths = list_images(source)  # warns about unreadable sub-folders
    else:
        raise ValueError(f"`{what}` must be an existing directory of images; received {os.fspath(source)!r}.")
    if len(paths) > cap:  # a sample spread over every class folder, not the first ones
        keep = np.sort(np.random.default_rng(seed).choice(len(paths), cap, replace=False))
        paths = [paths[i] for i in keep]
    if not paths:
        return None
    return map_batches(lambda x: x, paths, transform, batch_size=16, verbose=0, what=f"{what} images").outputs


def _take_from_dataset(dataset, input_shape, cap, what):
    parts, count = [], 0
    for element in dataset:
        x = element[0] if isinstance(element, (tuple, list)) else element
        x = as_batch(x.numpy() if hasattr(x, "numpy") else x, input_shape, what, one=True)
        parts.append(x[: cap - count])
        count += len(parts[-1])
        if count >= cap:
            break
    return np.concatenate(parts) if parts else None


def as_batch(x, input_shape, what: str = "x", one: bool = False) -> np.ndarray:
    """``x`` as a contiguous float32 batch of shape ``(n,) + input_shape`` (None: any size), or a ValueError
    naming ``what``; with ``one``, a single image (no batch axis) is a batch of one."""
    x, input_shape = np.asarray(x), tuple(input_shape)
    if one and x.ndim == len(input_shape):
        x = x[None]
    fits = x.ndim == len(input_shape) + 1 and all(w is None or g == w for g, w in zip(x.shape[1:], input_shape))
    if not fits or not np.issubdtype(x.dtype, np.number):
        hint = " For a single image use x[None]." if x.ndim == len(input_shape) else ""
        raise ValueError(
            f"`{what}` must be a numeric batch of shape (n,) + {input_shape}; received an array of shape "
            f"{x.shape} and dtype {x.dtype}.{hint}"
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def warn_if_few(count: int, advice: str, stacklevel: int = 3) -> None:
    """Warn that ``count`` calibration images are fewer than NNCF recommends; ``advice`` says what to do
    where the warning is seen (the caller knows whether an agreement is being measured already)."""
    if count < RECOMMENDED_CALIBRATION:
        warnings.warn(
            f"int8 calibration used {count} image(s); NNCF recommends about {RECOMMENDED_CALIBRATION}, and fewer "
            f"may give a less accurate int8 model: {advice}",
            stacklevel=stacklevel,
        )
