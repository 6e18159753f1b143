"""The one metadata record of a model file (class names, input transform, how it was made), as JSON: a
member ``keras_xception.json`` of a ``.keras`` zip (Keras ignores it, safe mode too), that file inside a
SavedModel directory, or ``model.keras_xception.json`` beside an exported ``model.onnx``/``model.xml``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile

from keras_xception.data.transform import Transform

__all__ = ["ModelRecord", "record_path", "write_record", "read_record", "MEMBER"]

#: The record's name inside a ``.keras`` archive or a SavedModel directory.
MEMBER = "keras_xception.json"
_FORMAT = "keras-xception model"
_OLD_FORMATS = (_FORMAT, "keras-xception classifier")  # 0.2 classifiers carry the latter


@dataclasses.dataclass(frozen=True)
class ModelRecord:
    """What a model file says about itself.

    Attributes:
        transform: How an image file becomes the model's input.
        class_names: One name per output of a classifier, else None.
        info: How it was made (weights, training settings, versions): JSON values.
    """

    transform: Transform
    class_names: tuple | None = None
    info: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        import keras_xception

        names = None if self.class_names is None else [str(c) for c in self.class_names]
        return {
            "format": _FORMAT,
            "format_version": 2,
            "keras_xception_version": keras_xception.__version__,
            **self.info,
            "class_names": names,
            "transform": self.transform.to_dict(),
        }

    @classmethod
    def from_dict(cls, d, where="the record") -> ModelRecord:
        if not isinstance(d, dict) or d.get("format") not in _OLD_FORMATS:
            raise ValueError(f"{where} is not a keras-xception model record.")
        try:
            transform = Transform.from_dict(d["transform"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: its transform cannot be read: {e}") from None
        names = d.get("class_names")
        info = {k: v for k, v in d.items() if k not in ("format", "format_version", "class_names", "transform")}
        return cls(transform, None if names is None else tuple(str(c) for c in names), info)


def record_path(path) -> str:
    """Where the record of the model at ``path`` lives (a ``.keras`` file holds it inside)."""
    path = os.fspath(path)
    if path.endswith(".keras"):
        return path
    if os.path.isdir(path):
        return os.path.join(path, MEMBER)
    return os.path.splitext(path)[0] + "." + MEMBER


def write_record(path, record: ModelRecord) -> str:
    """Write ``record`` for the model at ``path`` (already written); returns where it went."""
    text = json.dumps(record.to_dict(), indent=2, default=str) + "\n"
    target = record_path(path)
    if target.endswith(".keras"):
        with zipfile.ZipFile(target, "a", compression=zipfile.ZIP_DEFLATED) as zf:
            if MEMBER in zf.namelist():
                raise ValueError(f"{target!r} already holds a {MEMBER}; write the model afresh first.")
            zf.writestr(MEMBER, text)
    else:
        with open(target, "w") as f:
            f.write(text)
    return target


def read_record(path) -> ModelRecord | None:
    """The record of the model at ``path``, or None when it has none (no TensorFlow needed). A file exported
    by keras-xception 0.2 carries only its transform (``model.transform.json``, in a SavedModel
    ``keras_xception_transform.json``): read as a record without class names.

    Raises:
        ValueError: a record exists but cannot be read (the path and the reason are named).
    """
    target = record_path(path)
    try:
        if target.endswith(".keras"):
            with zipfile.ZipFile(target) as zf:
                if MEMBER not in zf.namelist():
                    return None
                text = zf.read(MEMBER).decode("utf-8")
        elif os.path.isfile(target):
            with open(target, encoding="utf-8") as f:
                text = f.read()
        else:
            old = os.path.join(target, "..", "keras_xception_transform.json") if os.path.isdir(path) else None
            old = os.path.normpath(old or os.path.splitext(os.fspath(path))[0] + ".transform.json")
            if not os.path.isfile(old):
                return None
            with open(old, encoding="utf-8") as f:
                return ModelRecord(Transform.from_dict(json.load(f)))
        return ModelRecord.from_dict(json.loads(text), where=repr(target))
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"Cannot read the keras-xception record of {os.fspath(path)!r}: {e}.") from None
