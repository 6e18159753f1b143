"""Transfer learning as one call: :func:`train` a classifier on a class-per-folder image tree.

The recipe and the report are described in docs/training.md; the steps are :mod:`keras_xception.tasks.transfer`'s.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_xception import __version__, checks
from keras_xception.data.dataset import image_dataset, map_batches
from keras_xception.data.files import class_folder_split, class_folders
from keras_xception.data.results import Skipped
from keras_xception.data.transform import resolve_transform
from keras_xception.model.features import feature_model
from keras_xception.tasks import reports, transfer
from keras_xception.tasks.classifier import Classifier
from keras_xception.tasks.evaluation import is_chief, make_strategy
from keras_xception.tasks.options import TrainOptions

__all__ = ["train", "augmentation"]

#: Pooled features whose largest spread over the training images is below this are degenerate (an untrained
#: Xception: about 4e-5 at 71 px; the small random test backbone: 5e-4; pretrained: units).
DEGENERATE_SPREAD = 1e-4


def train(data_dir, **options):
    """Train a classifier on a class-per-folder image tree; returns ``(classifier, report)``.

    Args:
        data_dir: A folder with one sub-folder of images per class.
        **options: The fields of :class:`~keras_xception.tasks.options.TrainOptions` (each one's
            default and meaning); ``backbone`` is a function returning the backbone to use instead
            of ``Xception(include_top=False, weights=weights)``, called in the strategy scope.

    Returns:
        ``(classifier, report)``: a :class:`~keras_xception.tasks.classifier.Classifier` and the
        report dict (``val_accuracy``, ``per_class``, ``confusion_matrix``, ``head``, ``fine_tune``,
        ``skipped``, ``timings``, ``settings``, ``outputs``, ...).

    Raises:
        ValueError: bad arguments or data (fewer than 2 classes, an empty class, an image size
            below 71, no readable image in a class), each message naming the argument or folder.
    """
    started = time.perf_counter()
    run = TrainOptions(**options)
    data_dir = checks.existing_dir(data_dir, "data_dir", "an existing folder of class folders")
    if run.verbose == "auto":  # Keras's animated bars on a terminal, else one line per epoch
        run = dataclasses.replace(run, verbose=1 if sys.stdout.isatty() else 2)
    strategy = make_strategy(run.strategy) if isinstance(run.strategy, str) else run.strategy
    if run.batch_size % strategy.num_replicas_in_sync:
        replicas = strategy.num_replicas_in_sync
        raise ValueError(f"`batch_size` must be a multiple of the {replicas} replicas; received {run.batch_size}.")
    data = _files(run, data_dir)
    model, policy = _build(run, data, strategy)
    features = _features(run, data, model, strategy)
    weights_by_class = class_weights(features["train"].labels, data["class_names"], run.class_weight)
    with strategy.scope():
        head, head_history = _head_phase(run, model, features, weights_by_class)
        tune, tune_history = None, {}
        if run.fine_tune_epochs:
            tune, tune_history = _fine_tune_phase(run, model, features, data["transform"], weights_by_class, head)
    replicas = strategy.num_replicas_in_sync
    settings = dict(data_dir=data_dir, **run.settings(data["transform"].target_size[0], policy, replicas))
    report = _report(model, data, features, (head, tune), weights_by_class, settings, strategy)
    trained = {k: report[k] for k in ("val_accuracy", "num_train", "num_val", "settings")}
    info = dict(weights=run.weights, trained=dict(trained, fine_tuned=bool(tune and tune["kept"])))
    classifier = Classifier(model, data["class_names"], data["transform"], info)
    chief = is_chief(strategy)  # the other workers of a multi-worker strategy write nothing
    reports.write_outputs(report, classifier, run if chief else None, (head_history, tune_history), started)
    return classifier, report


train.__signature__ = inspect.Signature(
    [inspect.Parameter("data_dir", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
        for f in dataclasses.fields(TrainOptions)
    ]
)


def _files(run, data_dir) -> dict:
    """Training and validation files and labels, the class names, the transform, the files skipped while listing."""
    problems = []
    split = 0.0 if run.val_dir is not None else run.val_split
    tp, tl, vp, vl, classes = class_folder_split(data_dir, split, run.seed, problems=problems)
    if run.val_dir is not None:
        val_dir = checks.existing_dir(run.val_dir, "val_dir", "an existing folder of class folders")
        vp, vl, val_classes = class_folders(val_dir, problems)
        unknown = sorted(set(val_classes) - set(classes))
        if unknown:
            raise ValueError(
                f"`val_dir` {val_dir!r} has class folders that `data_dir` has not: {unknown}; the classes are {classes}."
            )
        missing = sorted(set(classes) - set(val_classes))
        if missing:
            warnings.warn(f"`val_dir` has no folder for the classes {missing}: they are not validated.", stacklevel=3)
        vl = np.array([classes.index(val_classes[k]) for k in vl], "int64")
    elif not vp:
        raise ValueError(f"val_split={run.val_split} leaves no validation images; add images or raise val_split.")
    skipped = [Skipped(path, reason) for path, reason in problems]
    for s in skipped:
        if run.strict:
            raise ValueError(f"Cannot read {s}.")
        warnings.warn(f"Skipping {s}", stacklevel=3)
    # The classifier scales its input itself: no preprocessing in the transform.
    transform = resolve_transform(run.weights, target_size=run.image_size, exif_orientation=True, preprocessing=None)
    return dict(train=(tp, tl), val=(vp, vl), class_names=list(classes), skipped=skipped, transform=transform)


def _build(run, data, strategy):
    """Seed, then build the classifier in the strategy scope: ``(model, mixed policy or None)``."""
    shape, classes = data["transform"].target_size + (3,), len(data["class_names"])
    keras.utils.set_random_seed(run.seed)
    if run.verbose:
        print(
            f"{classes} classes, {len(data['train'][0])} training and {len(data['val'][0])} "
            f"validation images, {shape[0]}x{shape[1]}, {strategy.num_replicas_in_sync} replica(s)",
            flush=True,
        )
    previous = keras.config.dtype_policy()
    mixed = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    policy = mixed if run.mixed_precision else None
    try:
        keras.config.set_dtype_policy(policy or previous)  # the backbone's; the head is float32
        with strategy.scope():
            backbone = transfer.build_backbone(run.weights, shape, run.arch) if run.backbone is None else run.backbone()
            features = int(backbone.output.shape[-1])
            head = transfer.build_head(classes, feature_dim=features, dropout=run.dropout, dtype="float32")
            model = transfer.build_classifier(backbone=backbone, head=head, input_shape=shape)
    finally:
        keras.config.set_dtype_policy(previous)
    return model, policy


def _predictor(model, strategy, n=32):
    """numpy batch -> numpy outputs: ``predict_on_batch`` (3x faster than ``predict`` per batch), ``predict`` under
    several replicas (``predict_on_batch`` would run each on the whole batch); padded to ``n``: one shape, one trace."""
    one = strategy.num_replicas_in_sync == 1
    run = model.predict_on_batch if one else lambda x: model.predict(x, batch_size=n, verbose=0)
    return lambda x: run(np.pad(x, [(0, n - len(x))] + [(0, 0)] * (x.ndim - 1)))[: len(x)]


def _features(run, data, model, strategy) -> dict:
    """The frozen backbone once over the training and validation images: their ``Results`` (pooled features)."""
    t0 = time.perf_counter()
    with strategy.scope():  # its predict is distributed
        extractor = feature_model(model, "avg_pool", pool=True, name="features")
    predict = _predictor(extractor, strategy, run.batch_size)
    common = dict(batch_size=run.batch_size, strict=run.strict, verbose=run.verbose)
    runs = {}
    for part, what in (("train", "training images"), ("val", "validation images")):
        paths, labels = data[part]
        if run.verbose:
            print(f"Running the backbone over the {len(paths)} {what}", flush=True)
        runs[part] = map_batches(predict, paths, data["transform"], labels=labels, what=what, **common)
        if runs[part].outputs is None:
            raise ValueError(f"No readable {what}: nothing to train on (see the skipped files above).")
    empty = [name for c, name in enumerate(data["class_names"]) if not np.any(runs["train"].labels == c)]
    if empty:
        raise ValueError(f"No readable training image in the class folders {empty}.")
    x = runs["train"].outputs
    spread = float(np.max(np.ptp(x, axis=0))) if len(x) > 1 else float("inf")
    if spread < DEGENERATE_SPREAD:  # the head cannot learn from features that barely differ between images
        warnings.warn(
            f"The backbone's pooled features barely differ between the {len(x)} training images (largest spread "
            f"{spread:.1e}; backbone weights: {run.weights if run.backbone is None else 'the given backbone'!r}): "
            "the head cannot learn from them and will predict about the same class for every image. An untrained "
            "backbone (weights=None / --weights none) does this; train with pretrained weights ('imagenet' or a file).",
            stacklevel=3,
        )
    skipped = data["skipped"] + [s for r in runs.values() for s in r.skipped]
    return dict(runs, skipped=skipped, seconds=time.perf_counter() - t0)


def class_weights(labels, class_names, class_weight):
    """``class_weight`` (None, ``"balanced"`` or a dict by name or index) as ``{class_index: weight}`` or None."""
    if class_weight is None:
        return None
    n = len(class_names)
    if class_weight == "balanced":  # n_samples / (n_classes * n_c); every class has training images
        from sklearn.utils.class_weight import compute_class_weight

        return dict(enumerate(compute_class_weight("balanced", classes=np.arange(n), y=labels).tolist()))
    out = {}
    for key, value in class_weight.items():
        index = class_names.index(key) if key in class_names else key
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
            raise ValueError(f"`class_weight` key {key!r} is neither a class name nor a class index.")
        out[int(index)] = float(value)
    return out


def _phase_report(history, best, t0, **fields) -> dict:
    """A phase's report: ``fields``, the kept epoch (``best``, from 0) and its figures, the time, the history."""
    return dict(
        fields,
        best_epoch=best + 1,
        val_loss=float(history["val_loss"][best]),
        val_accuracy=float(history["val_accuracy"][best]),
        seconds=round(time.perf_counter() - t0, 3),
        history={k: [float(v) for v in vs] for k, vs in history.items()},
    )


