"""Fast CPU inference: :class:`Predictor` runs a Keras model, or an exported one, on an inference runtime.

``Predictor(model, runtime=..., precision=...)`` takes a single-input,
single-output Keras model (such as :func:`keras_xception.Xception`, a feature
model or a transfer-learned classifier), folds its BatchNormalization layers
into the convolutions (:func:`keras_xception.deploy.folding.fold_batchnorm`),
and hands the result to one of these runtimes:

* ``"tensorflow"``: a ``tf.function`` with a fixed input signature (any batch
  size, one trace), always available; float32 only.
* ``"onnxruntime"``: the model exported to ONNX (tf2onnx) and run by ONNX
  Runtime; float32 or int8. Extra: ``pip install "keras-xception[onnx]"``.
* ``"openvino"``: the model exported to OpenVINO IR and compiled for the CPU;
  float32, bfloat16 or int8 (NNCF). Extra: ``pip install "keras-xception[openvino]"``.
* ``"auto"``: the fastest installed one that runs the precision, see
  :func:`~keras_xception.deploy.runtimes.resolve_runtime`.

``model`` may also be the path of an exported model (``export``'s SavedModel
directory, ``.onnx`` or ``.xml``, int8 ones included): the runtime follows
the file and the transform written beside it becomes ``predictor.transform``.

Precisions (:mod:`keras_xception.deploy.precision`): ``"fp32"`` returns the
same values as ``model.predict(x)`` up to float rounding (relative max
difference well below 1e-4); ``"bf16"`` and ``"int8"`` trade a little
accuracy for speed: measure it with :func:`keras_xception.quantize`.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np

from keras_xception.data.transform import resolve_transform
from keras_xception.deploy.artifacts import format_of, read_transform, write_transform
from keras_xception.deploy.backends import BACKENDS, cpu_threads
from keras_xception.deploy.folding import fold_batchnorm
from keras_xception.deploy.precision import (
    RECOMMENDED_CALIBRATION,
    SUPPORTED,
    calibration_images,
    check_precision,
    hardware_warning,
)
from keras_xception.deploy.runtimes import (
    FORMATS,
    RuntimeNotInstalledError,
    available_runtimes,
    check_export_path,
    require,
    resolve_runtime,
)

__all__ = ["Predictor", "predict_function", "DEFAULT_BATCH_SIZE"]

#: Images per runtime call by default, per (runtime, precision), from
#: benchmarks/inference.py on 2-core AVX-512 CPUs at 299x299. A single call
#: (an input of at most this many images) runs on all threads (latency mode);
#: more images are split into calls of this size, run on ``workers`` concurrent
#: single-threaded streams (throughput mode).
#: * fp32, ONNX Runtime and OpenVINO: one image per call (batch 32: ONNX Runtime
#:   24.0 vs 18.5 img/s in one call, OpenVINO 25.4 vs 23.8); TensorFlow: the
#:   whole batch in one call (batch 32: 23.6 vs 20.4 img/s in streams of one).
#: * OpenVINO bf16 and int8 (a 2-core Xeon with AMX; benchmarks/results/inference_strategies.txt):
#:   four images per call (int8, batch 8: 93.9 img/s against 75.0 in one call and 80.4 in
#:   single-image calls; batch 32: 92.6 against 73.9 and 90.0; bf16, batch 8: 76.2 against 70.6
#:   and 71.7). ONNX Runtime int8: one image per call (batch 8: 47.3 against 42.5 in one call).
DEFAULT_BATCH_SIZE = {
    ("tensorflow", "fp32"): 32,
    ("onnxruntime", "fp32"): 1,
    ("onnxruntime", "int8"): 1,
    ("openvino", "fp32"): 1,
    ("openvino", "bf16"): 4,
    ("openvino", "int8"): 4,
}


def _positive_int(value, name):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"`{name}` must be a positive integer; received {name}={value!r}.")
    return value


def _runtime_for(runtime, precision):
    """``runtime`` resolved for ``precision`` ("auto": the first installed runtime that runs it)."""
    if runtime != "auto":
        runtime = resolve_runtime(runtime)
        check_precision(precision, runtime)
        return runtime
    able = [r for r in available_runtimes() if precision in SUPPORTED[r]]
    if not able:
        raise RuntimeNotInstalledError(
            f"precision={precision!r} needs OpenVINO (or ONNX Runtime for int8). Install it with: "
            'pip install "keras-xception[openvino]"'
        )
    return able[0]


class Predictor:
    """Fast CPU inference for a single-input, single-output Keras model or an exported one.

    Example::

        model = keras_xception.Xception()
        predictor = Predictor(model)                       # fastest installed runtime, float32
        probs = predictor.predict(preprocess_input(images))
        int8 = Predictor(model, precision="int8", calibration="my_photos/")
        int8.save("xception_int8.xml")                     # build once ...
        int8 = Predictor("xception_int8.xml")              # ... reuse

    Args:
        model: A functional Keras model with one input and one output (copied
            with BatchNormalization folded in and exported; later changes to
            ``model`` do not reach the predictor), or the path of a model
            written by :func:`keras_xception.export` or :meth:`save`.
        runtime: ``"auto"`` (default), ``"tensorflow"``, ``"onnxruntime"`` or
            ``"openvino"``. ``"auto"`` picks the fastest installed runtime
            that runs ``precision``; for a file, the runtime of its format.
        precision: ``"fp32"`` (default for a Keras model), ``"bf16"``
            (OpenVINO) or ``"int8"`` (OpenVINO with NNCF, or ONNX Runtime);
            for a file, default: the file's own (``"int8"`` for a quantized one).
        calibration: For ``precision="int8"`` (unless the file is already
            quantized): images to calibrate the quantization on, seen as the
            model sees them: a directory of image files (read with
            ``transform``), a list of image paths, a numpy array of model
            inputs (preprocessed) or a ``tf.data.Dataset`` of them (or of
            ``(inputs, labels)``). About 300 images are recommended; fewer
            are warned about.
        calibration_size: The most calibration images used (a random sample
            of a larger directory).
        transform: How image files become this model's inputs (default: the
            one written beside a file, else ``resolve_transform(model=model)``);
            used to read a calibration directory, and kept as ``self.transform``.
        batch_size: Images per runtime call; ``predict`` splits larger inputs
            into chunks of this size (the last one may be smaller). Default:
            :data:`DEFAULT_BATCH_SIZE` of the runtime and precision.
        threads: CPU threads to use (default: the CPUs this process may use).
            TensorFlow uses its process-wide thread pools, which this class
            never changes.
        workers: Chunks run at the same time when an input has several
            (default: ``threads``). A single chunk runs alone on all threads
            (latency mode); several run on ``workers`` streams of
            ``threads // workers`` threads each (throughput mode).
        fold_bn: Fold BatchNormalization into the convolutions first (exact;
            the runtimes are faster on the folded graph).

    Warns when the CPU lacks the instructions that make ``precision`` fast
    (read from ``/proc/cpuinfo``) and when int8 calibration uses fewer than
    300 images.

    A Predictor is not thread-safe: give each thread its own (it already
    uses every CPU for one call).

    Attributes:
        runtime, precision: In use (``"auto"`` and defaults resolved).
        transform: The input :class:`~keras_xception.data.transform.Transform` (None if unknown).
        calibration_count: Images the int8 model was calibrated on here (None otherwise).
        build_seconds: Time to export (and quantize) the model.
        batch_size, threads, workers: As given (defaults resolved).
    """

    def __init__(
        self,
        model,
        runtime: str = "auto",
        *,
        precision: str | None = None,
        calibration=None,
        calibration_size: int = RECOMMENDED_CALIBRATION,
        transform=None,
        batch_size: int | None = None,
        threads: int | None = None,
        workers: int | None = None,
        fold_bn: bool = True,
    ):
        import keras

        started = time.perf_counter()
        if precision is not None:
            check_precision(precision)
        _positive_int(calibration_size, "calibration_size")
        threads = _positive_int(threads, "threads") or cpu_threads()
        workers = _positive_int(workers, "workers") or threads
        _positive_int(batch_size, "batch_size")
        if calibration is not None and precision != "int8":
            raise ValueError(
                f"`calibration` is only used with precision='int8'; received precision={precision!r}. "
                "Leave calibration out, or ask for precision='int8'."
            )
        self.calibration_count = None
        if isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            fmt = format_of(path)
            file_runtime = FORMATS[fmt][2]
            if runtime not in ("auto", file_runtime):
                raise ValueError(
                    f"{path!r} is a {fmt} model, run by runtime={file_runtime!r}; received runtime={runtime!r}. "
                    "Leave runtime='auto' for an exported file."
                )
            require(file_runtime)
            if precision is not None:
                check_precision(precision, file_runtime)
            self.runtime = file_runtime
            transform = transform or read_transform(path, fmt)
            source = path
            input_shape = None
        elif isinstance(model, keras.Model):
            if len(model.inputs) != 1 or len(model.outputs) != 1:
                raise ValueError(
                    "Predictor supports models with one input and one output; received "
                    f"{len(model.inputs)} inputs and {len(model.outputs)} outputs."
                )
            self.runtime = _runtime_for(runtime, precision or "fp32")
            input_shape = tuple(model.input_shape[1:])
            transform = transform or resolve_transform(model=model)
            source = fold_batchnorm(model) if fold_bn else model
        else:
            raise ValueError(
                "`model` must be a keras.Model or the path of an exported model (.xml, .onnx or a SavedModel "
                f"directory); received {type(model).__name__}."
            )
        self.transform = transform
        images = None

        def calibrate(shape):
            nonlocal images
            if images is None:
                images = calibration_images(calibration, input_shape=shape, transform=transform, limit=calibration_size)
                self.calibration_count = len(images)
            return images

        wanted = precision or ("fp32" if input_shape is not None else None)
        if wanted == "int8" and input_shape is not None:
            calibrate(input_shape)  # bad calibration data fails before the slow export
        self._backend = BACKENDS[self.runtime](source, threads, workers, wanted, calibrate)
        self.input_shape = input_shape or self._backend.input_shape
        self.precision = self._backend.precision
        if precision is not None and self.precision != precision:
            raise ValueError(
                f"{source!r} holds an {self.precision} model; it cannot run in precision={precision!r}. "
                "Export the Keras model again in the precision you want."
            )
        if calibration is not None and self.calibration_count is None:
            warnings.warn(f"{source!r} is already quantized to int8; `calibration` was not used.", stacklevel=2)
        message = hardware_warning(self.precision)
        if message:
            warnings.warn(message, stacklevel=2)
        self._output_shape = tuple(model.output_shape[1:]) if input_shape is not None else None
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE[(self.runtime, self.precision)]
        self.threads = threads
        self.workers = workers
        self.build_seconds = time.perf_counter() - started

    def _check(self, x):
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1:
            raise ValueError(
                f"`x` must be a batch of shape (batch,) + {self.input_shape}; received an array "
                f"of shape {x.shape}. For a single image use x[None]."
            )
        for got, want in zip(x.shape[1:], self.input_shape):
            if want is not None and got != want:
                raise ValueError(f"`x` must have shape (batch,) + {self.input_shape}; received {x.shape}.")
        if not np.issubdtype(x.dtype, np.number):
            raise ValueError(f"`x` must be numeric; received dtype {x.dtype}.")
        return np.ascontiguousarray(x, dtype=np.float32)

    def predict(self, x, batch_size: int | None = None) -> np.ndarray:
        """Outputs for the batch ``x`` (numpy, any batch size), as a float32 numpy array.

        In fp32 the same values as ``model.predict(x)`` up to float rounding.
        ``x`` is split into chunks of ``batch_size`` images (default: ``self.batch_size``).
        """
        x = self._check(x)
        batch_size = batch_size or self.batch_size
        if len(x) == 0:
            if self._output_shape is not None and None not in self._output_shape:
                return np.zeros((0,) + self._output_shape, np.float32)
            raise ValueError("`x` holds no image.")
        if len(x) <= batch_size:
            return np.asarray(self._backend.run_one(x))
        chunks = [x[i : i + batch_size] for i in range(0, len(x), batch_size)]
        return np.concatenate(self._backend.run_many(chunks))

    __call__ = predict

    def save(self, path) -> str:
        """Write the runtime's model (int8 included) to ``path`` with its transform beside it.

        ``.xml`` (plus ``.bin``) for OpenVINO, ``.onnx`` for ONNX Runtime;
        ``Predictor(path)`` loads it again. A bf16 predictor writes the
        float32 model (bf16 is chosen when a model is compiled): load it with
        ``Predictor(path, precision="bf16")``.
        """
        fmt = {"openvino": "openvino", "onnxruntime": "onnx"}.get(self.runtime)
        if fmt is None:
            self._backend.save(path)  # raises, saying what to do
        path = check_export_path(path, fmt)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._backend.save(path)
        if self.transform is not None:
            write_transform(path, fmt, self.transform)
        return path

    def __repr__(self):
        return (
            f"Predictor(runtime={self.runtime!r}, precision={self.precision!r}, batch_size={self.batch_size}, "
            f"threads={self.threads}, workers={self.workers})"
        )


def predict_function(model, runtime: str = "auto", **kwargs):
    """A numpy -> numpy function computing ``model``'s outputs on ``runtime``.

    ``runtime="keras"`` gives plain ``model.predict_on_batch`` (no export
    step: the quickest start for a handful of images; float32 only);
    anything else builds a :class:`Predictor` (``kwargs``, e.g.
    ``precision`` and ``calibration``, go to it) and returns its ``predict``.
    """
    if runtime == "keras":
        if kwargs.get("precision") not in (None, "fp32") or kwargs.get("calibration") is not None:
            raise ValueError(
                f"runtime='keras' runs in float32 only; received precision={kwargs.get('precision')!r}. "
                "Use runtime='auto' (or 'openvino', 'onnxruntime') for bf16 or int8."
            )
        return lambda x: model.predict_on_batch(x)
    return Predictor(model, runtime=runtime, **kwargs).predict
