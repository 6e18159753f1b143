"""Image folders: finding image files, class-per-folder splits, tf.data pipelines.

* :func:`list_images` - every image file under a directory (recursive, sorted).
* :func:`class_folder_split` - a class-per-folder tree (``root/<class>/*.jpg``)
  split into training and validation files, per class and seeded.
* :func:`image_dataset` - a batched ``tf.data.Dataset`` of ``(image, label)``
  that decodes with :func:`keras_xception.image.decode_and_transform`, the
  same transform as :func:`keras_xception.load_image`. Images come out as
  float32 in [0, 255] (not yet scaled by ``preprocess_input``).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from keras_xception.image import IMAGE_EXTENSIONS

__all__ = ["IMAGE_EXTENSIONS", "list_images", "looks_like_image", "class_folder_split", "image_dataset", "write_synthetic_tree"]



_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def looks_like_image(path):
    """Whether the file starts like a JPEG, PNG, GIF or BMP (a cheap check, no decoding)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return any(head.startswith(m) for m in _MAGIC)


def _check_dir(directory, argument):
    if not isinstance(directory, (str, os.PathLike)) or not os.path.isdir(directory):
        raise ValueError(f"`{argument}` must be an existing directory; received {argument}={directory!r}.")
    return os.fspath(directory)


def list_images(directory):
    """Paths of the image files under ``directory``, recursively, in sorted order.

    A file counts as an image by its extension (:data:`IMAGE_EXTENSIONS`, any
    case); hidden files and folders (names starting with ``.``) are ignored.
    """
    directory = _check_dir(directory, "directory")
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(root, name))
    return found


def class_folder_split(data_dir, val_split=0.2, seed=1337):
    """Split a class-per-folder image tree into training and validation files.

    Every sub-directory of ``data_dir`` is a class (sorted by name: label 0 is
    the first); its images (found recursively) are shuffled with ``seed`` and
    ``round(val_split * n)`` of them go to validation, per class, so every
    class is represented in both parts whenever it has at least 2 images.
    Files that do not start like an image (:func:`looks_like_image`) are
    skipped with a warning.

    Returns:
        ``(train_paths, train_labels, val_paths, val_labels, class_names)``;
        paths are lists of strings, labels int32 arrays.
    """
    data_dir = _check_dir(data_dir, "data_dir")
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float)) or not 0 <= val_split < 1:
        raise ValueError(f"`val_split` must be a number in [0, 1); received val_split={val_split!r}.")
    class_names = sorted(
        d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d)) and not d.startswith(".")
    )
    if len(class_names) < 2:
        raise ValueError(
            f"`data_dir` must hold one sub-directory of images per class (at least 2 classes); "
            f"{data_dir!r} has {len(class_names)}: {class_names}."
        )
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label, name in enumerate(class_names):
        files = list_images(os.path.join(data_dir, name))
        bad = [p for p in files if not looks_like_image(p)]
        if bad:
            warnings.warn(
                f"Skipping {len(bad)} file(s) that are not JPEG/PNG/GIF/BMP images: {bad}", stacklevel=2
            )
            files = [p for p in files if p not in set(bad)]
        if not files:
            raise ValueError(
                f"Class folder {os.path.join(data_dir, name)!r} has no image files "
                f"({', '.join(IMAGE_EXTENSIONS)})."
            )
        order = rng.permutation(len(files))
        n_val = int(round(val_split * len(files)))
        if val_split > 0 and len(files) >= 2:
            n_val = min(max(n_val, 1), len(files) - 1)
        val += [(files[i], label) for i in order[:n_val]]
        train += [(files[i], label) for i in order[n_val:]]

    def unzip(pairs):
        return [p for p, _ in pairs], np.array([l for _, l in pairs], dtype="int32")

    return (*unzip(train), *unzip(val), class_names)


def image_dataset(
    paths,
    labels,
    image_size=(299, 299),
    batch_size=32,
    shuffle=False,
    seed=1337,
    crop_fraction=0.875,
    resize_mode="central",
    interpolation="bilinear",
):
    """A batched ``tf.data.Dataset`` of ``(images, labels)`` from image files.

    Each file is decoded exactly as :func:`keras_xception.load_image` does
    (``decode_and_transform`` with the given transform); images are float32
    in [0, 255]. Files that cannot be decoded are dropped with a logged
    warning (``Dataset.ignore_errors``) instead of stopping training.
    """
    import tensorflow as tf

    from keras_xception.image import decode_and_transform, validate_transform

    target_size = validate_transform(image_size, crop_fraction, resize_mode, interpolation)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; received batch_size={batch_size!r}.")
    paths = [os.fspath(p) for p in paths]
    labels = np.asarray(labels, dtype="int32")
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels; they must match one to one.")

    def load(path, label):
        image = decode_and_transform(
            tf.io.read_file(path), target_size, crop_fraction, resize_mode, interpolation
        )
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors(log_warning=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


_CLASS_COLOURS = ((220, 40, 40), (40, 180, 60), (40, 70, 220), (230, 200, 40), (170, 60, 200), (40, 200, 210))


def write_synthetic_tree(
    root, classes=2, per_class=6, sizes=(71, 96), seed=0, formats=("png", "jpg"), colour_noise=0.0
):
    """Write a small class-per-folder image tree for tests, benchmarks and demos.

    Class ``k`` (folder ``class_k``) has images of one base colour (up to 6
    classes) with random brightness, noise and class-specific stripes, so a
    linear classifier on almost any image features can separate the classes.
    ``colour_noise`` in [0, 1] makes the task harder: each image's colour is
    blended with a random palette colour at a weight drawn from
    ``[0, colour_noise]``.
    Image sides are drawn from ``sizes`` (inclusive range); files alternate
    between ``formats``. Returns the list of written paths.
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