def _head_phase(run, model, features, class_weight):
    """The head on the cached features (Keras's ``EarlyStopping`` with ``epochs="auto"``): ``(report, history)``."""
    auto = run.epochs == "auto"
    epochs = run.max_epochs if auto else run.epochs
    # Any decrease is an improvement (min_delta 0): an untrained backbone's loss falls by less than 1e-4.
    stopping = dict(monitor="val_loss", patience=run.patience, min_delta=0.0, restore_best_weights=True)
    t0 = time.perf_counter()
    history = transfer.train_head(
        model,
        (features["train"].outputs, features["train"].labels),
        (features["val"].outputs, features["val"].labels),
        epochs=epochs,
        learning_rate=run.learning_rate,
        batch_size=run.batch_size,
        verbose=0,  # milliseconds per epoch, up to hundreds of epochs: the summary line says what happened
        callbacks=[keras.callbacks.EarlyStopping(**stopping)] if auto else None,
        class_weight=class_weight,
    ).history
    losses = history["val_loss"]
    report = _phase_report(
        history,
        int(np.argmin(losses)) if auto else len(losses) - 1,  # the epoch EarlyStopping restored
        t0,
        cached_features=True,
        augmentation=False,
        note="The head was trained on cached features (the frozen backbone ran once), without augmentation.",
        epochs_run=len(losses),
        stopped_early=auto and len(losses) < epochs,
        max_epochs=epochs,
        early_stopping=stopping if auto else None,
        learning_rate=run.learning_rate,
    )
    if run.verbose:
        print(reports.head_line(report), flush=True)
    return report, history


