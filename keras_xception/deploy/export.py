"""Export a model for serving (:func:`export`): the format's runtime (a
:class:`~keras_xception.deploy.predictor.Predictor`) writes it with its metadata record, then the file is read back
and compared with the model."""

from __future__ import annotations

import os
import shutil

import numpy as np

from keras_xception.data.metadata import record_path
from keras_xception.data.transform import resolve_transform
from keras_xception.deploy.hub import write_hub_preset
from keras_xception.deploy.predictor import Predictor
from keras_xception.deploy.runtimes import (
    FORMATS,
    RECOMMENDED_CALIBRATION,
    ParityError,
    check_export_path,
    check_precision,
    require,
)

__all__ = ["export", "ParityError"]


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
        path: A directory (``"savedmodel"``, BatchNormalization folded), a ``.onnx`` file (``"onnx"``) or a
            ``.xml`` file, with its ``.bin`` beside it (``"openvino"``), a new directory (``"keras-hub"``).
        format: ``"savedmodel"``, ``"onnx"``, ``"openvino"``, or ``"keras-hub"``: a KerasHub preset of an
            Xception classifier (:func:`~keras_xception.deploy.hub.write_hub_preset`, which warns what KerasHub's
            image converter does differently from ``transform``).
        precision: ``"fp32"``, or ``"int8"`` for ``"onnx"`` and ``"openvino"`` (quantized as ``Predictor``
            does; :func:`keras_xception.quantize` also measures it). bf16 is a compile setting, not a file:
            export fp32 and run ``Predictor(path, precision="bf16")``.
        calibration, calibration_size: int8 calibration images, as for ``Predictor``.
        transform: How image files become the model's inputs (default: ``resolve_transform(model=model)``);
            written with ``class_names`` into the file's metadata record, which ``Predictor(path)`` reads.
        class_names: The classes of a classifier's outputs, for the record.
        check: Read the file back and compare its outputs on 2 random images in [-1, 1] (open input
            dimensions taken as 96) with ``model``'s (fp32) or the quantized model's before it was written.
        rtol, seed: Largest allowed ``max|exported - expected| / max|expected|``; seed of the check input.

    Raises:
        ValueError: unknown format or precision, a path that does not fit the format, missing calibration
            for int8, or a bad transform.
        RuntimeNotInstalledError: the format's packages are missing (names the extra).
        ParityError: the exported artifact disagrees (the artifact is removed).
    """
    if format == "keras-hub":
        if precision != "fp32":
            raise ValueError(f"format='keras-hub' writes float32 weights; received precision={precision!r}.")
        return write_hub_preset(model, os.fspath(path), transform or resolve_transform(model=model), class_names)
    path = _check_file(path, format, precision)
    built = Predictor(
        model,
        FORMATS[format],
        precision=precision,
        calibration=calibration,
        calibration_size=calibration_size,
        transform=transform,
    )
    built.class_names = None if class_names is None else tuple(class_names)
    built.save(path)
    if check:
        expected = built.predict if precision == "int8" else (lambda x: np.asarray(model(x, training=False)))
        try:
            _check_parity(expected, model.input_shape[1:], path, format, rtol, seed)
        except BaseException:
            _remove(path, format)  # a model that fails its check is not left behind
            raise
    return path


def _check_file(path, format, precision):
    """``path`` checked for ``format`` and ``precision`` (what a file can hold), the format's runtime installed."""
    path = check_export_path(path, format)
    check_precision(precision)
    require(FORMATS[format], what=f"format={format!r}")
    if precision == "bf16":
        raise ValueError(
            "precision='bf16' is chosen when a model is compiled, not stored in the file: export in "
            "precision='fp32' and run it with Predictor(path, precision='bf16') (keras-xception predict "
            "--precision bf16)."
        )
    if precision == "int8" and format == "savedmodel":
        raise ValueError(
            "precision='int8' is written for format='onnx', 'openvino' or 'litert'; received format='savedmodel'."
        )
    return path


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
