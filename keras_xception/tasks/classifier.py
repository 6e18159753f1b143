"""A trained classifier and its file: :class:`Classifier`, :func:`save_classifier`, :func:`load_classifier`.

A :class:`Classifier` is what :func:`~keras_xception.tasks.training.train`
returns: the Keras model, its class names and its input transform.
:func:`evaluate_classifier` measures one on class folders.

The saved classifier: ``save_classifier``/``Classifier.save`` writes an
ordinary ``.keras`` file (``keras.saving.load_model(path)`` loads it in safe
mode with no custom objects: raw 0..255 RGB images in, class probabilities
out) and adds one member to the zip archive, ``keras_xception.json``: the
class names, the input transform and how the model was trained.
:func:`load_classifier` reads both. Why inside the archive rather than in the
model graph or a sidecar file: the class names travel with the one file a
user copies (a sidecar gets left behind); the graph stays exactly the
classifier (one float32 output, nothing for an exporter or a ``Predictor``
to trip on; storing strings in the graph would need a string-valued layer or
names smuggled into layer names); Keras ignores archive members it does not
know; and the JSON is readable without TensorFlow
(``unzip -p model.keras keras_xception.json``). The cost: a model re-saved by
plain ``model.save`` loses the member (save with :func:`save_classifier`
instead); :func:`load_classifier` then falls back to index names with a
warning.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
import zipfile

import numpy as np

from keras_xception.data.files import class_folders
from keras_xception.data.transform import Transform, resolve_transform
from keras_xception.tasks.extraction import extract_features
from keras_xception.tasks.labelled import run_over_files
from keras_xception.tasks.reports import classification_report

__all__ = ["Classifier", "save_classifier", "load_classifier", "evaluate_classifier", "METADATA_MEMBER"]

#: The member of the ``.keras`` archive holding the class names and the transform.
METADATA_MEMBER = "keras_xception.json"
_FORMAT = "keras-xception classifier"


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A trained classifier: the Keras model, its class names and its input transform.

    Attributes:
        model: ``keras.Model``: a batch of raw RGB images (0..255, the
            transform's size) -> class probabilities (float32).
        class_names: One name per output, in order.
        transform: How an image file becomes the model's input
            (:class:`~keras_xception.data.transform.Transform`; ``preprocessing``
            is None: the model scales its input itself).
        info: What else the file says (weights, training settings, versions).
    """

    model: object
    class_names: tuple
    transform: Transform
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        units = int(self.model.output_shape[-1])
        if len(self.class_names) != units:
            raise ValueError(f"{len(self.class_names)} class names for a model with {units} outputs.")
        if not isinstance(self.transform, Transform):
            raise ValueError(f"`transform` must be a Transform; received {self.transform!r}.")

    def save(self, path) -> str:
        """Write the ``.keras`` file with the class names and transform inside (see :func:`save_classifier`)."""
        return save_classifier(self.model, path, self.class_names, self.transform, self.info)

    def predict(self, images, batch_size=32):
        """Class probabilities (N x classes, float32) of a batch of raw 0..255 images of the transform's size."""
        return np.asarray(self.model.predict(np.asarray(images, np.float32), batch_size=batch_size, verbose=0))

    def classify(self, paths, top=5, batch_size=32):
        """``[(path, [(class_name, probability), ...]), ...]`` for image files (top ``top`` classes each).

        Files that cannot be read are skipped with a warning (see
        :func:`~keras_xception.tasks.extraction.extract_features`).
        """
        result = extract_features(
            list(paths), model=self.model, transform=self.transform, batch_size=batch_size, verbose=0
        )
        return [(p, self.top(probs, top)) for p, probs in zip(result.paths, result.features)]

    def top(self, probabilities, k=5):
        """The ``k`` most likely ``(class_name, probability)`` of one probability vector."""
        order = np.argsort(-np.asarray(probabilities))[: max(1, min(int(k), len(self.class_names)))]
        return [(self.class_names[i], float(probabilities[i])) for i in order]


def check_keras_path(path, argument="path"):
    """``path`` as a string; ``ValueError`` naming ``argument`` unless it ends with ``.keras``."""
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"`{argument}` must be a .keras file; received {path!r}.")
    return path