def _one_device_validation(model, dataset, labels):
    """``val_loss`` and ``val_accuracy`` at the end of every epoch, computed on one device.

    With TensorFlow's oneDNN kernels on (TF_ENABLE_ONEDNN_OPTS; by default on some x86 CPUs, e.g. with AVX-512),
    Keras 3.15 under a multi-replica strategy fails on a batch that leaves a replica without images in a model
    with convolutions and BatchNormalization ("Incompatible shapes: [4] vs. [0,8,8,3]"; tests/test_tasks_training.py
    reproduces it); 3 validation images on 2 replicas cannot be batched otherwise. Must precede ``EarlyStopping``.
    """
    scores = tf.function(lambda x: model(x, training=False))

    def validate(epoch, logs):
        probs = np.concatenate([np.asarray(scores(x)) for x, _ in dataset])
        losses = keras.losses.sparse_categorical_crossentropy(labels, probs)  # clipped as Keras clips it
        logs["val_loss"] = float(np.mean(keras.ops.convert_to_numpy(losses)))
        logs["val_accuracy"] = float(np.mean(probs.argmax(axis=1) == labels))

    return keras.callbacks.LambdaCallback(on_epoch_end=validate)


def _fine_tune_data(run, model, features, transform):
    """The fine-tuning datasets, the callbacks they need, and the augmentation's layer names (or False)."""
    train, val, common = features["train"], features["val"], dict(batch_size=run.batch_size, seed=run.seed)
    train_ds = image_dataset(train.paths, transform, labels=train.labels, shuffle=True, **common)
    val_ds = image_dataset(val.paths, transform, labels=val.labels, shuffle=False, **common)
    callbacks = [keras.callbacks.EarlyStopping(patience=run.fine_tune_epochs, restore_best_weights=True)]
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:  # no batch may leave a replica empty
        callbacks.insert(0, _one_device_validation(model, val_ds, val.labels))
        batch = transfer.even_batch(len(train.labels), run.batch_size, "training images")
        train_ds, val_ds = train_ds.unbatch().batch(batch, drop_remainder=True), None
    layers = False
    if run.augment:
        aug = augmentation(seed=run.seed)
        layers = [type(layer).__name__ for layer in aug.layers]
        train_ds = train_ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return train_ds, val_ds, callbacks, layers


