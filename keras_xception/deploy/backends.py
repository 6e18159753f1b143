"""The inference backends behind :class:`~keras_xception.deploy.predictor.Predictor`.

Each takes a source (a Keras model, or the path of an exported file), the thread and stream counts, the precision wanted and a
``calibrate(input_shape)`` callback that returns the int8 calibration images;
each has ``input_shape``, ``precision``, ``run_one(x)`` (one call on all
threads) and ``run_many(chunks)`` (calls on concurrent streams); the exported
ones also ``save(path)``.
"""

from __future__ import annotations

import gc
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor  # starts its threads when first used

import numpy as np

from keras_xception.deploy.int8 import onnx_is_int8, openvino_is_int8, quantize_onnx, quantize_openvino

__all__ = ["BACKENDS", "cpu_threads", "write"]


def write(model, path, keras_format):
    """``model.export`` with an explicit input signature (batch and, where the
    model leaves them open, spatial dimensions variable), so that a freshly
    built model that was never called can be exported too."""
    import warnings

    import tensorflow as tf

    spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="input")
    with warnings.catch_warnings():  # Keras's tf2onnx numpy-2 patch warns about np.object
        warnings.simplefilter("ignore", FutureWarning)
        model.export(path, format=keras_format, verbose=False, input_signature=[spec])
    # tf2onnx leaves gigabytes of garbage behind (measured at 299x299:
    # 5.2 GB resident after the conversion, 2.5 GB after a collection).
    gc.collect()


def cpu_threads() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _KerasBackend:
    """The Keras model itself: ``predict_on_batch`` per chunk, one after the other."""

    def __init__(self, source, threads, workers, precision, calibrate):
        self._model, self.input_shape, self.precision = source, tuple(source.input_shape[1:]), "fp32"

    def run_one(self, x):
        return np.asarray(self._model.predict_on_batch(x))

    def run_many(self, chunks):
        return [self.run_one(c) for c in chunks]


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
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="keras-xception")

    def run_one(self, x):
        return np.asarray(self._fn(self._tf.constant(x)))

    def run_many(self, chunks):
        return list(self._pool.map(self.run_one, chunks))


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
        self.precision = "int8" if onnx_is_int8(self._onnx) else "fp32"
        if precision == "int8" and self.precision != "int8":
            self._onnx = quantize_onnx(self._onnx, calibrate(_onnx_input_shape(self._onnx)))
            self.precision = "int8"
        self._threads, self._workers = threads, workers
        self._latency = self._session(threads)
        self._throughput = None
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="keras-xception")
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
        return list(self._pool.map(lambda c: self.run_one(c, self._throughput), chunks))

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


BACKENDS = {
    "keras": _KerasBackend,
    "tensorflow": _TensorFlowBackend,
    "onnxruntime": _OnnxRuntimeBackend,
    "openvino": _OpenVINOBackend,
}
