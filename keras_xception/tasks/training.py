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

The classifier file (``.keras`` with ``keras_xception.json`` inside) is
described in :mod:`keras_xception.tasks.classifier`; the two fitting phases
are in :mod:`keras_xception.tasks.fitting`, the checked arguments in
:mod:`keras_xception.tasks.options`, the class-folder data steps in
:mod:`keras_xception.tasks.labelled`, and the report, its figures and the
files written in :mod:`keras_xception.tasks.reports`.

Distribution: ``strategy`` (``"default"``, ``"mirrored"``, ``"multi-worker"``
or a ``tf.distribute.Strategy``) builds and trains the model in its scope;
``batch_size`` is the global batch. ``mixed_precision=True`` builds the
backbone under a mixed policy (``mixed_float16`` with a GPU, else
``mixed_bfloat16``) and keeps the head in float32.
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np

from keras_xception.data.transform import resolve_transform
from keras_xception.tasks import fitting, reports, transfer
from keras_xception.tasks.classifier import Classifier, save_classifier
from keras_xception.tasks.labelled import run_over_files, split_class_folders
from keras_xception.tasks.options import check_arguments, class_weights, dtype_policy
from keras_xception.tasks.reports import classification_report

# save_classifier is re-exported: the README teaches `keras_xception.training.save_classifier`.
__all__ = ["train", "augmentation", "save_classifier"]


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
    arguments = dict(locals())  # the arguments as given (nothing else is bound yet)
    started = time.perf_counter()
    run = check_arguments(**arguments)
    data = _prepare_data(run)
    model, head, extractor, policy = _build_model(run, data)
    features = _cache_features(run, data, extractor)
    weights_by_class = class_weights(features.y_train, len(data.class_names), run.class_weight, data.class_names)
    # Keras 3.15 under a multi-replica strategy: the first batch must split evenly (fit builds the
    # model from it) and no replica may get an empty batch; see fitting.first_batch and fitting._batches.
    train_batch = fitting.first_batch(len(features.y_train), run.batch_size, run.replicas, "training images")
    fit = dict(replicas=run.replicas, strategy=run.strategy, class_weight=weights_by_class, seed=run.seed)

    head_report, head_history = fitting.head_phase(
        model,
        head,
        (features.x_train, features.y_train),
        (features.x_val, features.y_val),
        epochs=run.epochs,
        max_epochs=run.max_epochs,
        patience=run.patience,
        learning_rate=run.learning_rate,
        batch_size=train_batch,
        verbose=run.verbose,
        **fit,
    )
    fine_report, tune_history, t0 = None, {}, time.perf_counter()
    if run.fine_tune_epochs:
        fine_report, tune_history = fitting.fine_tune_phase(
            model,
            (features.kept_train, features.y_train),
            (features.kept_val, features.y_val),
            data.transform,
            epochs=run.fine_tune_epochs,
            blocks=run.fine_tune_blocks,
            learning_rate=run.fine_tune_learning_rate,
            augmentation=augmentation if run.augment else None,  # this module's, looked up at call time
            head_val_loss=head_report["val_loss"],
            batch_size=train_batch,
            val_batch_size=run.batch_size,
            verbose=run.verbose,
            **fit,
        )
    fine_seconds = time.perf_counter() - t0
    fine_tuned = bool(fine_report and fine_report["kept"])

    evaluation, eval_seconds = _evaluate(run, model, data, features, fine_tuned)
    report, info = reports.train_report(
        class_names=data.class_names,
        evaluation=evaluation,
        head=head_report,
        fine_tune=fine_report,
        num_train=len(features.kept_train),
        num_val=len(features.kept_val),
        skipped=features.skipped,
        class_weights=weights_by_class,
        transform=data.transform,
        settings=run.settings(data.transform.target_size[0], policy),
        timings=dict(
            features_seconds=round(features.seconds, 3),
            head_seconds=head_report["seconds"],
            fine_tune_seconds=round(fine_seconds, 3),
            evaluation_seconds=round(eval_seconds, 3),
        ),
    )
    classifier = Classifier(model, data.class_names, data.transform, info)
    reports.write_outputs(
        report,
        classifier,
        chief=run.chief,
        out=run.out,
        curves_path=run.curves_path,
        confusion_path=run.confusion_path,
        report_path=run.report_path,
        head_history=head_history,
        tune_history=tune_history,
        started=started,
    )
    return classifier, report


# ---------------------------------------------------------------- the phases of train()


