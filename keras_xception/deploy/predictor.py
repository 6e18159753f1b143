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

import gc
import os
import tempfile
import time
import warnings

import numpy as np

from keras_xception.data.transform import resolve_transform
from keras_xception.deploy.artifacts import format_of, read_transform, write, write_transform
from keras_xception.deploy.folding import fold_batchnorm
from keras_xception.deploy.precision import (
    RECOMMENDED_CALIBRATION,
    SUPPORTED,
    calibration_images,
    check_precision,
    hardware_warning,
    onnx_is_int8,
    openvino_is_int8,
    quantize_onnx,
    quantize_openvino,
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
#: * OpenVINO bf16 and int8 (a 2-core Xeon with AMX): four images per call
#:   (batch 32, int8: 104 img/s against 79 in one call and 93 in streams of one
#:   image; bf16 72 against 66 and 71; batch 8: int8 102 against 97 in one call).
DEFAULT_BATCH_SIZE = {
    ("tensorflow", "fp32"): 32,
    ("onnxruntime", "fp32"): 1,
    ("onnxruntime", "int8"): 1,
    ("openvino", "fp32"): 1,
    ("openvino", "bf16"): 4,
    ("openvino", "int8"): 4,
}


def _cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _TensorFlowBackend:
    """One ``tf.function`` (input signature with a variable batch), or a loaded
    SavedModel's ``serve``, called from ``workers`` Python threads at once for
    multi-chunk inputs."""

    def __init__(self, source, threads, workers, precision, calibrate):
        import tensorflow as tf

        if isinstance(source, str):
            self._loaded = tf.saved_model.load(source)
            self._fn = self._loaded.serve
            args, kwargs = self._fn.concrete_functions[0].structured_input_signature
            spec = (list(args) + list(kwargs.values()))[0]
            self.input_shape = tuple(spec.shape[1:])
        else:
            spec = tf.TensorSpec((None,) + tuple(source.input_shape[1:]), tf.float32)
            self._fn = tf.function(lambda x: source(x, training=False), input_signature=[spec])
            self.input_shape = tuple(source.input_shape[1:])
        self.precision = "fp32"
        self._tf = tf
        self._pool = _ThreadPool(workers)

    def run_one(self, x):
        return np.asarray(self._fn(self._tf.constant(x)))

    def run_many(self, chunks):
        return self._pool.map(self.run_one, chunks)

    def save(self, path):
        raise ValueError(
            "A runtime='tensorflow' Predictor cannot be saved; write the Keras model with "
            "keras_xception.export(model, path, format='savedmodel')."
        )


class _OnnxRuntimeBackend:
    """Latency session (all threads) for one chunk; for several chunks a
    session of ``threads // workers`` threads run from ``workers`` Python
    threads at once (ONNX Runtime releases the GIL)."""

    def __init__(self, source, threads, workers, precision, calibrate):
        import onnxruntime  # noqa: F401  (fail early if missing)

        if isinstance(source, str):
            with open(source, "rb") as f:
                self._onnx = f.read()
        else:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.onnx")
                write(source, path, "onnx")
                with open(path, "rb") as f:
                    self._onnx = f.read()
            # tf2onnx leaves gigabytes of garbage behind (measured at 299x299:
            # 5.2 GB resident after the conversion, 2.5 GB after a collection).
            gc.collect()
        self.precision = "int8" if onnx_is_int8(self._onnx) else "fp32"
        if precision == "int8" and self.precision != "int8":
            self._onnx = quantize_onnx(self._onnx, calibrate(_onnx_input_shape(self._onnx)))
            self.precision = "int8"
        self._threads, self._workers = threads, workers
        self._latency = self._session(threads)
        self._throughput = None
        self._pool = _ThreadPool(workers)
        self._input = self._latency.get_inputs()[0].name
        self.input_shape = _onnx_input_shape(self._onnx)

    def _session(self, threads):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Busy-waiting threads steal the CPU from the other threads when the
        # machine is shared (measured: up to 2x slower under load).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(self._onnx, options, providers=["CPUExecutionProvider"])

    def run_one(self, x, session=None):
        return (session or self._latency).run(None, {self._input: x})[0]

    def run_many(self, chunks):
        if self._throughput is None:
            self._throughput = self._session(max(1, self._threads // self._workers))
        return self._pool.map(lambda c: self.run_one(c, self._throughput), chunks)

    def save(self, path):
        with open(path, "wb") as f:
            f.write(self._onnx)


def _onnx_input_shape(onnx_bytes):
    import onnx

    dims = onnx.load_from_string(onnx_bytes).graph.input[0].type.tensor_type.shape.dim[1:]
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


class _OpenVINOBackend:
    """A LATENCY-compiled model for one chunk; a THROUGHPUT-compiled one with
    ``workers`` streams and an async request queue for several chunks. The
    inference precision is set explicitly (OpenVINO would otherwise pick bf16
    on CPUs that have it): f32 for fp32 and for int8 (the operations NNCF
    leaves unquantized stay in float32), bf16 for bf16."""

    def __init__(self, source, threads, workers, precision, calibrate):
        import openvino as ov

        self._core = ov.Core()
        if isinstance(source, str):
            self._model = self._core.read_model(source)
        else:
            with tempfile.TemporaryDirectory(prefix="keras-xception-") as tmp:
                path = os.path.join(tmp, "model.xml")
                write(source, path, "openvino")
                with open(path) as f:  # read into memory: the folder goes now
                    xml = f.read()
                weights = ov.Tensor(np.fromfile(os.path.splitext(path)[0] + ".bin", np.uint8))
            self._model = self._core.read_model(xml, weights)
        self.input_shape = tuple(
            None if d.is_dynamic else d.get_length() for d in self._model.inputs[0].partial_shape[1:]
        )
        quantized = openvino_is_int8(self._model)
        if precision == "int8" and not quantized:
            self._model = quantize_openvino(self._model, calibrate(self.input_shape))
        self.precision = "int8" if precision == "int8" or quantized else (precision or "fp32")
        self._hint = "bf16" if self.precision == "bf16" else "f32"
        self._latency = self._compile("LATENCY", threads)
        self._threads, self._workers = threads, workers
        self._request = self._latency.create_infer_request()
        self._queue = None

    def _compile(self, hint, threads, streams=None):
        config = {
            "INFERENCE_PRECISION_HINT": self._hint,
            "PERFORMANCE_HINT": hint,
            "INFERENCE_NUM_THREADS": threads,
            # Pinned threads stall whenever another process holds their
            # core (measured: ~10% slower median on a shared 2-core CPU).
            "ENABLE_CPU_PINNING": False,
        }
        if streams:
            config["NUM_STREAMS"] = streams
        return self._core.compile_model(self._model, "CPU", config)

    def run_one(self, x):
        return self._request.infer({0: x})[0].copy()

    def run_many(self, chunks):
        import openvino as ov

        if self._queue is None:
            compiled = self._compile("THROUGHPUT", self._threads, self._workers)
            self._queue = ov.AsyncInferQueue(compiled, self._workers)
        out = [None] * len(chunks)

        def done(request, index):
            out[index] = request.get_output_tensor(0).data.copy()

        self._queue.set_callback(done)
        for i, chunk in enumerate(chunks):
            self._queue.start_async({0: chunk}, i)
        self._queue.wait_all()
        return out

    def save(self, path):
        import openvino as ov

        ov.save_model(self._model, path, compress_to_fp16=False)


class _ThreadPool:
    """``map`` over a lazily started thread pool (in order), or a plain loop for 1 worker."""

    def __init__(self, workers):
        self._workers, self._pool = workers, None

    def map(self, fn, items):
        if self._workers == 1:
            return [fn(item) for item in items]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="keras-xception")
        return list(self._pool.map(fn, items))


_BACKENDS = {"tensorflow": _TensorFlowBackend, "onnxruntime": _OnnxRuntimeBackend, "openvino": _OpenVINOBackend}


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
        threads = _positive_int(threads, "threads") or _cpu_threads()
        workers = _positive_int(workers, "workers") or threads
        _positive_int(batch_size, "batch_size")
        if calibration is not None and precision not in ("int8", None):
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
        self._backend = _BACKENDS[self.runtime](source, threads, workers, wanted, calibrate)
        self.input_shape = input_shape or self._backend.input_shape
        self.precision = self._backend.precision
        if precision is not None and self.precision != precision:
            raise ValueError(
                f"{source!r} holds an {self.precision} model; it cannot run in precision={precision!r}. "
                "Export the Keras model again in the precision you want."
            )
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
