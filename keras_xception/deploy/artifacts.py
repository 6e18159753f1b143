"""Exported model files: writing one from a Keras model, recognising one, and its transform sidecar.

An artifact is a TensorFlow SavedModel directory, an ``.onnx`` file or an
OpenVINO ``.xml`` (with its ``.bin``). Beside it lies the JSON of the
:class:`~keras_xception.data.transform.Transform` its inputs need
(:func:`transform_path`), so that whatever serves it reads images as Keras does.
"""

from __future__ import annotations

import json
import os

from keras_xception.data.transform import Transform
from keras_xception.deploy.runtimes import FORMATS

__all__ = ["write", "format_of", "transform_path", "write_transform", "read_transform", "remove"]


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


def format_of(path) -> str:
    """The format of the artifact at ``path`` (``"savedmodel"``, ``"onnx"`` or ``"openvino"``).

    Raises:
        ValueError: ``path`` does not exist or is not one of those.
    """
    path = os.fspath(path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        return "savedmodel"
    if os.path.isfile(path):
        for name, (_, suffix, _) in FORMATS.items():
            if suffix and path.endswith(suffix):
                return name
    if not os.path.exists(path):
        raise ValueError(f"No exported model at {path!r}: the path does not exist.")
    raise ValueError(
        f"{path!r} is not an exported model: expected a SavedModel directory (with saved_model.pb), "
        "an .onnx file or an OpenVINO .xml file (keras_xception.export writes all three)."
    )


def transform_path(path, format: str) -> str:
    """Where the artifact's input transform is written (JSON of ``Transform.to_dict()``).

    Inside the SavedModel directory (``keras_xception_transform.json``), else
    beside the file: ``model.onnx`` -> ``model.transform.json``.
    """
    path = os.fspath(path)
    if format == "savedmodel":
        return os.path.join(path, "keras_xception_transform.json")
    return os.path.splitext(path)[0] + ".transform.json"


def write_transform(path, format: str, transform: Transform) -> str:
    """Write ``transform`` beside the artifact at ``path``; returns the JSON's path."""
    out = transform_path(path, format)
    with open(out, "w") as f:
        json.dump(transform.to_dict(), f, indent=2)
        f.write("\n")
    return out


def read_transform(path, format: str) -> Transform | None:
    """The transform written beside the artifact at ``path``, or None if there is none.

    Raises:
        ValueError: the JSON exists but is not a valid transform.
    """
    json_path = transform_path(path, format)
    if not os.path.isfile(json_path):
        return None
    try:
        with open(json_path) as f:
            fields = json.load(f)
        return Transform.from_dict(fields)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"Cannot read the transform of {os.fspath(path)!r} from {json_path!r}: {e}") from None


def remove(path, format):
    """Delete the artifact at ``path`` and the files written beside it (no error if absent)."""
    import shutil

    path = os.fspath(path)
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    extra = [os.path.splitext(path)[0] + ".bin"] if format == "openvino" else []
    for p in [path, transform_path(path, format), *extra]:
        if os.path.isfile(p):
            os.remove(p)
