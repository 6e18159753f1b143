"""Small class-per-folder image trees in real formats (PNG, JPEG), for the tests and benchmarks."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["write_synthetic_tree"]

_CLASS_COLOURS = ((220, 40, 40), (40, 180, 60), (40, 70, 220), (230, 200, 40), (170, 60, 200), (40, 200, 210))


def write_synthetic_tree(
    root, classes=2, per_class=6, sizes=(71, 96), seed=0, formats=("png", "jpg"), colour_noise=0.0
):
    """Write a small class-per-folder image tree.

    Class ``k`` (folder ``class_k``, up to 6) has images of one base colour with random brightness,
    noise and class-specific stripes: linearly separable on almost any features. ``colour_noise``
    in [0, 1] blends each colour with a random one (weight up to it) to make the task harder. Sides
    are drawn from ``sizes`` (inclusive); files alternate between ``formats``. Returns the paths.
    """
    import tensorflow as tf

    classes = int(classes)
    if not 1 <= classes <= len(_CLASS_COLOURS):
        raise ValueError(f"`classes` must be in [1, {len(_CLASS_COLOURS)}]; received {classes!r}.")
    rng = np.random.default_rng(seed)
    written = []
    for k in range(classes):
        folder = os.path.join(os.fspath(root), f"class_{k}")
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            h, w = rng.integers(sizes[0], sizes[1] + 1, size=2)
            other = np.array(_CLASS_COLOURS[rng.integers(len(_CLASS_COLOURS))], "float32")
            mix = rng.uniform(0, colour_noise)
            colour = ((1 - mix) * np.array(_CLASS_COLOURS[k], "float32") + mix * other) * rng.uniform(0.7, 1.1)
            image = np.broadcast_to(colour, (h, w, 3)) + rng.normal(0, 20, (h, w, 3))
            period = 4 + 3 * k
            stripes = ((np.arange(w) // period) % 2).astype("float32")[None, :, None]
            image = np.clip(image * (0.8 + 0.2 * stripes), 0, 255).astype("uint8")
            fmt = formats[i % len(formats)]
            encode = tf.io.encode_png if fmt == "png" else tf.io.encode_jpeg
            path = os.path.join(folder, f"img_{i:03d}.{fmt}")
            tf.io.write_file(path, encode(image))
            written.append(path)
    return written
