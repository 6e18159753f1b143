"""The settings of :func:`~keras_xception.tasks.training.train`: its arguments checked, and what they imply.

* :func:`check_arguments`: every argument checked (``ValueError`` naming
  it) and normalised into a :class:`TrainOptions`; a strategy given by name
  is created here.
* :func:`class_weights`: the ``class_weight`` argument as Keras takes it.
* :func:`dtype_policy`: the mixed-precision policy the backbone is built under.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

import numpy as np

from keras_xception.model.spec import MIN_INPUT_SIZE
from keras_xception.tasks.classifier import check_keras_path
from keras_xception.tasks.evaluation import is_chief, make_strategy

__all__ = ["TrainOptions", "check_arguments", "class_weights", "dtype_policy"]


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """One :func:`~keras_xception.tasks.training.train` call's arguments, checked and normalised.

    As given, except: ``data_dir`` a string, the numbers converted
    (``epochs`` stays ``"auto"``), ``out`` checked to be ``.keras``,
    ``strategy`` a ``tf.distribute.Strategy`` (``strategy_name`` the name
    given, or its class name), ``replicas`` its replica count and ``chief``
    whether this worker writes the outputs.
    """

    data_dir: str
    val_dir: object
    val_split: object
    weights: object
    backbone: object
    image_size: object
    epochs: object
    max_epochs: int
    patience: int
    learning_rate: float
    dropout: float
    fine_tune_epochs: int
    fine_tune_blocks: int
    fine_tune_learning_rate: float
    augment: bool
    class_weight: object
    batch_size: int
    strategy: object
    strategy_name: str
    replicas: int
    chief: bool
    mixed_precision: bool
    out: object
    report_path: object
    curves_path: object
    confusion_path: object
    seed: int
    strict: bool
    verbose: int

    def settings(self, image_size, policy) -> dict:
        """The ``settings`` of the report (JSON-ready); ``image_size`` as resolved, ``policy`` the mixed one or None."""
        class_weight = self.class_weight
        return dict(
            data_dir=self.data_dir,
            val_dir=None if self.val_dir is None else os.fspath(self.val_dir),
            val_split=None if self.val_dir is not None else self.val_split,
            weights=self.weights if self.weights is None or isinstance(self.weights, str) else os.fspath(self.weights),
            image_size=image_size,
            epochs=self.epochs,
            max_epochs=self.max_epochs,
            patience=self.patience,
            learning_rate=self.learning_rate,
            dropout=self.dropout,
            fine_tune_epochs=self.fine_tune_epochs,
            fine_tune_blocks=self.fine_tune_blocks,
            fine_tune_learning_rate=self.fine_tune_learning_rate,
            augment=bool(self.augment),
            class_weight=class_weight
            if not isinstance(class_weight, dict)
            else {str(k): v for k, v in class_weight.items()},
            batch_size=self.batch_size,
            strategy=self.strategy_name,
            num_replicas=self.replicas,
            mixed_precision=policy or False,
            seed=self.seed,
        )


def check_arguments(**arguments) -> TrainOptions:
    """The keyword arguments of ``train()``, checked (``ValueError`` naming the argument): a :class:`TrainOptions`.

    A strategy given by name is created here (multi-worker: before any TensorFlow op).
    """
    a = arguments
    data_dir = a["data_dir"]
    if not isinstance(data_dir, (str, os.PathLike)) or not os.path.isdir(data_dir):
        raise ValueError(f"`data_dir` must be an existing folder of class folders; received data_dir={data_dir!r}.")
    a["data_dir"] = os.fspath(data_dir)
    if a["epochs"] != "auto":
        a["epochs"] = _positive(a["epochs"], "epochs")
    a["max_epochs"], a["patience"] = _positive(a["max_epochs"], "max_epochs"), _positive(a["patience"], "patience")
    a["fine_tune_epochs"] = _positive(a["fine_tune_epochs"], "fine_tune_epochs", allow_zero=True)
    a["batch_size"] = _positive(a["batch_size"], "batch_size")
    a["learning_rate"] = _positive(a["learning_rate"], "learning_rate", float)
    a["fine_tune_learning_rate"] = _positive(a["fine_tune_learning_rate"], "fine_tune_learning_rate", float)
    image_size = a["image_size"]
    bad_size = isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer))
    if image_size is not None and (bad_size or image_size < MIN_INPUT_SIZE):
        raise ValueError(
            f"`image_size` must be an integer >= {MIN_INPUT_SIZE} (the smallest input Xception accepts); "
            f"received image_size={image_size!r}."
        )
    if a["out"] is not None:
        a["out"] = check_keras_path(a["out"], "out")
    class_weight = a["class_weight"]
    if class_weight not in (None, "balanced") and not isinstance(class_weight, dict):
        raise ValueError(f"`class_weight` must be None, 'balanced' or a dict; received {class_weight!r}.")
    strategy = a["strategy"]
    if not isinstance(strategy, str):
        a["strategy_name"] = type(strategy).__name__
    else:
        a["strategy_name"], a["strategy"] = strategy, make_strategy(strategy)  # (multi-worker: before any TF op)
    a["chief"] = is_chief(a["strategy"])
    replicas = a["replicas"] = a["strategy"].num_replicas_in_sync
    if a["batch_size"] % replicas:
        raise ValueError(
            f"`batch_size` must be a multiple of the {replicas} replicas; received batch_size={a['batch_size']}."
        )
    return TrainOptions(**a)


def _positive(value, name, kind=int, allow_zero=False):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and (kind is float or float(value).is_integer()) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        what = "a non-negative" if allow_zero else "a positive"
        raise ValueError(
            f"`{name}` must be {what} {'integer' if kind is int else 'number'}; received {name}={value!r}."
        )
    return kind(value)


def class_weights(labels, num_classes, class_weight, class_names):
    """``class_weight`` (None, ``"balanced"`` or a dict by name or index) as ``{class_index: weight}`` or None."""
    if class_weight is None:
        return None
    if class_weight == "balanced":  # n / (k * n_c), as scikit-learn's "balanced"
        counts = np.bincount(labels, minlength=num_classes)
        return {c: float(len(labels) / (num_classes * counts[c])) for c in range(num_classes) if counts[c]}
    if isinstance(class_weight, dict):
        index = {name: i for i, name in enumerate(class_names)}
        out = {}
        for k, v in class_weight.items():
            i = index.get(k, k)
            if not isinstance(i, (int, np.integer)) or not 0 <= i < num_classes:
                raise ValueError(f"`class_weight` key {k!r} is neither a class name nor a class index.")
            out[int(i)] = float(v)
        return out
    raise ValueError(f"`class_weight` must be None, 'balanced' or a dict; received {class_weight!r}.")


@contextlib.contextmanager
def dtype_policy(mixed):
    """The global Keras dtype policy for building the model: a mixed one, or unchanged."""
    import keras

    if not mixed:
        yield None
        return
    import tensorflow as tf

    name = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield name
    finally:
        keras.config.set_dtype_policy(previous)
