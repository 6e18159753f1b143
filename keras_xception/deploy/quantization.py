"""Reduced precision with its accuracy measured: :func:`quantize` compares the model with float32 on
held-out images (:func:`agreement`) and writes it only when it agrees."""

from __future__ import annotations

import json
import os
import pathlib
import time
import warnings

import numpy as np

from keras_xception.checks import fraction
from keras_xception.deploy.predictor import Predictor, calibration_images, runtime_of_file, warn_if_few
from keras_xception.deploy.runtimes import RECOMMENDED_CALIBRATION, check_precision, cpu_capabilities

__all__ = ["agreement", "quantize", "out_runtime", "outputs_are_classes", "DEFAULT_MIN_AGREEMENT"]

#: Default threshold of :func:`quantize`: top-1 agreement (classifiers) or mean cosine (features).
DEFAULT_MIN_AGREEMENT = 0.99

#: What the small-calibration warning advises inside :func:`quantize` (the measurement is under way).
_ADVICE = "the agreement measured on the holdout images in this run says whether it is close enough to float32."


def outputs_are_classes(model) -> bool:
    """Whether ``model``'s output is a vector of class scores (a Dense layer, possibly in a nested
    head) rather than features: decides which agreement figure gates :func:`quantize`."""
    import keras

    if len(model.output.shape) != 2:
        return False
    layer = model.layers[-1]
    while isinstance(layer, keras.Model):
        layer = layer.layers[-1]
    return isinstance(layer, keras.layers.Dense)


def out_runtime(out, runtime: str = "auto") -> str:
    """The runtime that writes ``out`` (``.xml``: openvino, ``.onnx``: onnxruntime, ``.tflite``: litert), checked
    against ``runtime``."""
    found = runtime_of_file(out)
    if found is None:
        raise ValueError(f"`out` must end with .xml (OpenVINO), .onnx (ONNX Runtime) or .tflite; received {out!r}.")
    if runtime not in ("auto", found):
        raise ValueError(f"`out` {out!r} is a {found} file but runtime={runtime!r}.")
    return found


