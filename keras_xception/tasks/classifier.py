"""A trained classifier and its file: :class:`Classifier`, :func:`save_classifier`, :func:`load_classifier`.

The file is an ordinary ``.keras`` archive without optimizer state (``keras.saving.load_model`` loads
it in safe mode: raw 0..255 RGB images in, class probabilities out) with the model's record
(:mod:`keras_xception.data.metadata`: class names, transform, how it was trained) inside.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np

from keras_xception.checks import keras_path
from keras_xception.data.metadata import ModelRecord, write_record
from keras_xception.data.transform import Transform

__all__ = ["Classifier", "save_classifier", "load_classifier"]


@dataclasses.dataclass(frozen=True)
class Classifier:
    """A trained classifier.

    Attributes:
        model: ``keras.Model``: raw RGB images (0..255, the transform's size) -> class probabilities.
        class_names: One name per output, in order.
        transform: How an image file becomes the model's input (a
            :class:`~keras_xception.data.transform.Transform` without ``preprocessing``).
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

        Files that cannot be read are skipped, each with a warning ``"path: reason"``.
        """
        from keras_xception.data.dataset import map_batches

        result = map_batches(self.model.predict_on_batch, paths, self.transform, batch_size=batch_size, verbose=0)
        outputs = [] if result.outputs is None else result.outputs
        return [(p, self.top(probs, top)) for p, probs in zip(result.paths, outputs)]

    def top(self, probabilities, k=5):
        """The ``k`` most likely ``(class_name, probability)`` of one probability vector."""
        order = np.argsort(-np.asarray(probabilities))[: max(1, min(int(k), len(self.class_names)))]
        return [(self.class_names[i], float(probabilities[i])) for i in order]


def save_classifier(model, path, class_names, transform, info=None) -> str:
    """Save ``model`` as ``.keras`` with ``class_names``, ``transform`` and ``info`` in its record.

    Without the optimizer's state (a compiled model's Adam slots would double the file); written to a
    temporary file and moved into place, so a failure leaves no half-written model.
    """
    import keras

    path = keras_path(path, "path")
    classifier = Classifier(model, class_names, transform, dict(info or {}))  # checks the names and transform
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(path))) as folder:
        tmp = os.path.join(folder, "model.keras")  # beside `path`: os.replace stays on one file system
        # An uncompiled model over the same layers: Keras saves a compiled model's optimizer.
        keras.Model(model.input, model.output, name=model.name).save(tmp)
        write_record(tmp, ModelRecord(transform, classifier.class_names, classifier.info))
        os.replace(tmp, path)
    return path


def load_classifier(path) -> Classifier:
    """Load a classifier saved by :func:`train` / :func:`save_classifier` (safe mode, no custom objects).

    Files of keras-xception 0.2 load too. A ``.keras`` model without the record (saved by plain
    ``model.save``) loads with a warning: classes named by index (``"0"``, ``"1"``, ...), the
    transform resolved from the model.

    Raises:
        ValueError: not an existing ``.keras`` file, a model that is not a single-input classifier,
            or a record that does not fit the model.
    """
    from keras_xception.deploy.predictor import Predictor

    path = keras_path(path, "model")
    file = Predictor(path, "keras")  # reads the model and its record; no file: "No model file at ..."
    if file.class_names is None:
        raise ValueError(f"{path!r} is not a classifier (a vector of class scores out): {file.model.output_shape}.")
    try:
        return Classifier(file.model, file.class_names, file.transform, file.info)
    except ValueError as e:
        raise ValueError(f"{path!r}: its keras-xception record does not fit the model: {e}") from None
