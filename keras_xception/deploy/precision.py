"""Reduced-precision inference: which runtime runs which precision, the CPU's
instructions for it, calibration images, and the two int8 quantizers.

* ``"fp32"``: float32 everywhere (every runtime).
* ``"bf16"``: OpenVINO's ``INFERENCE_PRECISION_HINT=bf16``: weights and
  activations in bfloat16 where the CPU has native bf16 (AVX512_BF16 or
  AMX-BF16); a compile-time setting, not a different model file.
* ``"int8"``: post-training static quantization calibrated on the user's
  images: NNCF (``nncf.quantize``) for OpenVINO, ONNX Runtime's
  ``quantize_static`` (QDQ, per-channel int8 weights) for ONNX Runtime. Fast
  where the CPU has VNNI (AVX512_VNNI, AVX-VNNI) or AMX-INT8.

Calibration data (:func:`calibration_images`): a numpy array of model inputs
(already preprocessed), a ``tf.data.Dataset`` of them (or of ``(inputs,
labels)``), or a directory (or list) of image files read with the model's
transform. NNCF recommends about 300 images (:data:`RECOMMENDED_CALIBRATION`);
fewer work but are warned about, naming how many were used.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np

from keras_xception.data.dataset import Records, explain, readable_batches
from keras_xception.data.files import list_images
from keras_xception.data.transform import Transform
from keras_xception.deploy.runtimes import PRECISIONS, RECOMMENDED_CALIBRATION, SUPPORTED

__all__ = [
    "PRECISIONS",
    "SUPPORTED",
    "RECOMMENDED_CALIBRATION",
    "INSTRUCTIONS",
    "check_precision",
    "cpu_flags",
    "hardware_warning",
    "calibration_images",
    "quantize_openvino",
    "quantize_onnx",
    "openvino_is_int8",
    "onnx_is_int8",
]

#: precision -> the ``/proc/cpuinfo`` flags that make it fast (any one is enough).
INSTRUCTIONS = {"int8": ("avx512_vnni", "avx_vnni", "amx_int8"), "bf16": ("avx512_bf16", "amx_bf16")}


def check_precision(precision, runtime: str | None = None) -> str:
    """``precision`` checked against :data:`PRECISIONS` and what ``runtime`` supports."""
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}; received precision={precision!r}.")
    if runtime is not None and precision not in SUPPORTED.get(runtime, ("fp32",)):
        able = [r for r, ps in SUPPORTED.items() if precision in ps]
        raise ValueError(
            f"runtime={runtime!r} does not run precision={precision!r} (it runs {list(SUPPORTED.get(runtime, ()))}); "
            f"use runtime='auto' or one of {able}."
        )
    return precision


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset | None:
    """The instruction-set flags of the first CPU in ``path`` (Linux), or None if unreadable."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags") and ":" in line:
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def hardware_warning(precision: str, flags=None) -> str | None:
    """A sentence saying that ``precision`` will not be fast on this CPU, or None.

    ``flags``: the CPU's flags (default :func:`cpu_flags`); None when they
    cannot be read (no warning then: nothing is known).
    """
    if precision not in INSTRUCTIONS:
        return None
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return None
    wanted = INSTRUCTIONS[precision]
    if any(f in flags for f in wanted):
        return None
    related = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx_vnni", "avx2")))
    return (
        f"precision={precision!r} is unlikely to be faster than fp32 on this CPU: it has none of "
        f"{', '.join(wanted)} (found: {', '.join(related) or 'no AVX2/AVX-512/AMX flags'})."
    )


def _as_batch(x, input_shape, what):
    x = np.asarray(x)
    if x.ndim == len(input_shape):
        x = x[None]
    if x.ndim != len(input_shape) + 1 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(
            f"`{what}` images must be a numeric batch of shape (n,) + {tuple(input_shape)}; "
            f"received an array of shape {x.shape} and dtype {x.dtype}."
        )
    for got, want in zip(x.shape[1:], input_shape):
        if want is not None and got != want:
            raise ValueError(
                f"`{what}` images must have shape (n,) + {tuple(input_shape)} (the model input); received {x.shape}."
            )
    return x.astype(np.float32, copy=False)


def _from_files(paths, transform, limit, seed, what, problems):
    if len(paths) > limit:  # a sample spread over every class folder, not the first ones
        keep = np.sort(np.random.default_rng(seed).choice(len(paths), limit, replace=False))
        paths = [paths[i] for i in keep]
    images, kept, bad = [], [], []
    if paths:
        records = Records.from_files(paths)
        for batch, _ in readable_batches(records, transform, 16, strict=False, kept=kept, bad=bad):
            if batch is not None:
                images.append(batch)
        problems.extend((name, why) for _, name, why in explain(records, bad, transform))
    if problems:
        warnings.warn(
            f"`{what}`: {len(problems)} file(s) or folder(s) could not be read and were left out: "
            + "; ".join(f"{p}: {r}" for p, r in problems),
            stacklevel=3,
        )
    return np.concatenate(images) if images else np.zeros((0,) + transform.target_size + (3,), np.float32)


