"""Reading images the way evaluation does: decode, crop, resize.

:func:`decode_and_transform` is the one implementation of the evaluation
transform; :func:`load_image` (single files) and the ``tf.data`` pipelines in
:mod:`keras_xception.data` both call it, so a photo classified on its own and
the same photo inside an evaluation run see identical pixels.

Two crop protocols (``resize_mode``):

* ``"central"`` (the Inception/TF-slim protocol the Keras ImageNet weights
  use): keep the central ``crop_fraction`` of each side (the
  ``tf.image.central_crop`` window), then resize to ``target_size``.
* ``"shorter-side"`` (the timm/PyTorch protocol: resize the shorter side to
  ``size / crop_fraction``, centre-crop ``size``): computed as the equivalent
  crop of the original image (a window of the target's aspect ratio spanning
  ``crop_fraction`` of the shorter side), then one resize.

JPEGs are decoded and cropped in one step (``tf.io.decode_and_crop_jpeg``);
other formats (PNG, GIF, BMP) are decoded then cropped. Grayscale and CMYK
images come out as RGB.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = [
    "RESIZE_MODES",
    "INTERPOLATIONS",
    "IMAGE_EXTENSIONS",
    "validate_transform",
    "crop_window",
    "decode_and_transform",
    "load_image",
]

#: File extensions (lower case) of the formats decode_and_transform decodes.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
RESIZE_MODES = ("central", "shorter-side")
INTERPOLATIONS = ("bilinear", "bicubic")


def validate_transform(target_size, crop_fraction, resize_mode, interpolation):
    """Check the transform arguments; returns ``target_size`` as a tuple of two ints."""
    try:
        th, tw = (int(v) for v in target_size)
        ok = th >= 1 and tw >= 1 and len(tuple(target_size)) == 2
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            "`target_size` must be (height, width) with positive integers; "
            f"received target_size={target_size!r}."
        )
    if isinstance(crop_fraction, bool) or not isinstance(crop_fraction, (int, float)) or not 0 < crop_fraction <= 1:
        raise ValueError(
            f"`crop_fraction` must be a number in (0, 1]; received crop_fraction={crop_fraction!r}."
        )
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"`resize_mode` must be one of {RESIZE_MODES}; received {resize_mode!r}.")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"`interpolation` must be one of {INTERPOLATIONS}; received {interpolation!r}."
        )
    return th, tw


def crop_window(height, width, target_size, crop_fraction, resize_mode):
    """The crop ``[offset_y, offset_x, crop_height, crop_width]`` (int32 tensor) of an image."""
    import tensorflow as tf

    h = tf.cast(height, tf.float64)
    w = tf.cast(width, tf.float64)
    f = tf.constant(float(crop_fraction), tf.float64)
    if resize_mode == "central":
        # tf.image.central_crop's window: symmetric margins of floor((1 - f) * side / 2).
        oy = tf.floor((h - h * f) / 2.0)
        ox = tf.floor((w - w * f) / 2.0)
        ch, cw = h - 2.0 * oy, w - 2.0 * ox
    else:
        th, tw = (float(v) for v in target_size)
        scale = f * tf.minimum(h / th, w / tw)
        ch = tf.clip_by_value(tf.round(scale * th), 1.0, h)
        cw = tf.clip_by_value(tf.round(scale * tw), 1.0, w)
        oy = tf.floor((h - ch) / 2.0)
        ox = tf.floor((w - cw) / 2.0)
    return tf.cast(tf.stack([oy, ox, ch, cw]), tf.int32)


def decode_and_transform(
    contents,
    target_size=(299, 299),
    crop_fraction=0.875,
    resize_mode="central",
    interpolation="bilinear",
):
    """Encoded image bytes (scalar string tensor) -> float32 ``target_size + (3,)`` in [0, 255].

    Works eagerly and inside ``tf.data``/``tf.function``. Raises
    ``tf.errors.InvalidArgumentError`` for bytes that are not a decodable image.
    """
    import tensorflow as tf

    target_size = validate_transform(target_size, crop_fraction, resize_mode, interpolation)

    def jpeg():
        shape = tf.io.extract_jpeg_shape(contents)
        window = crop_window(shape[0], shape[1], target_size, crop_fraction, resize_mode)
        return tf.io.decode_and_crop_jpeg(contents, window, channels=3)

    def other():
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
        shape = tf.shape(image)
        oy, ox, ch, cw = tf.unstack(
            crop_window(shape[0], shape[1], target_size, crop_fraction, resize_mode)
        )
        return image[oy : oy + ch, ox : ox + cw, :]

    image = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    image = tf.image.resize(image, target_size, method=interpolation)
    image = tf.clip_by_value(image, 0.0, 255.0)  # bicubic overshoots
    image.set_shape(tuple(target_size) + (3,))
    return image


def load_image(
    path,
    target_size=(299, 299),
    crop_fraction=0.875,
    resize_mode="central",
    interpolation="bilinear",
):
    """Read one image file as the evaluation pipeline does.

    Args:
        path: Path of a JPEG, PNG, GIF or BMP file.
        target_size: Output ``(height, width)``.
        crop_fraction: Fraction of the image kept by the centre crop
            (``1.0``: no crop). The ImageNet weights were evaluated at 0.875.
        resize_mode: ``"central"`` or ``"shorter-side"`` (see module docs).
        interpolation: ``"bilinear"`` or ``"bicubic"``.

    Returns:
        A float32 NumPy array of shape ``(height, width, 3)``, RGB, values in
        [0, 255]; pass it (batched) through :func:`preprocess_input`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for bad arguments or a file that is not a decodable image.
    """
    import tensorflow as tf

    path = os.fspath(path)
    validate_transform(target_size, crop_fraction, resize_mode, interpolation)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No image file at {path!r}.")
    contents = tf.io.read_file(path)
    try:
        image = decode_and_transform(contents, target_size, crop_fraction, resize_mode, interpolation)
    except tf.errors.InvalidArgumentError as e:
        raise ValueError(
            f"Cannot decode {path!r} as an image (JPEG, PNG, GIF or BMP): {e.message.splitlines()[0]}"
        ) from None
    return np.asarray(image)
