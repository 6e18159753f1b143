"""Export a Keras model for serving, with a parity check against the Keras model.

:func:`export` writes a TensorFlow SavedModel, an ONNX file or an OpenVINO IR
(Keras's own ``model.export``), by default from a BatchNormalization-folded
copy of the model (:func:`keras_xception.deploy.folding.fold_batchnorm`), then loads
the artifact back with its runtime (``tf.saved_model.load``, ONNX Runtime,
OpenVINO) and compares its outputs with the Keras model's on a random input.
"""

from __future__ import annotations

import json
import os

import numpy as np

from keras_xception.data.transform import Transform, resolve_transform
from keras_xception.deploy.folding import fold_batchnorm
from keras_xception.deploy.runtimes import FORMATS, check_export_path, require

__all__ = ["export", "write", "load_runner", "transform_path", "FORMATS", "ParityError"]


class ParityError(RuntimeError):
    """The exported artifact's outputs differ from the Keras model's."""


def load_runner(path, format):
    """A numpy -> numpy function running the exported artifact at ``path`` (written in ``format``)."""
    if format == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        return lambda x: np.asarray(loaded.serve(tf.constant(x)))
    if format == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    import openvino as ov

    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda x: compiled(x)[0]


def write(model, path, keras_format):
    """``model.export`` with an explicit input signature (batch and, where the
    model leaves them open, spatial dimensions variable), so that a freshly
    built model that was never called can be exported too."""
    import gc
    import warnings

    import tensorflow as tf

    spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="input")
    with warnings.catch_warnings():  # Keras's tf2onnx numpy-2 patch warns about np.object
        warnings.simplefilter("ignore", FutureWarning)
        model.export(path, format=keras_format, verbose=False, input_signature=[spec])
    gc.collect()  # tf2onnx leaves gigabytes of garbage behind


def _check_input(model):
    shape = tuple(model.input_shape[1:])
    return tuple(96 if d is None else d for d in shape)


def export(
    model,
    path,
    format: str = "savedmodel",
    *,
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
        transform: The :class:`~keras_xception.data.transform.Transform` the
            artifact's inputs need (default: ``resolve_transform(model=model)``),
            written beside it as JSON (:func:`transform_path`), so that whatever
            serves the artifact reads images exactly as Keras does.
        fold_bn: Export a copy with BatchNormalization folded into the
            convolutions (same outputs, faster to serve).
        check: Load the artifact back and compare its outputs with
            ``model``'s on 2 random images in [-1, 1] (variable dimensions
            of the input taken as 96).
        rtol: Largest allowed ``max|exported - keras| / max|keras|``.
        seed: Seed of the random check input.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: unknown format, a path that does not fit it, or a bad transform.
        RuntimeNotInstalledError: the format's packages are missing (names the extra).
        ParityError: the exported artifact disagrees with the Keras model
            (the artifact is removed).
    """
    path = check_export_path(path, format)
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
    exported = model
    if fold_bn:
        exported = fold_batchnorm(model)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    write(exported, path, keras_format)
    with open(transform_path(path, format), "w") as f:
        json.dump(transform.to_dict(), f, indent=2)
        f.write("\n")
    if check:
        try:
            _check_parity(model, path, format, rtol, seed)
        except BaseException:
            _remove_artifact(path, format)  # a model that fails its check is not left behind
            raise
    return path


def _check_parity(model, path, format, rtol, seed):
    x = np.random.default_rng(seed).uniform(-1, 1, (2,) + _check_input(model)).astype(np.float32)
    expected = np.asarray(model.predict(x, verbose=0))
    got = np.asarray(load_runner(path, format)(x))
    if got.shape != expected.shape:
        raise ParityError(f"Exported {format} model at {path} returns shape {got.shape}, Keras {expected.shape}.")
    diff = float(np.max(np.abs(got - expected)) / max(float(np.max(np.abs(expected))), 1e-12))
    if not diff <= rtol:
        raise ParityError(
            f"Exported {format} model at {path} disagrees with the Keras model: relative max "
            f"difference {diff:.3g} > rtol={rtol:g}; it was removed."
        )


def transform_path(path, format: str) -> str:
    """Where :func:`export` writes the artifact's input transform (JSON of ``Transform.to_dict()``).

    Inside the SavedModel directory (``keras_xception_transform.json``), else
    beside the file: ``model.onnx`` -> ``model.transform.json``.
    """
    path = os.fspath(path)
    if format == "savedmodel":
        return os.path.join(path, "keras_xception_transform.json")
    return os.path.splitext(path)[0] + ".transform.json"


def _remove_artifact(path, format):
    import shutil

    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    extra = [os.path.splitext(path)[0] + ".bin"] if format == "openvino" else []
    for p in [path, transform_path(path, format), *extra]:
        if os.path.isfile(p):
            os.remove(p)