def _fine_tune_phase(run, model, features, transform, class_weight, head):
    """Fine-tune the top blocks on the images; the head-only weights back unless it lowered the loss."""
    t0, head_weights = time.perf_counter(), model.get_weights()
    train_ds, val_ds, callbacks, layers = _fine_tune_data(run, model, features, transform)
    if run.verbose:
        print(
            f"fine-tuning the top {run.fine_tune_blocks} blocks for {run.fine_tune_epochs} epochs "
            f"(learning rate {run.fine_tune_learning_rate:g}, augmentation {'on' if run.augment else 'off'})",
            flush=True,
        )
    history = transfer.fine_tune(
        model,
        train_ds,
        val_ds,
        epochs=run.fine_tune_epochs,
        blocks=run.fine_tune_blocks,
        learning_rate=run.fine_tune_learning_rate,
        verbose=run.verbose,
        callbacks=callbacks,
        class_weight=class_weight,
    ).history
    best = int(np.argmin(history["val_loss"]))
    kept = bool(history["val_loss"][best] < head["val_loss"])
    if not kept:
        model.set_weights(head_weights)
        if run.verbose:
            print("fine-tuning did not lower the validation loss: the head-only weights are kept", flush=True)
    return _phase_report(
        history,
        best,
        t0,
        epochs=run.fine_tune_epochs,
        blocks=run.fine_tune_blocks,
        learning_rate=run.fine_tune_learning_rate,
        augmentation=layers,
        batchnorm="frozen (inference mode)",
        kept=kept,
    ), history


def _report(model, data, features, phases, class_weight, settings, strategy) -> dict:
    """The report dict of :func:`train`, with the final model's figures on the validation images (the
    head on the cached features unless fine-tuning was kept); ``outputs`` and the total time come later."""
    t0, (head, tune), val = time.perf_counter(), phases, features["val"]
    if tune and tune["kept"]:
        result = map_batches(_predictor(model, strategy), val.paths, data["transform"], labels=val.labels, verbose=0)
        probs, labels = result.outputs, result.labels
    else:
        probs, labels = model.get_layer("head").predict(val.outputs, batch_size=256, verbose=0), val.labels
    top5 = (np.argsort(-probs, axis=1)[:, :5] == np.asarray(labels)[:, None]).any(axis=1)
    evaluation = reports.classification_report(labels, np.argmax(probs, axis=1), data["class_names"], top5=top5)
    names = data["class_names"]
    report = dict(
        val_accuracy=evaluation["accuracy"],
        val_loss=tune["val_loss"] if tune and tune["kept"] else head["val_loss"],
        class_names=names,
        num_classes=len(names),
        num_train=len(features["train"].paths),
        num_val=len(val.paths),
        per_class=evaluation["per_class"],
        confusion_matrix=evaluation["confusion_matrix"],
        skipped=[dict(path=s.path, reason=s.reason) for s in features["skipped"]],
        head=head,
        fine_tune=tune,
        class_weights=None if class_weight is None else {names[k]: v for k, v in class_weight.items()},
        transform=data["transform"].to_dict(),
        settings=settings,
        timings=dict(
            features_seconds=round(features["seconds"], 3),
            head_seconds=head["seconds"],
            fine_tune_seconds=tune["seconds"] if tune else 0.0,
            evaluation_seconds=round(time.perf_counter() - t0, 3),
        ),
        versions=dict(keras=keras.__version__, keras_xception=__version__),
        outputs={},
    )
    if "top5_accuracy" in evaluation:
        report["val_top5_accuracy"] = evaluation["top5_accuracy"]
    return report


def augmentation(seed=None, rotation=0.03, zoom=0.1, translation=0.1):
    """The fine-tuning augmentation: Keras preprocessing layers, active only when called with ``training=True``.

    Horizontal flips, rotation (a fraction of a turn: 0.03 is about +-11 degrees), zoom and
    translation, reflecting at the borders.
    """
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(rotation, fill_mode="reflect", seed=seed),
            keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=seed),
            keras.layers.RandomTranslation(translation, translation, fill_mode="reflect", seed=seed),
        ],
        name="augmentation",
    )