def agreement(reference, candidate, *, classes: bool = True, k: int = 5) -> dict:
    """How closely ``candidate`` outputs follow ``reference`` outputs (same images, same order).

    Args:
        reference: float32 outputs, shape ``(n, ...)``.
        candidate: The reduced-precision outputs of the same images.
        classes: The outputs are class scores: also report top-1 agreement and top-``k`` overlap.

    Returns:
        ``count``; ``max_abs_diff`` and ``mean_abs_diff`` of the outputs (probabilities for a softmax
        classifier); ``cosine_mean`` and ``cosine_min`` of the per-image output vectors (features); with
        ``classes``: ``top1_agreement`` (fraction of images whose top class is the same) and
        ``top{k}_overlap`` (mean fraction of the reference's top ``k`` classes in the candidate's top ``k``).
    """
    ref = np.asarray(reference, np.float64)
    got = np.asarray(candidate, np.float64)
    if ref.shape != got.shape or ref.ndim < 2 or len(ref) == 0:
        raise ValueError(
            f"Outputs must have the same shape (n, ...) with n >= 1; received {ref.shape} and {got.shape}."
        )
    diff = np.abs(ref - got)
    a, b = ref.reshape(len(ref), -1), got.reshape(len(got), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.where(norms > 0, np.sum(a * b, axis=1) / np.maximum(norms, 1e-30), 1.0)
    out = {
        "count": len(ref),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "cosine_mean": float(cosine.mean()),
        "cosine_min": float(cosine.min()),
    }
    if classes:
        k = min(k, a.shape[1])
        out["top1_agreement"] = float(np.mean(a.argmax(1) == b.argmax(1)))
        top_a, top_b = np.argsort(-a, axis=1)[:, :k], np.argsort(-b, axis=1)[:, :k]
        out[f"top{k}_overlap"] = float(np.mean([len(set(x) & set(y)) / k for x, y in zip(top_a, top_b)]))
    return out


def quantize(
    model,
    calibration,
    holdout,
    *,
    precision: str = "int8",
    runtime: str = "auto",
    out=None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    calibration_size: int = RECOMMENDED_CALIBRATION,
    holdout_size: int | None = None,
    transform=None,
    report=None,
) -> dict:
    """Make a reduced-precision model, measure it against float32 on held-out images, write it if it agrees.

    Args:
        model: A single-input Keras model containing an Xception (classifier, feature model,
            transfer-learned classifier; any input size).
        calibration: int8 calibration images (see :class:`Predictor`); None for bf16.
        holdout: Images to compare on, in the same forms, apart from the calibration images.
        precision: ``"int8"`` or ``"bf16"``.
        runtime: ``"auto"``, ``"openvino"``, ``"onnxruntime"`` or ``"litert"`` (int8); default for ``out``: the
            runtime of its suffix (``.xml``, ``.onnx``, ``.tflite``).
        out: Where to write the model (``Predictor.save``), only if it agrees.
        min_agreement: The least top-1 agreement (classifiers) or mean cosine (features) to write it.
        calibration_size, holdout_size: The most images used of each.
        transform: How image files become model inputs (default: the model's).
        report: Also write the returned report as JSON to this path.

    Returns:
        The report: ``precision``, ``runtime``, ``passed``, ``gate`` (the figure compared with
        ``min_agreement``) and its ``value``, ``min_agreement``, ``written`` (the path, or None), the figures
        of :func:`agreement`, ``calibration_images``, ``holdout_images``, ``quantize_seconds``,
        ``cpu_capabilities`` (OpenVINO's, empty without it), ``transform`` and ``measured_at``. A model that
        does not agree is not written, and a warning says so.
    """
    _check_arguments(model, precision, min_agreement)
    if out is not None:
        runtime = out_runtime(out, runtime)
    predictor = _reduced(model, runtime, precision, calibration, calibration_size, transform)
    images = calibration_images(
        holdout, input_shape=predictor.input_shape, transform=predictor.transform, limit=holdout_size, what="holdout"
    )
    classes = outputs_are_classes(model)
    found = agreement(model.predict(images, batch_size=16, verbose=0), predictor.predict(images), classes=classes)
    gate = "top1_agreement" if classes else "cosine_mean"
    passed = found[gate] >= min_agreement
    written = predictor.save(out) if passed and out is not None else None
    result = _result(predictor, found, gate, passed, min_agreement, written, len(images))
    if report is not None:
        _write_json(report, result)
    if not passed:
        warnings.warn(
            f"The {precision} model does not agree with float32: {gate} {found[gate]:.4f} < min_agreement "
            f"{min_agreement} on {len(images)} held-out images" + ("; nothing was written." if out else "."),
            stacklevel=2,
        )
    return result


def _result(predictor, found, gate, passed, min_agreement, written, count) -> dict:
    return {
        "precision": predictor.precision,
        "runtime": predictor.runtime,
        "passed": bool(passed),
        "gate": gate,
        "value": found[gate],
        "min_agreement": float(min_agreement),
        "written": written,
        **found,
        "calibration_images": predictor.calibration_count,
        "holdout_images": count,
        "quantize_seconds": round(predictor.build_seconds, 2),
        "cpu_capabilities": list(cpu_capabilities() or ()),
        "transform": predictor.transform.to_dict() if predictor.transform else None,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _reduced(model, runtime, precision, calibration, calibration_size, transform):
    """The reduced-precision Predictor, with the small-calibration warning worded for :func:`quantize`."""
    with warnings.catch_warnings():  # Predictor's own wording advises measuring the agreement: under way here
        warnings.filterwarnings("ignore", message="int8 calibration used")
        predictor = Predictor(
            model,
            runtime,
            precision=precision,
            calibration=calibration,
            calibration_size=calibration_size,
            transform=transform,
        )
    if predictor.calibration_count is not None:
        warn_if_few(predictor.calibration_count, _ADVICE, stacklevel=4)
    return predictor


def _write_json(path, result):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pathlib.Path(path).write_text(json.dumps(result, indent=2) + "\n")


def _check_arguments(model, precision, min_agreement):
    import keras

    check_precision(precision)
    if precision == "fp32":
        raise ValueError("`precision` must be 'int8' or 'bf16' (fp32 is the reference it is compared with).")
    fraction(min_agreement, "min_agreement", low_open=False)
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model; received {type(model).__name__}.")
