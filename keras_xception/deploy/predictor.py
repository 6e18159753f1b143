"""Fast CPU inference: :class:`Predictor`, the one way to run a Keras model or an exported file on a numpy
batch, on any runtime (keras, tensorflow, onnxruntime, openvino, litert) and precision (fp32, bf16, int8);
the images int8 quantization is calibrated on (:func:`calibration_images`), and the batch check (:func:`as_batch`)."""

from __future__ import annotations

import functools
import os
import time
import warnings

import numpy as np

from keras_xception.checks import positive_int
from keras_xception.data.dataset import map_batches
from keras_xception.data.files import list_images
from keras_xception.data.metadata import ModelRecord, read_record, write_record
from keras_xception.data.transform import Transform, resolve_transform
from keras_xception.deploy.backends import BACKENDS, cpu_threads
from keras_xception.deploy.runtimes import (
    FORMATS,
    RECOMMENDED_CALIBRATION,
    TABLE,
    check_export_path,
    check_precision,
    hardware_warning,
    runtime_for,
)

__all__ = ["Predictor", "runtime_of", "format_of", "runtime_of_file", "calibration_images", "as_batch", "warn_if_few"]

_ADVICE = (
    "measure its agreement with float32 with keras_xception.quantize (`keras-xception quantize` on the command line)."
)