def calibration_images(
    source,
    *,
    input_shape,
    transform: Transform | None = None,
    limit=RECOMMENDED_CALIBRATION,
    seed=0,
    what="calibration",
) -> np.ndarray:
    """Model inputs from ``source`` as one float32 array of at most ``limit`` images.

    Args:
        source: A numpy array (a batch of model inputs, already preprocessed),
            a ``tf.data.Dataset`` yielding such batches, single images, or
            ``(inputs, labels)`` pairs, a directory of image files (searched
            recursively), or a list of image paths. Files are read with
            ``transform`` (a random sample of ``limit`` of them when there
            are more, so every class folder is represented).
        input_shape: The model's input shape without the batch dimension.
        transform: How files become model inputs (required for files).
        limit: The most images to take (None: all).
        what: The argument's name, for messages (``"calibration"``, ``"holdout"``).

    Raises:
        ValueError: ``source`` is None, of another type, of the wrong shape,
            holds no image, or holds non-finite values.
    """
    import tensorflow as tf

    if source is None:
        raise ValueError(
            f"`{what}` is required: give a directory of images (read with the model's transform), a numpy "
            f"array of preprocessed model inputs or a tf.data.Dataset of them; about {RECOMMENDED_CALIBRATION} "
            "images are recommended."
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"The number of {what} images must be a positive integer; received {limit!r}.")
    cap = limit or np.iinfo(np.int64).max
    input_shape = tuple(input_shape)
    is_paths = isinstance(source, (list, tuple)) and bool(source) and isinstance(source[0], (str, os.PathLike))
    if isinstance(source, (str, os.PathLike)) or is_paths:
        if transform is None:
            raise ValueError(f"Reading `{what}` image files needs the model's transform.")
        problems = []
        if isinstance(source, (list, tuple)):
            paths = [os.fspath(p) for p in source]
        else:
            if not os.path.isdir(source):
                raise ValueError(f"`{what}` must be an existing directory of images; received {os.fspath(source)!r}.")
            paths = list_images(source, problems=problems)
        images = _from_files(paths, transform, cap, seed, what, problems)
    elif isinstance(source, tf.data.Dataset):
        parts, count = [], 0
        for element in source:
            x = element[0] if isinstance(element, (tuple, list)) else element
            x = _as_batch(x.numpy() if hasattr(x, "numpy") else x, input_shape, what)
            parts.append(x[: cap - count])
            count += len(parts[-1])
            if count >= cap:
                break
        images = np.concatenate(parts) if parts else np.zeros((0,) + input_shape, np.float32)
    elif isinstance(source, np.ndarray):
        images = _as_batch(source, input_shape, what)[:cap]
    else:
        raise ValueError(
            f"`{what}` must be a directory of images, a list of image paths, a numpy array of model inputs or "
            f"a tf.data.Dataset; received {type(source).__name__}."
        )
    if len(images) == 0:
        raise ValueError(f"`{what}` holds no readable image.")
    if not np.all(np.isfinite(images)):
        raise ValueError(f"`{what}` images contain NaN or infinite values.")
    return np.ascontiguousarray(images, dtype=np.float32)


def _warn_small(count):
    if count < RECOMMENDED_CALIBRATION:
        warnings.warn(
            f"int8 calibration used {count} image(s); NNCF recommends about {RECOMMENDED_CALIBRATION}. "
            "Fewer images may give a less accurate int8 model: measure its agreement (keras-xception quantize).",
            stacklevel=3,
        )


def openvino_is_int8(ov_model) -> bool:
    """Whether an OpenVINO model is already quantized (holds FakeQuantize operations)."""
    return any(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops())


def onnx_is_int8(onnx_bytes: bytes) -> bool:
    """Whether an ONNX model is already quantized (holds QuantizeLinear nodes)."""
    import onnx

    return any(
        node.op_type in ("QuantizeLinear", "QLinearConv") for node in onnx.load_from_string(onnx_bytes).graph.node
    )


def quantize_openvino(ov_model, images: np.ndarray):
    """``ov_model`` quantized to int8 by NNCF, calibrated on ``images`` (one at a time)."""
    import logging

    try:
        import nncf
    except ImportError:
        raise ImportError(
            'precision="int8" with OpenVINO needs nncf, which is not installed. Install it with: '
            'pip install "keras-xception[openvino]"'
        ) from None
    _warn_small(len(images))
    logging.getLogger("nncf").setLevel(logging.ERROR)  # its INFO lines and progress bars on stdout
    dataset = nncf.Dataset([images[i : i + 1] for i in range(len(images))])
    # MIXED: asymmetric activations (inputs and residual sums are signed); on a
    # digits-trained Xception it agreed with fp32 more closely than the default
    # (top-1 0.9975 against 0.9924, mean cosine 0.99964 against 0.99944).
    return nncf.quantize(ov_model, dataset, subset_size=len(images), preset=nncf.QuantizationPreset.MIXED)


def quantize_onnx(onnx_bytes: bytes, images: np.ndarray) -> bytes:
    """An ONNX model quantized to int8 by ONNX Runtime (static, QDQ, per-channel
    int8 weights, uint8 activations, MinMax calibration on ``images``)."""
    import onnx
    from onnxruntime import quantization as q

    _warn_small(len(images))
    graph = onnx.load_from_string(onnx_bytes).graph
    name = graph.input[0].name
    # Softmax stays float: quantized to uint8 (steps of 1/255) every class below 0.2% ties at 0,
    # and the top-5 of a 1000-class model becomes a lottery (measured on the digits model: top-5
    # overlap 0.59 with a quantized softmax).
    keep_float = [node.name for node in graph.node if node.op_type == "Softmax"]

    class _Reader(q.CalibrationDataReader):
        def __init__(self):
            self._it = iter(images[i : i + 1] for i in range(len(images)))

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {name: x}

    with tempfile.TemporaryDirectory(prefix="keras-xception-") as tmp:
        src, pre, out = (os.path.join(tmp, n) for n in ("model.onnx", "pre.onnx", "int8.onnx"))
        with open(src, "wb") as f:
            f.write(onnx_bytes)
        q.quant_pre_process(src, pre, skip_symbolic_shape=True)
        q.quantize_static(
            pre,
            out,
            _Reader(),
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            nodes_to_exclude=keep_float,
        )
        with open(out, "rb") as f:
            return f.read()
