"""The backends of :class:`~keras_xception.deploy.predictor.Predictor`, one class per runtime, built as
``Backend(source, threads, workers, precision, calibrate)`` (``calibrate(input_shape)``: the int8 calibration
images): how it builds from a Keras model or reads its file, quantizes to int8, runs one chunk on all threads
(``run_one``) or several on concurrent streams (``run_many``) and writes its file (``save``)."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor  # starts its threads when first used

import numpy as np

from keras_xception.deploy.folding import fold_batchnorm
from keras_xception.deploy.runtimes import RuntimeNotInstalledError

__all__ = ["BACKENDS", "cpu_threads", "write"]

# _SATURATION: int8 weights use 7 bits (-64..63) in both runtimes. Without AVX512_VNNI / AVX-VNNI, x86 int8
# kernels add pairs of u8 x s8 products in int16 (VPMADDUBSW), which saturates with full 8-bit weights: on an
# AVX2-only AMD EPYC the digits model's int8 top-1 agreement fell to 0.57 (OpenVINO) and 0.33 (ONNX Runtime)
# while the same quantized graph computed in float agreed at 0.995. A saved int8 file may run on any CPU.


def write(model, path, keras_format):
    """``model.export`` with an input signature (batch and open spatial dimensions variable), so that
    a freshly built model that was never called can be exported too."""
    import tensorflow as tf

    spec = tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="input")
    with warnings.catch_warnings():  # Keras's tf2onnx numpy-2 patch warns about np.object
        warnings.simplefilter("ignore", FutureWarning)
        model.export(path, format=keras_format, verbose=False, input_signature=[spec])
    gc.collect()  # tf2onnx leaves garbage behind (299x299: 5.2 GB resident after it, 2.5 GB after a collection)


def _exported(model, keras_format, name):
    """The files Keras exports ``model`` to (``name``: the main file), read into memory: ``{suffix: bytes}``."""
    with tempfile.TemporaryDirectory(prefix="keras-xception-") as tmp:
        write(model, os.path.join(tmp, name), keras_format)
        files = {}
        for file in os.listdir(tmp):
            with open(os.path.join(tmp, file), "rb") as f:
                files[os.path.splitext(file)[1]] = f.read()
        return files


def cpu_threads() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _KerasBackend:
    """The Keras model itself: ``predict_on_batch`` per chunk, one after the other."""

    precision = "fp32"

    def __init__(self, source, threads, workers, precision, calibrate):
        self._model, self.input_shape = source, tuple(source.input_shape[1:])

    def run_one(self, x):
        return np.asarray(self._model.predict_on_batch(x))

    def run_many(self, chunks):
        return [self.run_one(c) for c in chunks]


class _TensorFlowBackend:
    """A ``tf.function`` of the model, BatchNormalization folded (or a loaded SavedModel's ``serve``), called
    from ``workers`` Python threads at once for several chunks."""

    precision = "fp32"

    def __init__(self, source, threads, workers, precision, calibrate):
        import tensorflow as tf

        self._model, self._tf = source, tf
        if isinstance(source, str):
            self._model, self._loaded = None, tf.saved_model.load(source)
            self._fn = self._loaded.serve
            args, kwargs = self._fn.concrete_functions[0].structured_input_signature
            self.input_shape = tuple((list(args) + list(kwargs.values()))[0].shape[1:])
        else:  # TensorFlow does not fuse Conv+BatchNormalization; folded: 11% less CPU time (deploy/folding.py)
            self._model = source = fold_batchnorm(source)
            self.input_shape = tuple(source.input_shape[1:])
            spec = tf.TensorSpec((None,) + self.input_shape, tf.float32)
            self._fn = tf.function(lambda x: source(x, training=False), input_signature=[spec])
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="keras-xception")

    def run_one(self, x):
        return np.asarray(self._fn(self._tf.constant(x)))

    def run_many(self, chunks):
        return list(self._pool.map(self.run_one, chunks))

    def save(self, path, record=None):
        """``serve`` (preprocessed tensors), and with a ``record``, ``serving_default`` (encoded images)."""
        import keras

        from keras_xception.deploy.serving import serving_function

        if self._model is None:
            raise ValueError("This Predictor runs a SavedModel read from a file: copy that directory instead.")
        if record is None:
            return write(self._model, path, "tf_saved_model")
        archive = keras.export.ExportArchive()
        archive.track(self._model)
        archive.add_endpoint("serve", self._fn)
        archive.add_endpoint("serving_default", serving_function(self._model, record.transform, record.class_names))
        archive.write_out(path, verbose=False)


class _OnnxRuntimeBackend:
    """A latency session (all threads) for one chunk; for several, a session of ``threads // workers``
    threads run from ``workers`` Python threads at once (ONNX Runtime releases the GIL)."""

    def __init__(self, source, threads, workers, precision, calibrate):
        import onnx
        import onnxruntime  # noqa: F401  (fail early if missing)

        if isinstance(source, str):
            self._onnx = onnx.load(source)
        else:
            self._onnx = onnx.load_from_string(_exported(source, "onnx", "model.onnx")[".onnx"])
        dims = self._onnx.graph.input[0].type.tensor_type.shape.dim[1:]
        self.input_shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        nodes = {node.op_type for node in self._onnx.graph.node}
        self.precision = "int8" if nodes & {"QuantizeLinear", "QLinearConv"} else "fp32"
        if precision == "int8" and self.precision != "int8":
            self._quantize(calibrate(self.input_shape))
        self._threads, self._workers = threads, workers
        self._latency, self._throughput = self._session(threads), None
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="keras-xception")
        self._input = self._latency.get_inputs()[0].name

    def _quantize(self, images):
        """Static QDQ int8: per-channel 7-bit weights (see _SATURATION), uint8 activations, MinMax calibration."""
        import onnx
        from onnxruntime import quantization as q

        graph = self._onnx.graph
        feed = iter({graph.input[0].name: images[i : i + 1]} for i in range(len(images)))

        class Reader(q.CalibrationDataReader):
            def get_next(self):
                return next(feed, None)

        # Softmax stays float: in uint8 (steps of 1/255) every class below 0.2% ties at 0 and the top-5 of
        # 1000 classes becomes a lottery (digits model: top-5 overlap 0.59 with a quantized softmax).
        keep_float = [node.name for node in graph.node if node.op_type == "Softmax"]
        with tempfile.TemporaryDirectory(prefix="keras-xception-") as tmp:
            src, pre, out = (os.path.join(tmp, n) for n in ("model.onnx", "pre.onnx", "int8.onnx"))
            onnx.save(self._onnx, src)  # a path: onnxruntime 1.18 reads no ModelProto here
            q.quant_pre_process(src, pre, skip_symbolic_shape=True)
            q.quantize_static(
                pre,
                out,
                Reader(),
                quant_format=q.QuantFormat.QDQ,
                per_channel=True,
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
                reduce_range=True,  # _SATURATION
                nodes_to_exclude=keep_float,
            )
            self._onnx, self.precision = onnx.load(out), "int8"

    def _session(self, threads):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Busy-waiting threads steal the CPU from the others on a shared machine (measured: up to 2x slower).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(self._onnx.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run_one(self, x, session=None):
        return (session or self._latency).run(None, {self._input: x})[0]

    def run_many(self, chunks):
        if self._throughput is None:
            self._throughput = self._session(max(1, self._threads // self._workers))
        return list(self._pool.map(lambda c: self.run_one(c, self._throughput), chunks))

    def save(self, path, record=None):
        import onnx

        onnx.save(self._onnx, path)


class _OpenVINOBackend:
    """A LATENCY-compiled model for one chunk; a THROUGHPUT-compiled one with ``workers`` streams and an
    async request queue for several. The inference precision is set (OpenVINO would pick bf16 where the
    CPU has it): f32 for fp32 and int8 (what NNCF leaves unquantized stays float32), bf16 for bf16."""

    def __init__(self, source, threads, workers, precision, calibrate):
        import openvino as ov

        self._core = ov.Core()
        if isinstance(source, str):
            self._model = self._core.read_model(source)
        else:
            files = _exported(source, "openvino", "model.xml")
            self._model = self._core.read_model(
                files[".xml"].decode(), ov.Tensor(np.frombuffer(files[".bin"], np.uint8).copy())
            )
        self.input_shape = tuple(
            None if d.is_dynamic else d.get_length() for d in self._model.inputs[0].partial_shape[1:]
        )
        quantized = any(op.get_type_name() == "FakeQuantize" for op in self._model.get_ops())
        if precision == "int8" and not quantized:
            self._quantize(calibrate(self.input_shape))
        self.precision = "int8" if precision == "int8" or quantized else (precision or "fp32")
        self._threads, self._workers, self._queue = threads, workers, None
        self._request = self._compile("LATENCY").create_infer_request()

    def _quantize(self, images):
        """int8 by NNCF, calibrated on ``images`` one at a time."""
        import logging

        try:
            import nncf
        except ImportError:
            raise RuntimeNotInstalledError(
                'precision="int8" with OpenVINO needs nncf, which is not installed. Install it with: '
                'pip install "keras-xception[openvino]"'
            ) from None
        logging.getLogger("nncf").setLevel(logging.ERROR)  # its INFO lines and progress bars on stdout
        dataset = nncf.Dataset([images[i : i + 1] for i in range(len(images))])
        # MIXED (asymmetric activations: inputs and residual sums are signed) agreed with fp32 more closely
        # than the default on the digits model (top-1 0.9975 against 0.9924, mean cosine 0.99964 against 0.99944;
        # measured with 8-bit weights, before _SATURATION).
        seven_bit = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.ENABLE)  # _SATURATION
        preset = nncf.QuantizationPreset.MIXED
        self._model = nncf.quantize(
            self._model, dataset, subset_size=len(images), preset=preset, advanced_parameters=seven_bit
        )

    def _compile(self, hint, streams=None):
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
            "PERFORMANCE_HINT": hint,
            "INFERENCE_NUM_THREADS": self._threads,
            # Pinned threads stall whenever another process holds their core (~10% slower on a shared CPU).
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
            self._queue = ov.AsyncInferQueue(self._compile("THROUGHPUT", self._workers), self._workers)
        out = [None] * len(chunks)

        def done(request, index):
            out[index] = request.get_output_tensor(0).data.copy()

        self._queue.set_callback(done)
        for i, chunk in enumerate(chunks):
            self._queue.start_async({0: chunk}, i)
        self._queue.wait_all()
        return out

    def save(self, path, record=None):
        import openvino as ov

        ov.save_model(self._model, path, compress_to_fp16=False)


@contextlib.contextmanager
def _c_stderr_silenced():
    """File descriptor 2 to /dev/null: LiteRT's C++ notices ("Created TensorFlow Lite XNNPACK delegate", ...)."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _LiteRTBackend:
    """A ``.tflite`` model (TensorFlow's converter) on the ai-edge-litert interpreter, one chunk at a time on all
    threads; int8: int8 weights and activations but for the softmax, float input and output, calibrated by the
    converter on the representative images."""

    def __init__(self, source, threads, workers, precision, calibrate):
        from ai_edge_litert.interpreter import Interpreter

        if isinstance(source, str):
            with open(source, "rb") as f:
                self._flat = f.read()
        else:
            self._flat = self._convert(source, calibrate if precision == "int8" else None)
        with _c_stderr_silenced():
            self._interpreter = Interpreter(model_content=self._flat, num_threads=threads)
            self._interpreter.allocate_tensors()
        detail = self._interpreter.get_input_details()[0]
        self.input_shape = tuple(int(d) for d in detail["shape_signature"][1:])
        self._input, self._output = detail["index"], self._interpreter.get_output_details()[0]["index"]
        int8 = any(t["dtype"] == np.int8 for t in self._interpreter.get_tensor_details())
        self.precision, self._batch = "int8" if int8 else "fp32", None

    @staticmethod
    def _convert(model, calibrate):
        import tensorflow as tf

        shape = tuple(model.input_shape[1:])
        if None in shape:
            raise ValueError(f"LiteRT needs a fixed input size; the model takes {shape}: build it with input_shape=.")
        with (
            tempfile.TemporaryDirectory(prefix="keras-xception-") as tmp,
            warnings.catch_warnings(),
            _c_stderr_silenced(),
        ):
            warnings.simplefilter("ignore")  # tf.lite's deprecation notice (the interpreter is ai-edge-litert's)
            write(model, tmp, "tf_saved_model")  # a SavedModel: the converter freezes its variables
            converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
            if calibrate is None:
                return converter.convert()
            images = calibrate(shape)
            dataset = lambda: ([images[i : i + 1]] for i in range(len(images)))  # noqa: E731
            converter.optimizations, converter.representative_dataset = [tf.lite.Optimize.DEFAULT], dataset
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            # Softmax stays float, as with ONNX Runtime: in int8 (steps of 1/256) the small probabilities tie
            # (digits model, benchmarks/quantization.py: top-5 overlap 0.56 with an int8 softmax).
            options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=["SOFTMAX"])
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=dataset, debug_options=options
            )
            return debugger.get_nondebug_quantized_model()

    def run_one(self, x):
        if self._batch != x.shape:  # the interpreter runs one input shape at a time
            self._interpreter.resize_tensor_input(self._input, x.shape)
            self._interpreter.allocate_tensors()
            self._batch = x.shape
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(x, np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output).copy()

    def run_many(self, chunks):
        return [self.run_one(c) for c in chunks]

    def save(self, path, record=None):
        with open(path, "wb") as f:
            f.write(self._flat)


BACKENDS = {
    "keras": _KerasBackend,
    "tensorflow": _TensorFlowBackend,
    "onnxruntime": _OnnxRuntimeBackend,
    "openvino": _OpenVINOBackend,
    "litert": _LiteRTBackend,
}
