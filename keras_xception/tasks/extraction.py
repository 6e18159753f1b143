"""Feature extraction: one vector per image file (read as :func:`keras_xception.load_image` reads it), the
globally average-pooled output of Xception's last block (2048-d) or of the layer named by ``layer=``.
"""

from __future__ import annotations

import glob
import os
import warnings

import keras
import numpy as np

from keras_xception.checks import one_of, positive_int
from keras_xception.data.files import list_images, read_path_list
from keras_xception.data.results import Results, Skipped
from keras_xception.data.shards import ENGINES
from keras_xception.data.transform import IMAGE_EXTENSIONS, resolve_transform
from keras_xception.deploy.predictor import Predictor
from keras_xception.model.features import feature_model
from keras_xception.model.introspect import find_xception
from keras_xception.tasks.scale import counting, finish_bar, run_unit, work_units, write_features
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


def _inputs(source, strict):
    """``(items, tfrecord, skipped)``: the image files of a folder (searched recursively), of a text or Parquet
    list or of a list given; else TFRecord files (a file or a glob)."""
    if isinstance(source, (str, os.PathLike)) and not os.path.isdir(source):
        source = os.fspath(source)
        if source.endswith((".txt", ".parquet")) and os.path.isfile(source):
            source = read_path_list(source)
        elif files := sorted(f for f in glob.glob(source) if os.path.isfile(f)):
            return files, True, ()
        else:
            raise ValueError(f"Expected a folder, a .txt/.parquet list or TFRecord files; {source!r}: no such folder.")
    if isinstance(source, (str, os.PathLike)):
        problems = []
        paths = list_images(source, problems=problems, strict=strict)
        if not paths and not problems:
            raise ValueError(f"No image files ({', '.join(IMAGE_EXTENSIONS)}) under {os.fspath(source)!r}.")
        for path, reason in problems:  # unreadable folders and files
            warnings.warn(f"Skipping {Skipped(path, reason)}", stacklevel=4)
        return paths, False, tuple(Skipped(path, reason) for path, reason in problems)
    paths = [os.fspath(p) for p in source]
    if not paths:
        raise ValueError("No image files given: the list of files to read is empty.")
    return paths, False, ()


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
    out=None,
    overwrite=False,
    engine="local",
    address=None,
    shard_size=4096,
):
    """Features of every image in ``source``.

    Args:
        source: A directory (searched by :func:`~keras_xception.data.files.list_images`), a list of paths,
            a ``.txt`` (one path a line) or ``.parquet`` (``path`` column) list, or TFRecord files (a glob).
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
        out, overwrite, engine, address, shard_size: ``out`` a folder: Parquet shards and a manifest,
            resumable; ``engine="ray"``: on a Ray cluster (``address``; default: a local one). See
            docs/extraction.md. A ``.npz``: :func:`save_features` of the results.

    Returns:
        :class:`~keras_xception.data.results.Results`: ``features`` (N x D float32, also
        ``outputs``), ``paths`` (row order) and ``skipped`` (each warned about once); with ``out`` a
        folder, the manifest (a dict: ``images``, ``dimension``, ``shards``, ``skipped``, ``settings``).

    Raises:
        ValueError: bad arguments, no image files, or no readable image.
    """
    options = dict(batch_size=positive_int(batch_size, "batch_size"), strict=strict, verbose=verbose)
    shard_size, engine = positive_int(shard_size, "shard_size"), one_of(engine, "engine", ENGINES)
    items, tfrecord, listing = _inputs(source, strict)
    if transform is None:
        transform = resolve_transform(weights, model=model, target_size=image_size, exif_orientation=True)
    model = _feature_model(model, weights, layer, transform)
    run = dict(runtime=runtime, precision=precision, calibration=calibration, transform=transform)
    if out is None or os.fspath(out).endswith(".npz"):
        if engine != "local":
            raise ValueError(f"engine={engine!r} writes Parquet shards: give `out` a folder (--out DIR/).")
        results = _in_memory(items, tfrecord, listing, model, run, **options)
        return results if out is None else save_features(out, results) and results
    names = dict(weights=weights and os.fspath(weights), model=model.name, layer=layer)
    options.update(engine=engine, address=address, overwrite=overwrite, shard_size=shard_size)
    manifest = write_features(os.fspath(out), items, tfrecord, model, run, names, listing, **options)
    return manifest if manifest["images"] else _none_readable(items, Skipped(**manifest["skipped"][0]))


def _in_memory(items, tfrecord, listing, model, run, verbose, **options):
    """:func:`extract_features` into one :class:`Results`."""
    progbar = keras.utils.Progbar(None if tfrecord else len(items), verbose=verbose, unit_name="image")
    predict = counting(Predictor(model, **run).predict, progbar)
    parts = [run_unit(predict, unit, run["transform"], **options) for unit in work_units(items, tfrecord)]
    finish_bar(progbar, sum(len(p.paths) + len(p.skipped) for p in parts))
    if all(p.outputs is None for p in parts):
        _none_readable(items, parts[0].skipped[0])
    outputs = np.concatenate([p.outputs for p in parts if p.outputs is not None])
    return Results(outputs, [x for p in parts for x in p.paths], skipped=listing + sum((p.skipped for p in parts), ()))


def _none_readable(items, first):
    raise ValueError(f"None of the {len(items)} inputs could be read; the first: {first}.")


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
