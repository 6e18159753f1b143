"""Fast CPU inference: :class:`Predictor` runs a Keras model on an exported runtime.

``Predictor(model, runtime=...)`` takes a single-input, single-output Keras
model (such as :func:`keras_xception.Xception`), folds its BatchNormalization
layers into the convolutions (:func:`keras_xception.deploy.folding.fold_batchnorm`),
and hands the result to one of these runtimes:

* ``"tensorflow"``: a ``tf.function`` with a fixed input signature (any batch
  size, one trace), always available.
* ``"onnxruntime"``: the model exported to ONNX (``model.export(format="onnx")``,
  tf2onnx) and run by ONNX Runtime. Extra: ``pip install "keras-xception[onnx]"``.
* ``"openvino"``: the model exported to OpenVINO IR and compiled for the CPU in
  float32. Extra: ``pip install "keras-xception[openvino]"``.
* ``"auto"``: the fastest installed one, see :func:`resolve_runtime`.

``Predictor.predict(x)`` takes a numpy array (any batch size) and returns a
numpy array with the same values as ``model.predict(x)`` up to float rounding
(relative max difference well below 1e-4).
"""

from __future__ import annotations

import gc
import os
import tempfile

import numpy as np

from keras_xception.deploy.export import write
from keras_xception.deploy.folding import fold_batchnorm
from keras_xception.deploy.runtimes import resolve_runtime

__all__ = ["Predictor", "predict_function", "DEFAULT_BATCH_SIZE"]

#: Images per runtime call by default, from benchmarks/inference.py on a
#: 2-core AVX-512 CPU at 299x299 (--single-call compares). ONNX Runtime and
#: OpenVINO: one image per call, the calls of a batch on ``workers``
#: concurrent single-threaded streams (batch 32: ONNX Runtime 24.0 vs 18.5
#: img/s in one call, OpenVINO 25.4 vs 23.8). TensorFlow: the whole batch in one
#: call (batch 32: 23.6 vs 20.4 img/s in streams of one image).
DEFAULT_BATCH_SIZE = {"tensorflow": 32, "onnxruntime": 1, "openvino": 1}


def _cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _TensorFlowBackend:
    """One ``tf.function`` (input signature with a variable batch), called
    from ``workers`` Python threads at once for multi-chunk inputs."""

    def __init__(self, model, threads, workers):
        import tensorflow as tf

        spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32)
        self._fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        self._tf = tf
        self._pool = _ThreadPool(workers)

    def run_one(self, x):
        return self._fn(self._tf.constant(x)).numpy()

    def run_many(self, chunks):
        return self._pool.map(self.run_one, chunks)


class _OnnxRuntimeBackend:
    """Latency session (all threads) for one chunk; for several chunks a
    session of ``threads // workers`` threads run from ``workers`` Python
    threads at once (ONNX Runtime releases the GIL)."""

    def __init__(self, model, threads, workers):
        import onnxruntime  # noqa: F401  (fail early if missing)

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.onnx")
            write(model, path, "onnx")
            with open(path, "rb") as f:
                self._onnx = f.read()
        # tf2onnx leaves gigabytes of garbage behind (measured at 299x299:
        # 5.2 GB resident after the conversion, 2.5 GB after a collection).
        gc.collect()
        self._threads, self._workers = threads, workers
        self._latency = self._session(threads)
        self._throughput = None
        self._pool = _ThreadPool(workers)
        self._input = self._latency.get_inputs()[0].name

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


class _OpenVINOBackend:
    """A LATENCY-compiled model for one chunk; a THROUGHPUT-compiled one with
    ``workers`` streams and an async request queue for several chunks. Both
    in float32 (OpenVINO would otherwise pick bf16 on CPUs that have it)."""

    def __init__(self, model, threads, workers):
        import openvino as ov

        # Kept for the backend's lifetime: OpenVINO may map the weights file.
        self._tmp = tempfile.TemporaryDirectory(prefix="keras-xception-")
        path = os.path.join(self._tmp.name, "model.xml")
        write(model, path, "openvino")
        self._core = ov.Core()
        self._model = self._core.read_model(path)
        self._latency = self._compile("LATENCY", threads)
        self._threads, self._workers = threads, workers
        self._request = self._latency.create_infer_request()
        self._queue = None

    def _compile(self, hint, threads, streams=None):
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
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