class Predictor:
    """A single-input, single-output Keras model or exported file on a CPU runtime, in fp32, bf16 or int8.

    ``predict(x)`` gives ``model.predict(x)``'s values up to float rounding in fp32 (relative max difference
    well below 1e-4); bf16 and int8 trade a little accuracy for speed (measure it with
    :func:`keras_xception.quantize`). docs/deployment.md shows the use and the measured speeds.

    Args:
        model: A functional Keras model with one input and one output (exported as it is now; later changes
            to ``model`` do not reach the predictor, except with ``runtime="keras"``), or the path of a model
            file: a ``.keras`` file (a classifier from :func:`keras_xception.train`: run like a Keras model) or one
            written by :func:`keras_xception.export` or :meth:`save`.
        runtime: ``"auto"`` (default), ``"keras"``, ``"tensorflow"``, ``"onnxruntime"``, ``"openvino"``, ``"litert"``
            ``"auto"`` picks the fastest installed runtime that runs ``precision``; for an exported file, its format's.
        precision: ``"fp32"`` (default for a Keras model), ``"bf16"`` (OpenVINO) or ``"int8"`` (OpenVINO
            with NNCF, ONNX Runtime or LiteRT); for an exported file, default: the file's own (``"int8"`` for a quantized one).
        calibration: For ``precision="int8"`` (unless the file is already quantized): images to calibrate
            on, seen as the model sees them: a directory of image files (read with ``transform``), a list of
            image paths, a numpy array of model inputs (preprocessed) or a ``tf.data.Dataset`` of them (or of
            ``(inputs, labels)``). About 300 images are recommended; fewer are warned about.
        calibration_size: The most calibration images used (a random sample of a larger directory).
        transform: How image files become this model's inputs (default: the file's metadata record, else
            ``resolve_transform(model=model)``); reads a calibration directory, kept as ``self.transform``
            and written by :meth:`save`.
        batch_size: Images per runtime call; ``predict`` splits larger inputs into chunks of this size.
            Default: the runtime's for the precision (``deploy.runtimes.TABLE``).
        threads: CPU threads to use (default: the CPUs this process may use). TensorFlow uses its
            process-wide thread pools, which this class never changes.
        workers: Chunks run at the same time when an input has several (default: ``threads``). A single
            chunk runs alone on all threads (latency mode); several run on ``workers`` streams of
            ``threads // workers`` threads each (throughput mode).

    Warns when OpenVINO says the CPU has no native bf16 (``precision="bf16"``) and when int8 calibration
    uses fewer than 300 images. Not thread-safe: give each thread its own (one call uses every CPU).

    Attributes:
        runtime, precision: In use (``"auto"`` and defaults resolved).
        transform: The input :class:`~keras_xception.data.transform.Transform` (None if unknown).
        model: The Keras model (None for an exported file).
        class_names, info: The class names and what else a file's record says (None and ``{}`` if unknown);
            :meth:`save` writes them.
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
    ):
        started = time.perf_counter()
        is_file = isinstance(model, (str, os.PathLike))
        _check_arguments(None if is_file else model, precision, calibration, calibration_size, transform, batch_size)
        self.threads = positive_int(threads, "threads", allow_none=True) or cpu_threads()
        self.workers = positive_int(workers, "workers", allow_none=True) or self.threads
        self.runtime = runtime_of(model, runtime, precision)
        # One pass down: the runtime (deploy), then what the data layer knows of the model (record, transform).
        self.model, record = _open(model) if is_file else (model, None)
        self.class_names, self.info = (record.class_names, dict(record.info)) if record else (None, {})
        self.transform = transform or (record.transform if record else None)
        self.calibration_count, self._output_shape = None, None
        if self.model is None:
            source, wanted = os.fspath(model), precision
        else:
            source, wanted = self.model, precision or "fp32"
            self.input_shape, self._output_shape = tuple(self.model.input_shape[1:]), tuple(self.model.output_shape[1:])
            self.transform = self.transform or resolve_transform(model=self.model)

        @functools.cache
        def calibrate(shape):  # the int8 calibration images, read once
            images = calibration_images(
                calibration, input_shape=shape, transform=self.transform, limit=calibration_size
            )
            self.calibration_count = len(images)
            return images

        if wanted == "int8" and self._output_shape is not None:
            calibrate(self.input_shape)  # bad calibration data fails before the slow export
        self._backend = BACKENDS[self.runtime](source, self.threads, self.workers, wanted, calibrate)
        self.input_shape = tuple(self._backend.input_shape if self._output_shape is None else self.input_shape)
        self.precision = self._backend.precision
        self._check_built(source, precision, calibration)
        self.batch_size = batch_size or TABLE[self.runtime].batch_size[self.precision]
        self.build_seconds = time.perf_counter() - started

    def _check_built(self, source, precision, calibration):
        """The precision asked of a file is the one it holds; warnings about what was built."""
        if precision is not None and self.precision != precision:
            raise ValueError(
                f"{source!r} holds an {self.precision} model; it cannot run in precision={precision!r}. "
                "Export the Keras model again in the precision you want."
            )
        if calibration is not None and self.calibration_count is None:
            warnings.warn(f"{source!r} is already quantized to int8; `calibration` was not used.", stacklevel=3)
        if self.calibration_count is not None:
            warn_if_few(self.calibration_count, _ADVICE, stacklevel=4)
        message = hardware_warning(self.precision)
        if message:
            warnings.warn(message, stacklevel=3)

    def predict(self, x, batch_size: int | None = None) -> np.ndarray:
        """Outputs for the batch ``x`` (numpy, any batch size and numeric dtype), as a float32 numpy array,
        computed in chunks of ``batch_size`` images (default: ``self.batch_size``)."""
        x = as_batch(x, self.input_shape)
        batch_size = batch_size or self.batch_size
        if len(x) == 0:
            if self._output_shape is not None and None not in self._output_shape:
                return np.zeros((0,) + self._output_shape, np.float32)
            raise ValueError("`x` holds no image.")
        if len(x) <= batch_size:
            return np.asarray(self._backend.run_one(x), np.float32)
        chunks = [x[i : i + batch_size] for i in range(0, len(x), batch_size)]
        return np.concatenate(self._backend.run_many(chunks)).astype(np.float32, copy=False)

    __call__ = predict

    def save(self, path) -> str:
        """Write the runtime's model (int8 included) to ``path`` with its metadata record; returns ``path``.

        ``.xml`` (and ``.bin``) for OpenVINO, ``.onnx`` for ONNX Runtime, a SavedModel directory for
        TensorFlow (with ``serving_default`` taking encoded images when the transform is known); ``Predictor(path)``
        reads it back. bf16 is chosen when a model is compiled: a bf16
        predictor writes the float32 model (run it with ``Predictor(path, precision="bf16")``).
        """
        fmt = TABLE[self.runtime].format
        if fmt is None:
            raise ValueError(
                f"A runtime={self.runtime!r} Predictor cannot be saved; write the Keras model with "
                "keras_xception.export(model, path, format=...)."
            )
        path = check_export_path(path, fmt)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        record = None if self.transform is None else ModelRecord(self.transform, self.class_names, self.info)
        self._backend.save(path, record)
        if record is not None:
            write_record(path, record)
        return path

    def __repr__(self):
        return (
            f"Predictor(runtime={self.runtime!r}, precision={self.precision!r}, batch_size={self.batch_size}, "
            f"threads={self.threads}, workers={self.workers})"
        )


def runtime_of(source, runtime: str = "auto", precision: str | None = None) -> str:
    """The runtime of ``source`` (:func:`runtime_for`); for the path of an exported model, its format's."""
    fmt = format_of(source) if isinstance(source, (str, os.PathLike)) else "keras"
    if fmt == "keras":  # a Keras model, or its .keras file: exported on the way in (the keras runtime excepted)
        return runtime_for(runtime, precision or "fp32")
    if runtime not in ("auto", FORMATS[fmt]):
        raise ValueError(
            f"{os.fspath(source)!r} is a {fmt} model, run by runtime={FORMATS[fmt]!r}; received runtime={runtime!r}. "
            "Leave runtime='auto' for an exported file."
        )
    return runtime_for(FORMATS[fmt], precision or "fp32")