def save_classifier(model, path, class_names, transform, info=None) -> str:
    """Save ``model`` as ``.keras`` with ``class_names`` and ``transform`` inside the archive.

    The file is an ordinary Keras archive (``keras.saving.load_model(path)``
    loads the model in safe mode) plus the member :data:`METADATA_MEMBER`.
    Written to a temporary file and moved into place, so a failure leaves
    no half-written model.
    """
    import keras_xception

    path = check_keras_path(path)
    classifier = Classifier(model, class_names, transform, dict(info or {}))  # checks the names and transform
    meta = {
        "format": _FORMAT,
        "format_version": 1,
        "class_names": list(classifier.class_names),
        "transform": transform.to_dict(),
        "keras_xception_version": keras_xception.__version__,
        **{k: v for k, v in classifier.info.items() if k not in ("class_names", "transform")},
    }
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(METADATA_MEMBER, json.dumps(meta, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_metadata(path):
    """The :data:`METADATA_MEMBER` dict of a ``.keras`` file, or None when it has none (no TensorFlow needed)."""
    try:
        with zipfile.ZipFile(path) as zf:
            if METADATA_MEMBER not in zf.namelist():
                return None
            meta = json.loads(zf.read(METADATA_MEMBER).decode("utf-8"))
    except (zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path!r} is not a readable .keras file: {e}.") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{path!r}: its {METADATA_MEMBER} is not a {_FORMAT} record.")
    return meta


def load_classifier(path) -> Classifier:
    """Load a classifier saved by :func:`train` / :func:`save_classifier` (safe mode, no custom objects).

    A ``.keras`` classifier without the keras-xception record (saved by plain
    ``model.save``) loads too, with a warning: its classes are named by index
    (``"0"``, ``"1"``, ...) and its transform is resolved from the model
    (input size; raw pixels when it starts with the ``preprocess_input``
    layer) with EXIF orientation applied.

    Raises:
        ValueError: not an existing ``.keras`` file, a model that is not a
            single-input classifier, or a record that does not fit the model.
    """
    import keras

    path = check_keras_path(path, "model")
    if not os.path.isfile(path):
        raise ValueError(f"No model file at {path!r} (train one with `keras-xception train DATA_DIR --out {path}`).")
    meta = read_metadata(path)
    model = keras.saving.load_model(path)  # safe_mode=True
    if len(model.inputs) != 1 or len(model.outputs) != 1 or len(model.output_shape) != 2:
        raise ValueError(
            f"{path!r} is not a classifier (one image input, one vector of class scores); its model has "
            f"inputs {[tuple(i.shape) for i in model.inputs]} and outputs {[tuple(o.shape) for o in model.outputs]}."
        )
    if meta is None:
        warnings.warn(
            f"{path!r} has no keras-xception record ({METADATA_MEMBER}: class names and transform; "
            "it was saved by plain model.save?): classes are named by index and the transform is "
            "taken from the model.",
            stacklevel=2,
        )
        n = int(model.output_shape[-1])
        transform = resolve_transform(model=model, exif_orientation=True)
        return Classifier(model, [str(i) for i in range(n)], transform, {})
    info = {k: v for k, v in meta.items() if k not in ("class_names", "transform")}
    try:
        return Classifier(model, meta["class_names"], Transform.from_dict(meta["transform"]), info)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path!r}: its {METADATA_MEMBER} does not fit the model: {e}") from None


def evaluate_classifier(
    classifier, val_dir, *, batch_size=32, runtime="keras", precision="fp32", calibration=None, strict=False, verbose=1
) -> dict:
    """Accuracy, per-class figures and the confusion matrix of ``classifier`` on class folders.

    ``val_dir/<class>/*``: every sub-folder must be named like one of the
    classifier's classes (a subset is fine). ``classifier``: a
    :class:`Classifier` or a ``.keras`` path. ``runtime``, ``precision``
    and ``calibration`` (read with the classifier's transform) as in
    :func:`~keras_xception.tasks.extraction.extract_features`.

    Returns:
        ``accuracy``, ``count``, ``per_class`` (precision, recall, f1,
        support), ``confusion_matrix`` (rows: true class, columns: predicted,
        in ``class_names`` order), ``class_names``, ``skipped``,
        ``transform``, ``elapsed_seconds`` (and ``top5_accuracy`` with more
        than 5 classes).
    """
    from keras_xception.deploy.predictor import predict_function

    if not isinstance(classifier, Classifier):
        classifier = load_classifier(classifier)
    if not isinstance(val_dir, (str, os.PathLike)) or not os.path.isdir(val_dir):
        raise ValueError(f"`val_dir` must be an existing folder of class folders; received {val_dir!r}.")
    start = time.perf_counter()
    problems = []
    paths, labels0, folder_classes = class_folders(os.fspath(val_dir), problems)
    index = {c: i for i, c in enumerate(classifier.class_names)}
    unknown = sorted(set(folder_classes) - set(index))
    if unknown:
        raise ValueError(
            f"{os.fspath(val_dir)!r} has class folders the model does not know: {unknown}; its classes are "
            f"{list(classifier.class_names)}."
        )
    labels = np.array([index[folder_classes[k]] for k in labels0], "int64")
    for path, reason in problems:
        if strict:
            raise ValueError(f"Cannot read {path!r}: {reason}.")
        warnings.warn(f"Skipping {path!r}: {reason}", stacklevel=2)
    skipped = list(problems)
    options = dict(precision=precision, calibration=calibration)
    if runtime != "keras":
        options["transform"] = classifier.transform
    predict = predict_function(classifier.model, runtime, **options)
    probs, y, _ = run_over_files(
        predict, paths, labels, classifier.transform, batch_size, verbose, strict, skipped, "validation images"
    )
    if probs is None:
        raise ValueError(f"None of the {len(paths)} images under {os.fspath(val_dir)!r} could be read.")
    report = classification_report(y, probs, list(classifier.class_names))
    report.update(
        class_names=list(classifier.class_names),
        skipped=[dict(path=p, reason=r) for p, r in skipped],
        source=os.fspath(val_dir),
        transform=classifier.transform.to_dict(),
        runtime=runtime,
        precision=precision,
        elapsed_seconds=round(time.perf_counter() - start, 3),
    )
    return report
