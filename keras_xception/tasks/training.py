"""Transfer learning as one call: :func:`train` a classifier on a class-per-folder image tree.

``train("photos/")`` (``photos/<class>/*.jpg``) returns a :class:`Classifier`
(the Keras model, its class names and its input transform) and a report dict,
following the recipe of :mod:`keras_xception.tasks.transfer`:

1. **Data**: the class folders are split per class into training and
   validation files (``val_split``, seeded), or the validation files come
   from ``val_dir`` (class folders with the same names). Images are read with
   the weights' transform at ``image_size``, JPEGs turned upright by their
   EXIF orientation (``Transform.exif_orientation``). Files that cannot be
   read are skipped and listed, with the reason, in the report.
2. **Head** (the fast path): the frozen backbone runs once over the training
   and validation images; the head (dropout + Dense) is trained on those
   cached pooled features, **without augmentation** (each image is seen as it
   is). By default (``epochs="auto"``) until the validation loss stops
   improving: early stopping with ``patience`` epochs, the best weights
   restored, at most ``max_epochs`` epochs. A head epoch on cached features
   costs milliseconds, so this is cheap.
3. **Fine-tuning** (optional, ``fine_tune_epochs``): the top
   ``fine_tune_blocks`` blocks are unfrozen (BatchNormalization stays frozen),
   Adam at the lower ``fine_tune_learning_rate``, on the images, with
   augmentation when ``augment=True`` (Keras preprocessing layers: horizontal
   flip, small rotation, zoom and translation, applied in the ``tf.data``
   pipeline, so the saved model has no random layers). The best epoch by
   validation loss is kept, and the head-only weights are kept if
   fine-tuning never beat them.
4. **Report**: validation accuracy, per-class precision/recall/F1, the
   confusion matrix, timings and settings; with ``out`` the classifier is
   saved (``.keras``, see below) with a training-curves PNG and a
   confusion-matrix PNG beside it.

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

Distribution: ``strategy`` (``"default"``, ``"mirrored"``, ``"multi-worker"``
or a ``tf.distribute.Strategy``) builds and trains the model in its scope;
``batch_size`` is the global batch. ``mixed_precision=True`` builds the
backbone under a mixed policy (``mixed_float16`` with a GPU, else
``mixed_bfloat16``) and keeps the head in float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import warnings
import zipfile

import numpy as np

from keras_xception.data.dataset import Records, decode_records, explain, image_dataset
from keras_xception.data.files import class_folder_split, list_images, looks_like_image
from keras_xception.data.transform import Transform, resolve_transform
from keras_xception.model.spec import MIN_INPUT_SIZE
from keras_xception.tasks import transfer
from keras_xception.tasks.evaluation import is_chief, make_strategy
from keras_xception.tasks.extraction import extract_features, predict_batches

__all__ = [
    "Classifier",
    "train",
    "save_classifier",
    "load_classifier",
    "evaluate_classifier",
    "classification_report",
    "augmentation",
    "METADATA_MEMBER",
    "HEAD_NOTE",
]

#: The member of the ``.keras`` archive holding the class names and the transform.
METADATA_MEMBER = "keras_xception.json"
_FORMAT = "keras-xception classifier"
#: What the report says about the head phase.
HEAD_NOTE = (
    "The head was trained on cached backbone features (the frozen backbone ran once over the training "
    "and validation images), without augmentation."
)


# ---------------------------------------------------------------- the classifier and its file


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


def _check_keras_path(path, argument="path"):
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

    path = _check_keras_path(path)
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

    path = _check_keras_path(path, "model")
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


# ---------------------------------------------------------------- data


def _split(data_dir, val_dir, val_split, seed, problems):
    """``(train_paths, train_labels, val_paths, val_labels, class_names)`` from class folders."""
    if val_dir is None:
        if isinstance(val_split, bool) or not isinstance(val_split, (int, float)) or not 0 < val_split < 1:
            raise ValueError(
                f"`val_split` must be a number in (0, 1) (or pass `val_dir`): early stopping and the "
                f"report need validation images; received val_split={val_split!r}."
            )
        tp, tl, vp, vl, classes = class_folder_split(data_dir, val_split, seed, problems=problems)
        if not vp:
            raise ValueError(f"val_split={val_split} leaves no validation images; add images or raise val_split.")
        return tp, tl, vp, vl, classes
    tp, tl, _, _, classes = class_folder_split(data_dir, 0.0, seed, problems=problems)
    if not os.path.isdir(val_dir):
        raise ValueError(f"`val_dir` must be an existing folder of class folders; received val_dir={val_dir!r}.")
    vp, vl0, val_classes = _class_files(os.fspath(val_dir), problems)
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        raise ValueError(
            f"`val_dir` {val_dir!r} has class folders that `data_dir` has not: {unknown}; the classes are {classes}."
        )
    missing = sorted(set(classes) - set(val_classes))
    if missing:
        warnings.warn(f"`val_dir` has no folder for the classes {missing}: they are not validated.", stacklevel=3)
    index = {c: i for i, c in enumerate(classes)}
    vl = np.array([index[val_classes[k]] for k in vl0], "int32")
    return tp, tl, vp, vl, classes


def _class_files(folder, problems):
    """Every image of a class-per-folder tree (one class is enough): ``(paths, labels, class_names)``.

    Files are found and checked as :func:`~keras_xception.data.files.class_folder_split`
    does; unreadable ones are appended to ``problems``.
    """
    try:
        names = sorted(
            d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)) and not d.startswith(".")
        )
    except OSError as e:
        raise ValueError(f"Cannot read the folder {folder!r}: {e.strerror or e}.") from None
    if not names:
        raise ValueError(f"{folder!r} must hold one sub-folder of images per class; it has none.")
    paths, labels = [], []
    for label, name in enumerate(names):
        files = []
        for path in list_images(os.path.join(folder, name), problems=problems):
            try:
                if looks_like_image(path):
                    files.append(path)
                else:
                    problems.append((path, "not a JPEG, PNG, GIF or BMP image"))
            except OSError as e:
                problems.append((path, e.strerror or str(e)))
        if not files:
            raise ValueError(f"Class folder {os.path.join(folder, name)!r} has no image files.")
        paths += files
        labels += [label] * len(files)
    return paths, np.array(labels, "int32"), names


def _run_over_files(predict, paths, labels, transform, batch_size, verbose, strict, skipped, what):
    """``predict`` over the readable images of ``paths``: ``(outputs, labels, kept_paths)``.

    Unreadable files are appended to ``skipped`` as ``(path, reason)``
    (``strict``: ``ValueError`` at the first).
    """
    records = Records.from_files(paths, labels, description=what)
    kept, kept_labels, bad = [], [], []

    def batches():
        for index, images, label, ok in decode_records(records, transform).batch(batch_size):
            index, ok = index.numpy(), ok.numpy()
            if strict and not ok.all():
                _, name, reason = explain(records, [int(index[~ok][0])], transform)[0]
                raise ValueError(f"Cannot read {name!r} as an image: {reason}.")
            bad.extend(int(i) for i in index[~ok])
            kept.extend(paths[int(i)] for i in index[ok])
            kept_labels.extend(label.numpy()[ok])
            yield (images.numpy()[ok] if ok.any() else None), len(ok)

    if verbose:
        print(f"Running the model over the {what} ({len(paths)} images)")
    out = predict_batches(predict, batches(), total=len(paths), verbose=verbose)
    for _, name, reason in explain(records, bad, transform):
        skipped.append((name, reason))
        warnings.warn(f"Skipping unreadable image {name!r}: {reason}", stacklevel=3)
    return out, np.asarray(kept_labels, "int64"), kept


def _first_batch(n, batch_size, replicas, what):
    """A batch size whose first batch splits evenly over the replicas.

    Keras 3.15's ``fit``/``evaluate`` under a multi-replica strategy reduce the
    first distributed batch with ``MEAN`` to build the model, which fails when
    the replicas hold different numbers of examples (e.g. 3 validation images
    on 2 replicas). Later batches may be uneven. Returns ``batch_size`` when
    ``n`` fills it, else ``n`` rounded down to a multiple of ``replicas``.
    """
    if replicas == 1 or n >= batch_size:
        return batch_size
    if n < replicas:
        raise ValueError(f"{n} {what} for {replicas} replicas: each replica needs at least one; add images.")
    return n - n % replicas


def _tensor_slices(x, y):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y))


def _batches(ds, n, batch_size, replicas, seed):
    """Shuffled (every epoch, seeded) batches of ``ds`` (``n`` examples) for ``fit``.

    Under several replicas a last batch that is not full is dropped (each
    epoch drops other examples): Keras 3.15 fails on a replica whose share of
    a batch is empty.
    """
    import tensorflow as tf

    ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=replicas > 1 and n % batch_size != 0).prefetch(tf.data.AUTOTUNE)


def _predictor(model, strategy):
    """numpy batch -> numpy outputs under ``strategy`` (``predict_on_batch`` would run every replica on
    the whole batch under a multi-replica strategy, so ``predict`` splits it there)."""
    if strategy.num_replicas_in_sync == 1:
        return model.predict_on_batch
    return lambda x: model.predict(x, batch_size=len(x), verbose=0)


# ---------------------------------------------------------------- augmentation and callbacks


def augmentation(seed=None, rotation=0.03, zoom=0.1, translation=0.1):
    """The fine-tuning augmentation: Keras preprocessing layers, active only when called with ``training=True``.

    ``RandomFlip("horizontal")``, ``RandomRotation(rotation)`` (a fraction of
    a full turn: 0.03 is about +-11 degrees), ``RandomZoom(zoom)`` and
    ``RandomTranslation(translation, translation)``, reflecting at the borders.
    """
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(rotation, fill_mode="reflect", seed=seed),
            keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=seed),
            keras.layers.RandomTranslation(translation, translation, fill_mode="reflect", seed=seed),
        ],
        name="augmentation",
    )


def _validation_callback():
    import keras

    class Validation(keras.callbacks.Callback):
        """``val_loss`` and ``val_accuracy`` at the end of every epoch, computed outside the training step.

        On one device whatever the strategy (so the figures do not depend on
        how the validation set splits over replicas), from the probabilities
        ``scores()`` returns; the loss is the mean cross-entropy, clipped as
        Keras clips it (1e-7). It must come before EarlyStopping in the list.
        """

        def __init__(self, scores, labels):
            super().__init__()
            self._scores, self._labels = scores, np.asarray(labels, np.int64)

        def on_epoch_end(self, epoch, logs=None):
            probs = np.clip(np.asarray(self._scores(), np.float64), 1e-7, 1 - 1e-7)
            rows = np.arange(len(self._labels))
            if logs is not None:
                logs["val_loss"] = float(np.mean(-np.log(probs[rows, self._labels])))
                logs["val_accuracy"] = float(np.mean(np.argmax(probs, axis=1) == self._labels))

    return Validation


def _validation(scores, labels):
    return _validation_callback()(scores, labels)


def _epoch_logger(phase, every, total):
    import keras

    class EpochLog(keras.callbacks.Callback):
        """One line every ``every`` epochs (the head runs up to hundreds of millisecond-epochs)."""

        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % every == 0 or epoch == 0:
                figures = "  ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if k != "learning_rate")
                print(f"{phase} epoch {epoch + 1}/{total}: {figures}", flush=True)

    return EpochLog()


# ---------------------------------------------------------------- metrics and plots


def classification_report(labels, probabilities, class_names) -> dict:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (rows: true, columns: predicted)."""
    labels = np.asarray(labels, np.int64)
    probabilities = np.asarray(probabilities)
    n = len(class_names)
    predicted = np.argmax(probabilities, axis=1) if len(labels) else np.zeros(0, np.int64)
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (labels, predicted), 1)
    per_class = {}
    for k, name in enumerate(class_names):
        tp, support, called = int(cm[k, k]), int(cm[k].sum()), int(cm[:, k].sum())
        precision = tp / called if called else 0.0
        recall = tp / support if support else None
        f1 = 2 * precision * recall / (precision + recall) if recall and precision else 0.0
        per_class[name] = dict(precision=precision, recall=recall, f1=f1, support=support)
    report = dict(
        accuracy=float(np.mean(predicted == labels)) if len(labels) else None,
        count=int(len(labels)),
        per_class=per_class,
        confusion_matrix=cm.tolist(),
    )
    if n > 5 and len(labels):
        top5 = np.argsort(-probabilities, axis=1)[:, :5]
        report["top5_accuracy"] = float(np.mean(np.any(top5 == labels[:, None], axis=1)))
    return report


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(path, head_history, fine_tune_history=None, best=None):
    """Training curves (accuracy and loss, training and validation) of both phases, as a PNG."""
    import matplotlib.ticker

    plt = _pyplot()
    fine_tune_history = fine_tune_history or {}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    n_head = len(head_history.get("loss", []))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = list(head_history.get(prefix + metric, [])) + list(fine_tune_history.get(prefix + metric, []))
            marker = "o" if len(values) <= 30 else None
            ax.plot(range(1, len(values) + 1), values, style, marker=marker, ms=3, label=(prefix or "train_") + metric)
        if fine_tune_history:
            ax.axvline(n_head + 0.5, color="grey", lw=0.8)
            ax.text(n_head + 0.7, 0.98, "fine-tuning", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
        if best:
            ax.axvline(best, color="green", lw=0.8, ls=":", label=f"kept (epoch {best})")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch (head on cached features" + (", then fine-tuning)" if fine_tune_history else ")"))
        ax.set_title(metric)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion_matrix(path, matrix, class_names, title="validation"):
    """The confusion matrix as a PNG: counts in the cells, colour by the row's fraction."""
    plt = _pyplot()
    cm = np.asarray(matrix, np.float64)
    n = len(class_names)
    side = min(max(4.0, 0.45 * n + 2.5), 30.0)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    fractions = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n), labels=class_names, rotation=90 if n > 6 else 45, ha="center" if n > 6 else "right")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = int(cm.sum())
    ax.set_title(f"Confusion matrix, {title}\n{total} images, accuracy {np.trace(cm) / max(total, 1):.3f}", fontsize=10)
    if n <= 40:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    colour = "white" if fractions[i, j] > 0.5 else "black"
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- train


