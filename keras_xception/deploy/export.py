"""Export a model for serving, with a check of the written file.

:func:`export` writes a TensorFlow SavedModel, an ONNX file or an OpenVINO IR
(Keras's own ``model.export``), by default from a BatchNormalization-folded
copy of the model (:func:`keras_xception.deploy.folding.fold_batchnorm`), in
float32 or quantized to int8 (ONNX and OpenVINO), then loads the file back
(:class:`~keras_xception.deploy.predictor.Predictor`) and compares its outputs
with the model's on a random input.
"""

from __future__ import annotations

import os

import numpy as np

from keras_xception.data.transform import Transform, resolve_transform
from keras_xception.deploy.artifacts import remove, transform_path, write, write_transform
from keras_xception.deploy.folding import fold_batchnorm
from keras_xception.deploy.precision import RECOMMENDED_CALIBRATION, check_precision
from keras_xception.deploy.predictor import Predictor
from keras_xception.deploy.runtimes import FORMATS, check_export_path, require

__all__ = ["export", "write", "load_runner", "transform_path", "FORMATS", "ParityError"]


class ParityError(RuntimeError):
    """The exported artifact's outputs differ from the Keras model's."""


def load_runner(path, format):
    """A numpy -> numpy function running the exported artifact at ``path`` (written in ``format``)."""
    return Predictor(path, runtime=FORMATS[format][2]).predict


def _check_input(model):
    shape = tuple(model.input_shape[1:])
    return tuple(96 if d is None else d for d in shape)


def export(
    model,
    path,
    format: str = "savedmodel",
    *,
    precision: str = "fp32",
    calibration=None,
    calibration_size: int = RECOMMENDED_CALIBRATION,
    transform=None,
    fold_bn: bool = True,
    check: bool = True,
    rtol: float = 1e-4,
    seed: int = 0,
) -> str:
    """Write ``model`` to ``path`` in ``format`` and check the result.

    Args:
        model: A single-input functional Keras model (e.g. ``Xception(...)``).
        path: Output path: a directory for ``"savedmodel"``, a ``.onnx`` file
            for ``"onnx"``, a ``.xml`` file (plus ``.bin`` beside it) for
            ``"openvino"``.
        format: ``"savedmodel"``, ``"onnx"`` or ``"openvino"``.
        precision: ``"fp32"`` or ``"int8"`` (``"onnx"`` and ``"openvino"``:
            post-training quantization calibrated on ``calibration``, as
            :class:`~keras_xception.deploy.predictor.Predictor` does; measure
            its agreement with :func:`keras_xception.quantize`, which also
            writes the file only when it agrees). bf16 is not a file format
            but a compile setting: export fp32 and use
            ``Predictor(path, precision="bf16")``.
        calibration: int8 calibration images (a directory, a list of paths, a
            numpy array of model inputs or a ``tf.data.Dataset``).
        calibration_size: The most calibration images used.
        transform: The :class:`~keras_xception.data.transform.Transform` the
            artifact's inputs need (default: ``resolve_transform(model=model)``),
            written beside it as JSON (:func:`transform_path`), so that whatever
            serves the artifact reads images exactly as Keras does.
        fold_bn: Export a copy with BatchNormalization folded into the
            convolutions (same outputs, faster to serve).
        check: Load the artifact back and compare its outputs on 2 random
            images in [-1, 1] (variable dimensions of the input taken as 96)
            with ``model``'s (fp32) or with the quantized model's before it
            was written (int8).
        rtol: Largest allowed ``max|exported - expected| / max|expected|``.
        seed: Seed of the random check input.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: unknown format or precision, a path that does not fit the
            format, missing calibration for int8, or a bad transform.
        RuntimeNotInstalledError: the format's packages are missing (names the extra).
        ParityError: the exported artifact disagrees (the artifact is removed).
    """
    path = check_export_path(path, format)
    check_precision(precision)
    transform = resolve_transform(model=model) if transform is None else transform
    if not isinstance(transform, Transform):
        raise ValueError(f"`transform` must be a Transform (resolve_transform(...)); received {transform!r}.")
    keras_format, _, runtime = FORMATS[format]
    require(runtime, what=f"format={format!r}")
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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if precision == "int8":
        reference = Predictor(
            model,
            runtime,
            precision="int8",
            calibration=calibration,
            calibration_size=calibration_size,
            transform=transform,
            fold_bn=fold_bn,
        )
        reference.save(path)
        expected = reference.predict
    else:
        write(fold_batchnorm(model) if fold_bn else model, path, keras_format)
        write_transform(path, format, transform)
        expected = lambda x: np.asarray(model.predict(x, verbose=0))
    if check:
        try:
            _check_parity(expected, _check_input(model), path, format, rtol, seed)
        except BaseException:
            remove(path, format)  # a model that fails its check is not left behind
            raise
    return path


def _check_parity(expected_fn, input_shape, path, format, rtol, seed):
    x = np.random.default_rng(seed).uniform(-1, 1, (2,) + input_shape).astype(np.float32)
    expected = np.asarray(expected_fn(x))
    got = np.asarray(load_runner(path, format)(x))
    if got.shape != expected.shape:
        raise ParityError(f"Exported {format} model at {path} returns shape {got.shape}, expected {expected.shape}.")
    diff = float(np.max(np.abs(got - expected)) / max(float(np.max(np.abs(expected))), 1e-12))
    if not diff <= rtol:
        raise ParityError(
            f"Exported {format} model at {path} disagrees with the model it was written from: relative max "
            f"difference {diff:.3g} > rtol={rtol:g}; it was removed."
        )
