"""Export a model for serving, with a check of the written file.

:func:`export` writes a TensorFlow SavedModel, an ONNX file or an OpenVINO IR
(Keras's own ``model.export``; a SavedModel with BatchNormalization folded, see
:mod:`~keras_xception.deploy.folding`), in float32 or quantized to int8 (ONNX and OpenVINO), with its metadata record (:mod:`keras_xception.data.metadata`:
transform and class names), then loads the file back
(:class:`~keras_xception.deploy.predictor.Predictor`) and compares its outputs
with the model's on a random input.
"""

from __future__ import annotations

import os
import shutil

import numpy as np

from keras_xception.data.metadata import ModelRecord, record_path, write_record
from keras_xception.data.transform import Transform, resolve_transform
from keras_xception.deploy.backends import write
from keras_xception.deploy.folding import fold_batchnorm
from keras_xception.deploy.predictor import Predictor
from keras_xception.deploy.runtimes import FORMATS, RECOMMENDED_CALIBRATION, check_export_path, check_precision, require

__all__ = ["export", "ParityError"]


class ParityError(RuntimeError):
    """The exported artifact's outputs differ from the Keras model's."""


def export(
    model,
    path,
    format: str = "savedmodel",
    *,
    precision: str = "fp32",
    calibration=None,
    calibration_size: int = RECOMMENDED_CALIBRATION,
    transform=None,
    class_names=None,
    check: bool = True,
    rtol: float = 1e-4,
    seed: int = 0,
) -> str:
    """Write ``model`` to ``path`` in ``format`` with its metadata record, check the result, return ``path``.

    Args:
        model: A single-input functional Keras model (e.g. ``Xception(...)``).
        path: A directory (``"savedmodel"``), a ``.onnx`` file (``"onnx"``) or a
            ``.xml`` file, with its ``.bin`` beside it (``"openvino"``).
        format: ``"savedmodel"``, ``"onnx"`` or ``"openvino"``.
        precision: ``"fp32"``, or ``"int8"`` for ``"onnx"`` and ``"openvino"``
            (quantized as ``Predictor`` does; :func:`keras_xception.quantize` also
            measures it). bf16 is a compile setting, not a file: export fp32 and
            run ``Predictor(path, precision="bf16")``.
        calibration, calibration_size: int8 calibration images, as for ``Predictor``.
        transform: How image files become the model's inputs (default:
            ``resolve_transform(model=model)``); written with ``class_names`` (a
            classifier's classes) into the file's metadata record
            (:func:`keras_xception.data.metadata.record_path`), which ``Predictor(path)`` reads.
        class_names: The classes of a classifier's outputs, for the record.
        check: Load the file back and compare its outputs on 2 random images in
            [-1, 1] (open input dimensions taken as 96) with ``model``'s (fp32) or
            the quantized model's before it was written (int8).
        rtol, seed: Largest allowed ``max|exported - expected| / max|expected|``; seed of the check input.

    Raises:
        ValueError: unknown format or precision, a path that does not fit the
            format, missing calibration for int8, or a bad transform.
        RuntimeNotInstalledError: the format's packages are missing (names the extra).
        ParityError: the exported artifact disagrees (the artifact is removed).
    """
    path = check_export_path(path, format)
    transform = _check_arguments(model, format, precision, calibration, transform)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    names = None if class_names is None else tuple(class_names)
    if precision == "int8":
        expected = _write_int8(model, path, format, calibration, calibration_size, transform, names)
    else:
        # TensorFlow does not fuse Conv+BatchNormalization: folded, 11% less CPU time (deploy/folding.py).
        write(fold_batchnorm(model) if format == "savedmodel" else model, path, FORMATS[format][0])
        write_record(path, ModelRecord(transform, names))
        expected = lambda x: np.asarray(model.predict(x, verbose=0))  # noqa: E731
    if check:
        try:
            _check_parity(expected, model.input_shape[1:], path, format, rtol, seed)
        except BaseException:
            _remove(path, format)  # a model that fails its check is not left behind
            raise
    return path


def _write_int8(model, path, format, calibration, calibration_size, transform, class_names):
    """Quantize ``model`` as :class:`Predictor` does and write it; returns the quantized model's ``predict``."""
    quantized = Predictor(
        model,
        FORMATS[format][2],
        precision="int8",
        calibration=calibration,
        calibration_size=calibration_size,
        transform=transform,
    )
    quantized.class_names = class_names
    quantized.save(path)
    return quantized.predict


def _check_arguments(model, format, precision, calibration, transform) -> Transform:
    """``export``'s arguments checked before anything is written; returns the transform."""
    check_precision(precision)
    transform = resolve_transform(model=model) if transform is None else transform
    if not isinstance(transform, Transform):
        raise ValueError(f"`transform` must be a Transform (resolve_transform(...)); received {transform!r}.")
    require(FORMATS[format][2], what=f"format={format!r}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"export supports models with one input and one output; received {len(model.inputs)} "
            f"inputs and {len(model.outputs)} outputs."
        )
    if precision == "bf16":
        raise ValueError(
            "precision='bf16' is chosen when a model is compiled, not stored in the file: export in "
            "precision='fp32' and run it with Predictor(path, precision='bf16') (keras-xception predict "
            "--precision bf16)."
        )
    if precision == "int8" and format == "savedmodel":
        raise ValueError("precision='int8' is written for format='onnx' or 'openvino'; received format='savedmodel'.")
    if calibration is not None and precision != "int8":
        raise ValueError(f"`calibration` is only used with precision='int8'; received precision={precision!r}.")
    return transform


def _check_parity(expected_fn, input_shape, path, format, rtol, seed):
    shape = tuple(96 if d is None else d for d in input_shape)
    x = np.random.default_rng(seed).uniform(-1, 1, (2,) + shape).astype(np.float32)
    expected = np.asarray(expected_fn(x))
    got = Predictor(path).predict(x)
    if got.shape != expected.shape:
        raise ParityError(f"Exported {format} model at {path} returns shape {got.shape}, expected {expected.shape}.")
    diff = float(np.max(np.abs(got - expected)) / max(float(np.max(np.abs(expected))), 1e-12))
    if not diff <= rtol:
        raise ParityError(
            f"Exported {format} model at {path} disagrees with the model it was written from: relative max "
            f"difference {diff:.3g} > rtol={rtol:g}; it was removed."
        )


def _remove(path, format):
    """Delete the artifact at ``path`` and the files written beside it (no error if absent)."""
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    extra = [os.path.splitext(path)[0] + ".bin"] if format == "openvino" else []
    for p in [path, record_path(path), *extra]:
        if os.path.isfile(p):
            os.remove(p)