def runtime_of_file(path) -> str | None:
    """The runtime whose files end like ``path`` (``.xml``: openvino, ``.onnx``: onnxruntime, ``.tflite``: litert)."""
    return next((name for name, r in TABLE.items() if r.suffix and os.fspath(path).endswith(r.suffix)), None)


def format_of(path) -> str:
    """The format of the model file at ``path`` (``"keras"``, or exported: ``"savedmodel"``, ``"onnx"``,
    ``"openvino"``, ``"litert"``); ``ValueError`` when ``path`` does not exist or is none of those."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return "savedmodel"
    if os.path.isfile(path) and path.endswith(".keras"):
        return "keras"
    if os.path.isfile(path) and runtime_of_file(path):
        return TABLE[runtime_of_file(path)].format
    if not os.path.exists(path):
        raise ValueError(f"No model file at {path!r}: the path does not exist.")
    raise ValueError(
        f"{path!r} is not a model file: expected a .keras file or an exported model: a SavedModel directory (with "
        "saved_model.pb), an .onnx file, an OpenVINO .xml file or a LiteRT .tflite file (keras_xception.export)."
    )


def _check_arguments(model, precision=None, calibration=None, calibration_size=1, transform=None, batch_size=None):
    """The arguments, checked first: ``model`` (None for a file) is a Keras model with one input and one output."""
    import keras

    if model is not None and not isinstance(model, keras.Model):
        raise ValueError(
            "`model` must be a keras.Model or the path of a model file (.keras, or exported: .xml, .onnx, "
            f".tflite or a SavedModel directory); received {type(model).__name__}."
        )
    if model is not None and (len(model.inputs) != 1 or len(model.outputs) != 1):
        raise ValueError(
            "Predictor supports models with one input and one output; received "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs."
        )
    if precision is not None:
        check_precision(precision)
    positive_int(calibration_size, "calibration_size")
    positive_int(batch_size, "batch_size", allow_none=True)
    if calibration is not None and precision != "int8":
        raise ValueError(
            f"`calibration` is only used with precision='int8'; received precision={precision!r}. "
            "Leave calibration out, or ask for precision='int8'."
        )
    if transform is not None and not isinstance(transform, Transform):
        raise ValueError(f"`transform` must be a Transform (resolve_transform(...)); received {transform!r}.")


def _open(path):
    """``(Keras model or None, record or None)`` of a model file; a ``.keras`` file is loaded (safe mode). Without a
    record (plain ``model.save``), with a warning: classes named by index, the model's transform (EXIF on)."""
    import keras

    if format_of(path) != "keras":
        return None, read_record(path)
    model = keras.saving.load_model(path)
    _check_arguments(model)
    record = read_record(path)
    if record is None or record.class_names is None:
        message = "(class names and transform; saved by plain model.save?): classes are named by index"
        warnings.warn(
            f"{path!r} has no keras-xception record {message}, the transform taken from the model.", stacklevel=4
        )
        names = [str(i) for i in range(model.output_shape[-1])] if len(model.output_shape) == 2 else None
        record = ModelRecord(resolve_transform(model=model, exif_orientation=True), names)
    return model, record


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
        source: A numpy array (a batch of model inputs, already preprocessed), a ``tf.data.Dataset`` yielding
            such batches, single images, or ``(inputs, labels)`` pairs, a directory of image files (searched
            recursively), or a list of image paths. Files are read with ``transform`` (a random sample of
            ``limit`` of them when there are more, so every class folder is represented); unreadable ones are
            warned about and left out.
        input_shape: The model's input shape without the batch dimension.
        transform: How files become model inputs (required for files).
        limit: The most images to take (None: all).
        what: The argument's name, for messages (``"calibration"``, ``"holdout"``).

    Raises:
        ValueError: ``source`` is None, of another type or shape, holds no image or non-finite values.
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
    paths = isinstance(source, (list, tuple)) and bool(source) and isinstance(source[0], (str, os.PathLike))
    if paths or isinstance(source, (str, os.PathLike)):
        images = _read_files(source, transform, cap, seed, what)
    elif isinstance(source, tf.data.Dataset):
        images = _take_from_dataset(source, input_shape, cap, what)
    elif isinstance(source, np.ndarray):
        images = as_batch(source, input_shape, what, one=True)[:cap]
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
        x = as_batch(x.numpy() if hasattr(x, "numpy") else x, input_shape, what, one=True)
        parts.append(x[: cap - count])
        count += len(parts[-1])
        if count >= cap:
            break
    return np.concatenate(parts) if parts else None