@contextlib.contextmanager
def _dtype_policy(mixed):
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


def _positive(value, name, kind=int, allow_zero=False):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and (kind is float or float(value).is_integer()) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        what = "a non-negative" if allow_zero else "a positive"
        raise ValueError(
            f"`{name}` must be {what} {'integer' if kind is int else 'number'}; received {name}={value!r}."
        )
    return kind(value)


def _class_weights(labels, num_classes, class_weight, class_names):
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


def train(
    data_dir,
    *,
    val_dir=None,
    val_split=0.2,
    weights="imagenet",
    backbone=None,
    image_size=None,
    epochs="auto",
    max_epochs=300,
    patience=10,
    learning_rate=1e-3,
    dropout=0.2,
    fine_tune_epochs=0,
    fine_tune_blocks=2,
    fine_tune_learning_rate=1e-5,
    augment=False,
    class_weight=None,
    batch_size=32,
    strategy="default",
    mixed_precision=False,
    out=None,
    report_path=None,
    curves_path=None,
    confusion_path=None,
    seed=1337,
    strict=False,
    verbose=1,
):
    """Train a classifier on a class-per-folder image tree; returns ``(classifier, report)``.

    See the module documentation for the recipe. Args:
        data_dir: ``data_dir/<class>/*.jpg`` (JPEG, PNG, GIF, BMP; searched
            recursively; at least 2 class folders, none empty).
        val_dir: Validation images in class folders named like ``data_dir``'s
            (default: ``val_split`` of each class of ``data_dir``).
        val_split: Fraction of each class held out for validation (0 < v < 1).
        weights: Backbone weights: ``"imagenet"``, a registered name, a file,
            or None (random; for tests).
        backbone: A function returning the backbone to use instead of
            ``Xception(include_top=False, weights=weights)`` (a Keras model with
            a 4D feature-map output, e.g. an Xception variant); it is called in
            the strategy scope. ``weights`` then only chooses the transform.
        image_size: Square input side (default: the weights', 299); >= 71.
        epochs: ``"auto"`` (early stopping on the validation loss, best
            weights restored, at most ``max_epochs``) or a number of head epochs.
        patience: Epochs without improvement before early stopping.
        learning_rate: Adam learning rate of the head.
        dropout: Dropout rate before the head's Dense layer.
        fine_tune_epochs: Fine-tuning epochs after the head (0: none).
        fine_tune_blocks: Top backbone blocks unfrozen for fine-tuning.
        fine_tune_learning_rate: Adam learning rate of fine-tuning.
        augment: Augment the images during fine-tuning (:func:`augmentation`).
        class_weight: None, ``"balanced"`` (n / (classes * n_class)) or a
            dict by class name or index; used in both phases.
        batch_size: Global batch size.
        strategy: ``"default"``, ``"mirrored"``, ``"multi-worker"`` or a
            ``tf.distribute.Strategy``.
        mixed_precision: Mixed-precision backbone, float32 head.
        out: Save the classifier here (``.keras``) with ``<out>_curves.png``
            and ``<out>_confusion.png`` beside it (by default).
        report_path: Also write the report as JSON here.
        curves_path, confusion_path: The PNG paths (default: beside ``out``;
            without ``out``, no plots unless given).
        seed: Seeds the split, the head's initial weights, the shuffling and
            the augmentation.
        strict: Fail at the first unreadable image instead of skipping it.
        verbose: 0 silent, 1 progress bars, 2 one line per phase / epoch.

    Returns:
        ``(classifier, report)``: a :class:`Classifier` and the report dict
        (``val_accuracy``, ``per_class``, ``confusion_matrix``,
        ``class_names``, ``skipped``, ``head``, ``fine_tune``, ``timings``,
        ``settings``, ``outputs``).

    Raises:
        ValueError: bad arguments or data (fewer than 2 classes, an empty
            class, an image size below 71, no readable image in a class), each
            message naming the argument or the folder.
    """
    import keras

    started = time.perf_counter()
    if not isinstance(data_dir, (str, os.PathLike)) or not os.path.isdir(data_dir):
        raise ValueError(f"`data_dir` must be an existing folder of class folders; received data_dir={data_dir!r}.")
    data_dir = os.fspath(data_dir)
    if epochs != "auto":
        epochs = _positive(epochs, "epochs")
    max_epochs, patience = _positive(max_epochs, "max_epochs"), _positive(patience, "patience")
    fine_tune_epochs = _positive(fine_tune_epochs, "fine_tune_epochs", allow_zero=True)
    batch_size = _positive(batch_size, "batch_size")
    learning_rate = _positive(learning_rate, "learning_rate", float)
    fine_tune_learning_rate = _positive(fine_tune_learning_rate, "fine_tune_learning_rate", float)
    bad_size = isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer))
    if image_size is not None and (bad_size or image_size < MIN_INPUT_SIZE):
        raise ValueError(
            f"`image_size` must be an integer >= {MIN_INPUT_SIZE} (the smallest input Xception accepts); "
            f"received image_size={image_size!r}."
        )
    if out is not None:
        out = _check_keras_path(out, "out")
    if class_weight not in (None, "balanced") and not isinstance(class_weight, dict):
        raise ValueError(f"`class_weight` must be None, 'balanced' or a dict; received {class_weight!r}.")
    if not isinstance(strategy, str):
        strategy_name = type(strategy).__name__
    else:
        strategy_name, strategy = strategy, make_strategy(strategy)  # (multi-worker: before any TF op)
    chief = is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"`batch_size` must be a multiple of the {replicas} replicas; received batch_size={batch_size}."
        )

    problems = []
    tp, tl, vp, vl, class_names = _split(data_dir, val_dir, val_split, seed, problems)
    for path, reason in problems:
        if strict:
            raise ValueError(f"Cannot read {path!r}: {reason}.")
        warnings.warn(f"Skipping {path!r}: {reason}", stacklevel=2)
    num_classes = len(class_names)
    transform = resolve_transform(
        weights, target_size=image_size, exif_orientation=True, preprocessing=None
    )  # the classifier scales its input itself
    shape = transform.target_size + (3,)
    keras.utils.set_random_seed(seed)
    if verbose:
        print(
            f"{num_classes} classes, {len(tp)} training and {len(vp)} validation images, "
            f"{shape[0]}x{shape[1]}, {replicas} replica(s)",
            flush=True,
        )

    with _dtype_policy(mixed_precision) as policy, strategy.scope():
        backbone = transfer.build_backbone(weights, shape) if backbone is None else backbone()
        head = transfer.build_head(
            num_classes, feature_dim=int(backbone.output.shape[-1]), dropout=dropout, dtype="float32"
        )
        model = transfer.build_classifier(backbone=backbone, head=head, input_shape=shape)
        extractor = transfer.pooled_features(model)  # in the scope: its predict is distributed

    # ---- features, once (no augmentation)
    skipped = [(p, r) for p, r in problems]
    t0 = time.perf_counter()
    predict = _predictor(extractor, strategy)
    x_train, y_train, kept_train = _run_over_files(
        predict, tp, tl, transform, batch_size, verbose, strict, skipped, "training images"
    )
    x_val, y_val, kept_val = _run_over_files(
        predict, vp, vl, transform, batch_size, verbose, strict, skipped, "validation images"
    )
    features_seconds = time.perf_counter() - t0
    if x_train is None or x_val is None:
        raise ValueError("No readable training or validation image: nothing to train on (see the skipped files above).")
    empty = [class_names[c] for c in range(num_classes) if not np.any(y_train == c)]
    if empty:
        raise ValueError(f"No readable training image in the class folders {empty} of {data_dir!r}.")
    weights_by_class = _class_weights(y_train, num_classes, class_weight, class_names)
    # Keras 3.15 under a multi-replica strategy: the first batch must split evenly (fit builds the
    # model from it) and no replica may get an empty batch; see _first_batch and _batches.
    train_batch = _first_batch(len(y_train), batch_size, replicas, "training images")

    # ---- head on the cached features
    auto = epochs == "auto"
    head_epochs = max_epochs if auto else epochs
    x_val_tensor = np.asarray(x_val, np.float32)
    callbacks = [_validation(lambda: np.asarray(head(x_val_tensor, training=False)), y_val)]
    if auto:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, min_delta=1e-4, restore_best_weights=True, verbose=0
            )
        )
    if verbose:
        callbacks.append(_epoch_logger("head", 10 if verbose == 1 else 25, f"<={head_epochs}" if auto else head_epochs))
    t0 = time.perf_counter()
    with strategy.scope():
        head_history = transfer.fit_head(
            model,
            _batches(_tensor_slices(x_train, y_train), len(y_train), train_batch, replicas, seed),
            None,
            epochs=head_epochs,
            learning_rate=learning_rate,
            verbose=0,
            callbacks=callbacks,
            class_weight=weights_by_class,
        ).history
    head_seconds = time.perf_counter() - t0
    val_losses = head_history["val_loss"]
    best_head = int(np.argmin(val_losses)) + 1 if auto else len(val_losses)
    head_report = dict(
        cached_features=True,
        augmentation=False,
        note=HEAD_NOTE,
        epochs_run=len(val_losses),
        best_epoch=best_head,
        stopped_early=auto and len(val_losses) < head_epochs,
        max_epochs=head_epochs,
        early_stopping=dict(monitor="val_loss", patience=patience, restore_best_weights=True) if auto else None,
        learning_rate=learning_rate,
        val_loss=float(val_losses[best_head - 1]),
        val_accuracy=float(head_history["val_accuracy"][best_head - 1]),
        seconds=round(head_seconds, 3),
        history={k: [float(v) for v in vs] for k, vs in head_history.items()},
    )
    if verbose:
        print(
            f"head: {head_report['epochs_run']} epochs on cached features, kept epoch {best_head} "
            f"(val_loss {head_report['val_loss']:.4f}, val_accuracy {head_report['val_accuracy']:.4f}), "
            f"{head_seconds:.1f} s",
            flush=True,
        )

    # ---- optional fine-tuning on the images
    fine_report, tune_history, t0 = None, {}, time.perf_counter()
    if fine_tune_epochs:
        import tensorflow as tf

        head_weights = model.get_weights()
        train_ds = image_dataset(
            Records.from_files(kept_train, y_train, "training images"),
            transform,
            batch_size=train_batch,
            shuffle=True,
            seed=seed,
        )
        if replicas > 1 and len(y_train) % train_batch:
            train_ds = train_ds.unbatch().batch(train_batch, drop_remainder=True)
        aug_layers = None
        if augment:
            aug = augmentation(seed=seed)
            aug_layers = [type(layer).__name__ for layer in aug.layers]
            train_ds = train_ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        val_ds = image_dataset(
            Records.from_files(kept_val, y_val, "validation images"), transform, batch_size=batch_size
        )
        scores = tf.function(lambda x: model(x, training=False))
        validation = _validation(lambda: np.concatenate([np.asarray(scores(x)) for x, _ in val_ds]), y_val)
        stopper = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=max(3, fine_tune_epochs), restore_best_weights=True, verbose=0
        )
        if verbose:
            print(
                f"fine-tuning the top {fine_tune_blocks} blocks for {fine_tune_epochs} epochs "
                f"(learning rate {fine_tune_learning_rate:g}, augmentation {'on' if augment else 'off'})",
                flush=True,
            )
        # The datasets skip unreadable files, so their length is unknown until an epoch ends
        # and Keras says the input "ran out of data" at the end of the first: expected here.
        with strategy.scope(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            tune_history = transfer.fine_tune(
                model,
                train_ds,
                None,
                epochs=fine_tune_epochs,
                blocks=fine_tune_blocks,
                learning_rate=fine_tune_learning_rate,
                verbose=verbose,
                callbacks=[validation, stopper]
                + ([_epoch_logger("fine-tuning", 1, fine_tune_epochs)] if verbose else []),
                class_weight=weights_by_class,
            ).history
        best_tune = int(np.argmin(tune_history["val_loss"]))
        improved = tune_history["val_loss"][best_tune] < head_report["val_loss"]
        if not improved:
            model.set_weights(head_weights)
        fine_report = dict(
            epochs=fine_tune_epochs,
            blocks=fine_tune_blocks,
            learning_rate=fine_tune_learning_rate,
            augmentation=aug_layers or False,
            batchnorm="frozen (inference mode)",
            best_epoch=best_tune + 1,
            val_loss=float(tune_history["val_loss"][best_tune]),
            kept=bool(improved),
            seconds=round(time.perf_counter() - t0, 3),
            history={k: [float(v) for v in vs] for k, vs in tune_history.items()},
        )
        if verbose and not improved:
            print("fine-tuning did not lower the validation loss: the head-only weights are kept", flush=True)
    fine_seconds = time.perf_counter() - t0
    # ---- the final model on the validation images
    t0 = time.perf_counter()
    if fine_report and fine_report["kept"]:
        probs, y_eval, _ = _run_over_files(
            _predictor(model, strategy), kept_val, y_val, transform, batch_size, 0, strict, [], "validation images"
        )
    else:  # the model is the head on the same features: no need to run the backbone again
        probs, y_eval = np.asarray(model.get_layer("head").predict(x_val, batch_size=256, verbose=0)), y_val
    evaluation = classification_report(y_eval, probs, class_names)
    eval_seconds = time.perf_counter() - t0

    settings = dict(
        data_dir=data_dir,
        val_dir=None if val_dir is None else os.fspath(val_dir),
        val_split=None if val_dir is not None else val_split,
        weights=weights if weights is None or isinstance(weights, str) else os.fspath(weights),
        image_size=shape[0],
        epochs=epochs,
        max_epochs=max_epochs,
        patience=patience,
        learning_rate=learning_rate,
        dropout=dropout,
        fine_tune_epochs=fine_tune_epochs,
        fine_tune_blocks=fine_tune_blocks,
        fine_tune_learning_rate=fine_tune_learning_rate,
        augment=bool(augment),
        class_weight=class_weight
        if not isinstance(class_weight, dict)
        else {str(k): v for k, v in class_weight.items()},
        batch_size=batch_size,
        strategy=strategy_name,
        num_replicas=replicas,
        mixed_precision=policy or False,
        seed=seed,
    )
    report = dict(
        val_accuracy=evaluation["accuracy"],
        val_loss=fine_report["val_loss"] if fine_report and fine_report["kept"] else head_report["val_loss"],
        class_names=list(class_names),
        num_classes=num_classes,
        num_train=len(kept_train),
        num_val=len(kept_val),
        per_class=evaluation["per_class"],
        confusion_matrix=evaluation["confusion_matrix"],
        skipped=[dict(path=p, reason=r) for p, r in skipped],
        head=head_report,
        fine_tune=fine_report,
        class_weights=None if weights_by_class is None else {class_names[k]: v for k, v in weights_by_class.items()},
        transform=transform.to_dict(),
        settings=settings,
        timings=dict(
            features_seconds=round(features_seconds, 3),
            head_seconds=round(head_seconds, 3),
            fine_tune_seconds=round(fine_seconds, 3),
            evaluation_seconds=round(eval_seconds, 3),
        ),
        versions=dict(keras=keras.__version__, keras_xception=_version()),
        outputs={},
    )
    if "top5_accuracy" in evaluation:
        report["val_top5_accuracy"] = evaluation["top5_accuracy"]
    info = dict(
        weights=settings["weights"],
        trained=dict(
            val_accuracy=report["val_accuracy"],
            num_train=report["num_train"],
            num_val=report["num_val"],
            fine_tuned=bool(fine_report and fine_report["kept"]),
            settings=settings,
        ),
    )
    classifier = Classifier(model, class_names, transform, info)

    if chief:
        if out is not None:
            report["outputs"]["model"] = classifier.save(out)
            stem = os.path.splitext(out)[0]
            curves_path = curves_path or stem + "_curves.png"
            confusion_path = confusion_path or stem + "_confusion.png"
        best_overall = (
            (len(val_losses) + fine_report["best_epoch"]) if fine_report and fine_report["kept"] else best_head
        )
        if curves_path:
            report["outputs"]["curves"] = plot_curves(curves_path, head_history, tune_history, best=best_overall)
        if confusion_path:
            report["outputs"]["confusion_matrix"] = plot_confusion_matrix(
                confusion_path, report["confusion_matrix"], class_names
            )
        if report_path:
            report["outputs"]["report"] = os.fspath(report_path)
    report["timings"]["total_seconds"] = round(time.perf_counter() - started, 3)
    if chief and report_path:
        with open(report_path, "w") as f:
            json.dump(report, f, indent=2, default=float)
            f.write("\n")
    return classifier, report


def _version():
    import keras_xception

    return keras_xception.__version__


# ---------------------------------------------------------------- evaluate a trained classifier


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
    paths, labels0, folder_classes = _class_files(os.fspath(val_dir), problems)
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
    probs, y, _ = _run_over_files(
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