class Predictor:
    """Fast inference for a single-input, single-output Keras model.

    Example::

        model = keras_xception.Xception()
        predictor = Predictor(model)            # fastest installed runtime
        probs = predictor.predict(preprocess_input(images))

    Args:
        model: A functional Keras model with one input and one output. It is
            copied with BatchNormalization folded in (``fold_bn=True``) and
            exported; later changes to ``model`` do not reach the predictor.
        runtime: ``"auto"`` (default), ``"tensorflow"``, ``"onnxruntime"`` or
            ``"openvino"``; see :func:`resolve_runtime`.
        batch_size: Images per runtime call; ``predict`` splits larger inputs
            into chunks of this size (the last one may be smaller). Default:
            :data:`DEFAULT_BATCH_SIZE` of the runtime.
        threads: CPU threads to use (default: the CPUs this process may use).
            TensorFlow uses its process-wide thread pools, which this class
            never changes.
        workers: Chunks run at the same time when an input has several
            (default: ``threads``). A single chunk runs alone on all threads
            (latency mode); several run on ``workers`` streams of
            ``threads // workers`` threads each (throughput mode).
        fold_bn: Fold BatchNormalization into the convolutions first (exact;
            the runtimes are faster on the folded graph).

    A Predictor is not thread-safe: give each thread its own (it already
    uses every CPU for one call).

    Attributes:
        runtime: The runtime in use (``"auto"`` resolved).
        batch_size: Images per runtime call.
        threads, workers: As given (defaults resolved).
    """

    def __init__(
        self,
        model,
        runtime: str = "auto",
        *,
        batch_size: int | None = None,
        threads: int | None = None,
        workers: int | None = None,
        fold_bn: bool = True,
    ):
        import keras

        self.runtime = resolve_runtime(runtime)
        if not isinstance(model, keras.Model):
            raise ValueError(f"`model` must be a keras.Model; received {type(model).__name__}.")
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError(
                "Predictor supports models with one input and one output; received "
                f"{len(model.inputs)} inputs and {len(model.outputs)} outputs."
            )
        if batch_size is None:
            batch_size = DEFAULT_BATCH_SIZE[self.runtime]
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer; received batch_size={batch_size!r}.")
        if threads is None:
            threads = _cpu_threads()
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"`threads` must be a positive integer; received threads={threads!r}.")
        if workers is None:
            workers = threads
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"`workers` must be a positive integer; received workers={workers!r}.")
        self.batch_size = batch_size
        self.threads = threads
        self.workers = workers
        self.input_shape = tuple(model.input_shape[1:])
        self._output_shape = tuple(model.output_shape[1:])
        if fold_bn:
            model = fold_batchnorm(model)
        self._backend = _BACKENDS[self.runtime](model, threads, workers)

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

        The same values as ``model.predict(x)`` up to float rounding. ``x`` is
        split into chunks of ``batch_size`` images (default: ``self.batch_size``).
        """
        x = self._check(x)
        batch_size = batch_size or self.batch_size
        if len(x) == 0 and None not in self._output_shape:
            return np.zeros((0,) + self._output_shape, np.float32)
        if len(x) <= batch_size:
            return np.asarray(self._backend.run_one(x))
        chunks = [x[i : i + batch_size] for i in range(0, len(x), batch_size)]
        return np.concatenate(self._backend.run_many(chunks))

    __call__ = predict

    def __repr__(self):
        return (
            f"Predictor(runtime={self.runtime!r}, batch_size={self.batch_size}, "
            f"threads={self.threads}, workers={self.workers})"
        )


def predict_function(model, runtime: str = "auto", **kwargs):
    """A numpy -> numpy function computing ``model``'s outputs on ``runtime``.

    ``runtime="keras"`` gives plain ``model.predict`` (no export step: the
    quickest start for a handful of images); anything else builds a
    :class:`Predictor` (``kwargs`` go to it) and returns its ``predict``.
    """
    if runtime == "keras":
        return lambda x: model.predict_on_batch(x)
    return Predictor(model, runtime=runtime, **kwargs).predict
