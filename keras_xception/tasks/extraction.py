"""Feature extraction: one vector per image file (read as :func:`keras_xception.load_image` reads it), the
globally average-pooled output of Xception's last block (2048-d) or of the layer named by ``layer=``.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np

from keras_xception.checks import positive_int
from keras_xception.data.dataset import map_batches
from keras_xception.data.files import list_images
from keras_xception.data.results import Results, Skipped
from keras_xception.data.transform import IMAGE_EXTENSIONS, resolve_transform
from keras_xception.deploy.predictor import Predictor
from keras_xception.model.features import feature_model
from keras_xception.model.introspect import find_xception
from keras_xception.xception import build

__all__ = ["pooled_feature_model", "extract_features", "save_features"]


def pooled_feature_model(weights="imagenet", layer=None, image_size=None, arch=None):
    """A Keras model: preprocessed images (``image_size``, default: the weights') -> N x D features.

    ``layer``: default the last block's; a feature map is average pooled, a vector used as it is;
    ``ValueError`` for an unknown one (the message lists valid names).
    """
    size = resolve_transform(weights, target_size=image_size).target_size
    base = build(arch, include_top=False, weights=weights, input_shape=size + (3,), pooling=None)
    names = [layer.name for layer in find_xception(base).layers]
    layer = names[-1] if layer is None else layer
    if layer not in names:
        blocks = [n for n in names if n.endswith(("_act", "_add"))]
        raise ValueError(
            f"`layer` must name a layer of Xception; received layer={layer!r}. Activation "
            f"and residual outputs, for example: {', '.join(blocks[:4])}, ..., "
            f"{', '.join(blocks[-3:])} ({len(names)} layers in all: see "
            "Xception(include_top=False).summary())."
        )
    return feature_model(base, layer, pool=True, name="xception_features")


def _image_files(source, strict):
    """``(paths, skipped)``: the image files of a folder (searched recursively) or a list of files."""
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isdir(source):
            what = "a file, not a folder" if os.path.exists(source) else "no such folder"
            raise ValueError(f"Expected a folder of images or a list of image files; {os.fspath(source)!r}: {what}.")
        problems = []
        paths = list_images(source, problems=problems, strict=strict)
        if not paths and not problems:
            raise ValueError(f"No image files ({', '.join(IMAGE_EXTENSIONS)}) under {os.fspath(source)!r}.")
        for path, reason in problems:  # unreadable folders and files
            warnings.warn(f"Skipping {Skipped(path, reason)}", stacklevel=4)
        return paths, tuple(Skipped(path, reason) for path, reason in problems)
    paths = [os.fspath(p) for p in source]
    if not paths:
        raise ValueError("No image files given: the list of files to read is empty.")
    return paths, ()


def _feature_model(model, weights, layer, transform):
    """``model`` checked against the transform's size, or :func:`pooled_feature_model` when None."""
    if model is None:
        return pooled_feature_model(weights, layer, transform.target_size)
    if tuple(model.input_shape[1:3]) not in (transform.target_size, (None, None)):
        raise ValueError(
            f"`model` takes {tuple(model.input_shape[1:3])} images but image_size is "
            f"{transform.target_size}; pass the matching image_size."
        )
    return model


def extract_features(
    source,
    *,
    weights="imagenet",
    layer=None,
    image_size=None,
    batch_size=32,
    model=None,
    transform=None,
    runtime="keras",
    precision="fp32",
    calibration=None,
    verbose=1,
    strict=False,
) -> Results:
    """Features of every image in ``source`` (a directory, searched recursively, or a list of files).

    Args:
        source: A directory (searched by :func:`~keras_xception.data.files.list_images`) or a list of paths.
        weights: Backbone weights (``None``, a registered name or a file).
        layer: Optional layer name (see the module docstring).
        image_size: Square side (or ``(height, width)``); default: the weights' size, 299.
        batch_size: Images per forward pass.
        model: A ready single-input model instead of :func:`pooled_feature_model` (its input
            size must match the transform's; e.g. a classifier: its outputs are returned).
        transform: The :class:`~keras_xception.data.transform.Transform` (default: ``resolve_transform``
            of ``weights`` and ``model`` at ``image_size``, ``exif_orientation=True``: photos upright).
        runtime, precision, calibration: as for :class:`keras_xception.Predictor` (``"keras"``:
            ``predict_on_batch``, float32 only; int8 calibration images: a directory read with
            ``transform``, an array of model inputs or a ``tf.data.Dataset``).
        verbose: 0 silent, 1 a progress bar, 2 one line at the end.
        strict: ``ValueError`` at the first file or folder that cannot be read (else skipped).

    Returns:
        :class:`~keras_xception.data.results.Results`: ``features`` (N x D float32, also
        ``outputs``), ``paths`` (row order) and ``skipped`` (each warned about once).

    Raises:
        ValueError: bad arguments, no image files, or no readable image.
    """
    batch_size = positive_int(batch_size, "batch_size")
    paths, listing = _image_files(source, strict)
    if transform is None:
        transform = resolve_transform(weights, model=model, target_size=image_size, exif_orientation=True)
    model = _feature_model(model, weights, layer, transform)
    predict = Predictor(model, runtime, precision=precision, calibration=calibration, transform=transform).predict
    results = map_batches(predict, paths, transform, batch_size=batch_size, strict=strict, verbose=verbose)
    if results.outputs is None:
        raise ValueError(f"None of the {len(paths)} image files could be read; the first: {results.skipped[0]}.")
    return dataclasses.replace(results, skipped=listing + results.skipped)


def save_features(path, results):
    """Write :func:`extract_features`'s results to ``.npz``: ``features``, ``paths``, ``skipped`` (string arrays).

    Reads back with ``np.load(path)`` (no pickle needed).
    """
    np.savez(
        path,
        features=np.asarray(results.features, dtype="float32"),
        paths=np.array(results.paths, dtype=str),
        skipped=np.array([s.path for s in results.skipped], dtype=str),
    )
    return path
