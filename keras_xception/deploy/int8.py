"""int8 post-training quantization: the calibration images and the two runtimes' quantizers.

NNCF (``nncf.quantize``) quantizes OpenVINO models, ONNX Runtime's
``quantize_static`` (QDQ, per-channel int8 weights) ONNX models; both are
calibrated on the user's images, fast where the CPU has int8 dot products.

Calibration data (:func:`calibration_images`): a numpy array of model inputs
(already preprocessed), a ``tf.data.Dataset`` of them (or of ``(inputs,
labels)``), or a directory (or list) of image files read with the model's
transform. NNCF recommends about 300 images (:data:`RECOMMENDED_CALIBRATION`);
fewer work but are warned about (:func:`warn_if_few`), naming how many were used.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np

from keras_xception.checks import positive_int
from keras_xception.data.dataset import map_batches
from keras_xception.data.files import list_images
from keras_xception.data.transform import Transform
from keras_xception.deploy.runtimes import RECOMMENDED_CALIBRATION

__all__ = [
    "calibration_images",
    "warn_if_few",
    "quantize_openvino",
    "quantize_onnx",
    "openvino_is_int8",
    "onnx_is_int8",
]


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
            are more, so every class folder is represented); unreadable ones
            are warned about and left out.
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
    cap = positive_int(limit, f"{what}_size", allow_none=True) or np.iinfo(np.int64).max
    input_shape = tuple(input_shape)
    if isinstance(source, (str, os.PathLike)) or _is_path_list(source):
        images = _read_files(source, transform, cap, seed, what)
    elif isinstance(source, tf.data.Dataset):
        images = _take_from_dataset(source, input_shape, cap, what)
    elif isinstance(source, np.ndarray):
        images = _as_batch(source, input_shape, what)[:cap]
    else:
        raise ValueError(
            f"`{what}` must be a directory of images, a list of image paths, a numpy array of model inputs or "
            f"a tf.data.Dataset; received {type(source).__name__}."
        )
    if images is None or len(images) == 0:
        raise ValueError(f"`{what}` holds no readable image.")
    if not np.all(np.isfinite(images)):
        raise ValueError(f"`{what}` images contain NaN or infinite values.")
    return np.ascontiguousarray(images, dtype=np.float32)


def _is_path_list(source) -> bool:
    return isinstance(source, (list, tuple)) and bool(source) and isinstance(source[0], (str, os.PathLike))


def _read_files(source, transform, cap, seed, what):
    """The readable images of a folder (recursively) or a list of paths, a seeded sample of ``cap``
    (None when there is no file)."""
    if transform is None:
        raise ValueError(f"Reading `{what}` image files needs the model's transform.")
    if isinstance(source, (list, tuple)):
        paths = [os.fspath(p) for p in source]
    elif os.path.isdir(source):
        paths = list_images(source)  # warns about unreadable sub-folders
    else:
        raise ValueError(f"`{what}` must be an existing directory of images; received {os.fspath(source)!r}.")
    if len(paths) > cap:  # a sample spread over every class folder, not the first ones
        keep = np.sort(np.random.default_rng(seed).choice(len(paths), cap, replace=False))
        paths = [paths[i] for i in keep]
    if not paths:
        return None
    return map_batches(lambda x: x, paths, transform, batch_size=16, verbose=0, what=f"{what} images").outputs


def _take_from_dataset(dataset, input_shape, cap, what):
    parts, count = [], 0
    for element in dataset:
        x = element[0] if isinstance(element, (tuple, list)) else element
        x = _as_batch(x.numpy() if hasattr(x, "numpy") else x, input_shape, what)
        parts.append(x[: cap - count])
        count += len(parts[-1])
        if count >= cap:
            break
    return np.concatenate(parts) if parts else np.zeros((0,) + input_shape, np.float32)


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


def warn_if_few(count: int, advice: str, stacklevel: int = 3) -> None:
    """Warn that ``count`` calibration images are fewer than NNCF recommends; ``advice`` says what to do
    where the warning is seen (the caller knows whether an agreement is being measured already)."""
    if count < RECOMMENDED_CALIBRATION:
        warnings.warn(
            f"int8 calibration used {count} image(s); NNCF recommends about {RECOMMENDED_CALIBRATION}, and fewer "
            f"may give a less accurate int8 model: {advice}",
            stacklevel=stacklevel,
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