def as_batch(x, input_shape, what: str = "x", one: bool = False) -> np.ndarray:
    """``x`` as a contiguous float32 batch of shape ``(n,) + input_shape`` (None: any size), or a ValueError
    naming ``what``; with ``one``, a single image (no batch axis) is a batch of one."""
    x, input_shape = np.asarray(x), tuple(input_shape)
    if one and x.ndim == len(input_shape):
        x = x[None]
    fits = x.ndim == len(input_shape) + 1 and all(w is None or g == w for g, w in zip(x.shape[1:], input_shape))
    if not fits or not np.issubdtype(x.dtype, np.number):
        hint = " For a single image use x[None]." if x.ndim == len(input_shape) else ""
        raise ValueError(
            f"`{what}` must be a numeric batch of shape (n,) + {input_shape}; received an array of shape "
            f"{x.shape} and dtype {x.dtype}.{hint}"
        )
    return np.ascontiguousarray(x, dtype=np.float32)


def warn_if_few(count: int, advice: str, stacklevel: int = 3) -> None:
    """Warn that ``count`` calibration images are fewer than NNCF recommends; ``advice`` says what to do
    where the warning is seen (the caller knows whether an agreement is being measured already)."""
    if count < RECOMMENDED_CALIBRATION:
        warnings.warn(
            f"int8 calibration used {count} image(s); NNCF recommends about {RECOMMENDED_CALIBRATION}, and fewer "
            f"may give a less accurate int8 model: {advice}",
            stacklevel=stacklevel,
        )