@dataclasses.dataclass(frozen=True)
class _Data:
    """The files of one run: training and validation paths and labels, the classes, the transform."""

    train_paths: list
    train_labels: object
    val_paths: list
    val_labels: object
    class_names: list
    problems: list  # (path, reason) of the files found unreadable while listing
    transform: object


def _prepare_data(run) -> _Data:
    """Split the class folders (unreadable files warned about, or fatal with ``strict``); the input transform."""
    problems = []
    # stacklevel 4: the caller of train() (here <- train() <- the caller).
    tp, tl, vp, vl, class_names = split_class_folders(
        run.data_dir, run.val_dir, run.val_split, run.seed, problems, stacklevel=4
    )
    for path, reason in problems:
        if run.strict:
            raise ValueError(f"Cannot read {path!r}: {reason}.")
        warnings.warn(f"Skipping {path!r}: {reason}", stacklevel=3)
    transform = resolve_transform(
        run.weights, target_size=run.image_size, exif_orientation=True, preprocessing=None
    )  # the classifier scales its input itself
    return _Data(tp, tl, vp, vl, class_names, problems, transform)


def _build_model(run, data):
    """Seed, then build the classifier in the strategy scope: ``(model, head, extractor, dtype_policy)``."""
    import keras

    shape = data.transform.target_size + (3,)
    keras.utils.set_random_seed(run.seed)
    if run.verbose:
        print(
            f"{len(data.class_names)} classes, {len(data.train_paths)} training and {len(data.val_paths)} validation "
            f"images, {shape[0]}x{shape[1]}, {run.replicas} replica(s)",
            flush=True,
        )
    with dtype_policy(run.mixed_precision) as policy, run.strategy.scope():
        backbone = transfer.build_backbone(run.weights, shape) if run.backbone is None else run.backbone()
        head = transfer.build_head(
            len(data.class_names), feature_dim=int(backbone.output.shape[-1]), dropout=run.dropout, dtype="float32"
        )
        model = transfer.build_classifier(backbone=backbone, head=head, input_shape=shape)
        extractor = transfer.pooled_features(model)  # in the scope: its predict is distributed
    return model, head, extractor, policy


@dataclasses.dataclass(frozen=True)
class _Features:
    """The pooled backbone features of the readable images (``kept_*``), and the files skipped."""

    x_train: object
    y_train: object
    kept_train: list
    x_val: object
    y_val: object
    kept_val: list
    skipped: list
    seconds: float


def _cache_features(run, data, extractor) -> _Features:
    """The frozen backbone once over the training and validation images (no augmentation)."""
    skipped = [(p, r) for p, r in data.problems]
    t0 = time.perf_counter()
    predict = fitting.predictor(extractor, run.strategy)
    common = (data.transform, run.batch_size, run.verbose, run.strict, skipped)
    # stacklevel 4: the caller of train() (run_over_files <- here <- train() <- the caller).
    x_train, y_train, kept_train = run_over_files(
        predict, data.train_paths, data.train_labels, *common, "training images", stacklevel=4
    )
    x_val, y_val, kept_val = run_over_files(
        predict, data.val_paths, data.val_labels, *common, "validation images", stacklevel=4
    )
    seconds = time.perf_counter() - t0
    if x_train is None or x_val is None:
        raise ValueError("No readable training or validation image: nothing to train on (see the skipped files above).")
    class_names = data.class_names
    empty = [class_names[c] for c in range(len(class_names)) if not np.any(y_train == c)]
    if empty:
        raise ValueError(f"No readable training image in the class folders {empty} of {run.data_dir!r}.")
    return _Features(x_train, y_train, kept_train, x_val, y_val, kept_val, skipped, seconds)


def _evaluate(run, model, data, features, fine_tuned):
    """The final model on the validation images: ``(classification_report, seconds)``."""
    t0 = time.perf_counter()
    if fine_tuned:
        predict = fitting.predictor(model, run.strategy)
        files = (features.kept_val, features.y_val, data.transform, run.batch_size, 0, run.strict, [])
        # stacklevel 4: the caller of train() (run_over_files <- here <- train() <- the caller).
        probs, y_eval, _ = run_over_files(predict, *files, "validation images", stacklevel=4)
    else:  # the model is the head on the same features: no need to run the backbone again
        probs = np.asarray(model.get_layer("head").predict(features.x_val, batch_size=256, verbose=0))
        y_eval = features.y_val
    evaluation = classification_report(y_eval, probs, data.class_names)
    return evaluation, time.perf_counter() - t0


# ---------------------------------------------------------------- helpers


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
