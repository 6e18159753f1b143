"""Evaluation: one loop for ImageNet top-1/top-5 (:func:`evaluate`) and for a classifier on class folders
(:func:`evaluate_classifier`, with scikit-learn's per-class figures: :func:`.reports.classification_report`).

Under any ``tf.distribute`` strategy each image counts once: every input pipeline decodes its shard of
the records by index, then pads with invalid examples (full batches on every replica); the loop ends at
the first step in which no replica saw a real example.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
import warnings

import numpy as np

from keras_xception.checks import existing_dir, keras_path, one_of, positive_int
from keras_xception.data.dataset import decode_records
from keras_xception.data.files import Records
from keras_xception.data.imagenet import imagenet_wnids
from keras_xception.data.results import Skipped
from keras_xception.data.transform import explain
from keras_xception.deploy.predictor import Predictor
from keras_xception.tasks.options import STRATEGIES
from keras_xception.tasks.reports import classification_report

__all__ = ["evaluate", "evaluate_classifier", "classification_report", "make_strategy", "is_chief", "STRATEGIES"]


def make_strategy(name="default"):
    """A ``tf.distribute`` strategy by name: ``default``, ``mirrored`` or ``multi-worker``.

    ``multi-worker`` reads the cluster from the ``TF_CONFIG`` environment
    variable and must be created before TensorFlow runs any operation.
    """
    import tensorflow as tf

    if one_of(name, "strategy", STRATEGIES) == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    try:
        json.loads(os.environ["TF_CONFIG"])["cluster"]
    except (KeyError, ValueError, TypeError):
        raise ValueError(
            "strategy='multi-worker' needs the TF_CONFIG environment variable, e.g. "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": '
            '"worker", "index": 0}}, set on every worker (index 0 is the chief).'
        ) from None
    return tf.distribute.MultiWorkerMirroredStrategy()


def _strategy_name(strategy) -> str:
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"  # the class is named CollectiveAllReduceStrategy
    name = type(strategy).__name__
    return "default" if name == "_DefaultDistributionStrategy" else name


def is_chief(strategy) -> bool:
    """Whether this process is the chief (worker 0) of ``strategy`` (True when not multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver is None or not resolver.task_type or (resolver.task_id or 0) == 0


def _scores_function(predictor, replicas, num_classes):
    """``images -> class scores`` inside the evaluation step: the Keras model, or the Predictor from NumPy."""
    import tensorflow as tf

    if predictor.runtime == "keras":
        return lambda x: predictor.model(x, training=False)
    if replicas != 1:
        raise ValueError(
            f"runtime={predictor.runtime!r} runs outside TensorFlow and needs the default strategy (one "
            f"replica); this strategy has {replicas}. Use runtime='keras' with tf.distribute."
        )

    def scores(x):
        out = tf.numpy_function(lambda a: np.asarray(predictor.predict(a), np.float32), [x], tf.float32)
        out.set_shape((None, num_classes))
        return out

    return scores


def _replica_dataset(ctx, *, records, transform, batch_size):
    """One input pipeline's per-replica batches of ``(index, image, label, ok)``: its shard, then padding
    without end (index -1, a zero image, label 0, ``ok`` False)."""
    import tensorflow as tf

    per_replica = ctx.get_per_replica_batch_size(batch_size)
    if records.size:  # fewer images than a batch: a smaller batch, not a model run on padding
        per_replica = min(per_replica, -(-records.size // ctx.num_replicas_in_sync))
    ds = decode_records(records, transform, num_shards=ctx.num_input_pipelines, shard_index=ctx.input_pipeline_id)
    pad = tf.data.Dataset.from_tensors(
        (tf.constant(-1, tf.int64), tf.zeros(transform.target_size + (3,)), tf.constant(0, tf.int64), False)
    ).repeat()
    return ds.concatenate(pad).batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _replica_step(index, image, label, ok, *, transform, scores_of, num_classes):
    """One replica's batch -> per example ``(index, ok, label, top-1 class, top-5 hit)``.

    A label outside the model's classes fails an assertion whose message names ``label_offset``.
    """
    import keras
    import tensorflow as tf

    scores = scores_of(transform.preprocess(image))
    label = tf.where(ok, label, tf.zeros_like(label))
    tf.debugging.assert_non_negative(label, message="class label < 0: wrong label_offset?")
    tf.debugging.assert_less(
        label,
        tf.constant(num_classes, label.dtype),
        message=f"class label >= {num_classes} (the model's classes): wrong label_offset?",
    )
    top1 = tf.argmax(scores, axis=-1, output_type=tf.int64)
    hit5 = keras.metrics.sparse_top_k_categorical_accuracy(label, scores, k=min(5, num_classes)) > 0.5
    return index, tf.cast(ok, tf.int64), label, top1, tf.cast(hit5, tf.int64)  # (strategy.gather takes no bool)


def _distributed_step(strategy, predictor, records, transform, num_classes):
    """A distributed batch -> the per-example outputs of all replicas (:func:`_replica_step` with
    :func:`_scores_function`), gathered, in NumPy.

    A label outside ``[0, num_classes)`` becomes a ``ValueError`` about ``label_offset``.
    """
    import tensorflow as tf

    scores_of = _scores_function(predictor, strategy.num_replicas_in_sync, num_classes)
    replica_step = functools.partial(_replica_step, transform=transform, scores_of=scores_of, num_classes=num_classes)

    @tf.function
    def step(batch):
        return [strategy.gather(t, axis=0) for t in strategy.run(replica_step, args=batch)]

    def run(batch):
        try:
            return [t.numpy() for t in step(batch)]
        except tf.errors.InvalidArgumentError as e:
            if "label_offset" not in e.message:
                raise
            raise ValueError(
                f"{records.description}: a class label is outside [0, {num_classes}). Wrong "
                "label_offset? TFRecords from the classic scripts store 1..1000 (label_offset=1); "
                "0-based ones need label_offset=0."
            ) from None

    return run


@dataclasses.dataclass
class _Run:
    """What the loop saw: per evaluated example its label, top-1 class and top-5 hit; the skipped inputs."""

    model: object
    num_classes: int
    labels: np.ndarray
    predicted: np.ndarray
    top5: np.ndarray
    skipped: list  # (index, Skipped); index None for an input that could not even be listed
    elapsed: float


def _prepare(model, records, strategy, batch_size, **options) -> Predictor:
    """The Predictor of the model (built in the strategy's scope when a function), the arguments checked."""
    import keras

    positive_int(batch_size, "batch_size")
    if not isinstance(records, Records):
        raise ValueError(
            "`records` must be keras_xception.data.Records (from tfds_records, folder_records or "
            f"tfrecord_records); received {type(records).__name__}."
        )
    with strategy.scope():
        if not isinstance(model, keras.Model):
            if not callable(model):
                raise ValueError(f"`model` must be a keras.Model or a function returning one; received {model!r}.")
            model = model()
    if batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"`batch_size` must be a multiple of the {strategy.num_replicas_in_sync} replicas; "
            f"received batch_size={batch_size}."
        )
    return Predictor(model, **options)  # the transform: by default the model's (resolve_transform)


def _loop(predictor, records, batch_size, strategy, strict, verbose) -> _Run:
    """The one evaluation loop (a Predictor of a Keras model): every record once, over all replicas and workers."""
    import keras

    transform, num_classes = predictor.transform, int(predictor.model.output_shape[-1])
    step = _distributed_step(strategy, predictor, records, transform, num_classes)
    chief = is_chief(strategy)
    progbar = keras.utils.Progbar(records.size, unit_name="image") if verbose and chief else None
    kept, bad, hits = [], [], 0
    start = time.perf_counter()
    batches = strategy.distribute_datasets_from_function(
        functools.partial(_replica_dataset, records=records, transform=transform, batch_size=batch_size)
    )
    for batch in batches:
        index, ok, label, top1, hit5 = step(batch)
        real, ok = index >= 0, ok.astype(bool)
        if not real.any():  # no replica saw a real example: every shard is exhausted
            break
        bad += [int(i) for i in index[real & ~ok]]
        if strict and bad:
            break
        kept.append(np.stack([index, label, top1, hit5])[:, real & ok])
        hits += int(np.sum(kept[-1][1] == kept[-1][2]))
        if progbar is not None:
            progbar.add(int(real.sum()), [("top1", hits / max(sum(k.shape[1] for k in kept), 1))])
    elapsed = time.perf_counter() - start
    index, labels, predicted, top5 = np.concatenate(kept, axis=1) if kept else np.zeros((4, 0), np.int64)
    skipped = explain(records, bad[:1] if strict else bad, transform)
    if strict and skipped:
        (index, s), *_ = skipped
        raise ValueError(f"Cannot decode {s.path} (example {index}): {s.reason}. Without strict it would be skipped.")
    for _, s in skipped if chief else []:  # (unreadable folders were warned about when listed)
        warnings.warn(f"Skipping {s}", stacklevel=3)
    skipped += [(None, Skipped(path, reason)) for path, reason in records.problems]
    return _Run(predictor.model, num_classes, labels, predicted, top5.astype(bool), skipped, elapsed)


def evaluate(
    model,
    records,
    *,
    transform=None,
    batch_size=32,
    limit=None,
    strategy=None,
    strict=False,
    per_class=False,
    runtime="keras",
    precision="fp32",
    calibration=None,
    verbose=1,
) -> dict:
    """Top-1/top-5 accuracy of a classifier over ImageNet records.

    Args:
        model: A Keras model (preprocessed images -> class scores), or a function returning one
            (pass that with a distribution strategy: the model is built in its scope).
        records: :class:`keras_xception.data.Records` (``*_records``).
        transform: A :class:`~keras_xception.Transform` (default: the ``imagenet`` one at the model's size).
        batch_size: Global batch size (split over the replicas).
        limit: Evaluate only the first ``limit`` records.
        strategy: A ``tf.distribute.Strategy`` (default: the current one).
        strict: ``ValueError`` at the first file that cannot be decoded (else it is skipped).
        per_class: Add per-class count/top-1/top-5 to the report.
        runtime: ``"keras"`` (the model inside the strategy's ``tf.function``) or a
            :class:`~keras_xception.Predictor` runtime (``"auto"``, ``"tensorflow"``,
            ``"onnxruntime"``, ``"openvino"``; the default strategy only).
        precision: ``"fp32"``, ``"bf16"`` or ``"int8"`` (a Predictor runtime, not ``"keras"``).
        calibration: int8 calibration images (a directory, an array of inputs, a ``tf.data.Dataset``).
        verbose: 1 shows a ``keras.utils.Progbar`` (on the chief only).

    Returns:
        The report dict: ``top1``, ``top5`` (None if nothing was evaluated), ``count``,
        ``top1_correct``, ``top5_correct``, ``skipped`` (``{"index", "name", "reason"}``),
        ``source``, ``transform``, ``model``, ``num_classes``, ``batch_size``, ``strategy``,
        ``num_replicas``, ``elapsed_seconds``, ``images_per_second``, on request ``per_class``.
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    options = dict(runtime=runtime, precision=precision, calibration=calibration, transform=transform)
    predictor = _prepare(model, records, strategy, batch_size, **options)
    records = records.take(limit)
    run = _loop(predictor, records, batch_size, strategy, strict, verbose)
    if not run.labels.size:
        warnings.warn("No image was evaluated: top1/top5 are None.", stacklevel=2)
    return _topk_report(run, records, predictor.transform, batch_size, strategy, per_class)


def _topk_report(run, records, transform, batch_size, strategy, per_class) -> dict:
    """:func:`evaluate`'s report of the loop's :class:`_Run`."""
    count = int(run.labels.size)
    c1, c5 = int(np.sum(run.predicted == run.labels)), int(np.sum(run.top5))
    report = dict(
        top1=c1 / count if count else None,
        top5=c5 / count if count else None,
        count=count,
        top1_correct=c1,
        top5_correct=c5,
        skipped=[dict(index=i, name=s.path, reason=s.reason) for i, s in run.skipped],
        source=records.description,
        transform=transform.to_dict(),
        model=run.model.name,
        num_classes=run.num_classes,
        batch_size=batch_size,
        strategy=_strategy_name(strategy),
        num_replicas=strategy.num_replicas_in_sync,
        elapsed_seconds=round(run.elapsed, 3),
        images_per_second=round(count / run.elapsed, 2) if run.elapsed > 0 else None,
    )
    if per_class:
        report["per_class"] = _per_class_topk(run)
    return report


def _per_class_topk(run) -> dict:
    """``{class: {count, top1, top5}}`` for every class with examples (WordNet ids for 1000 classes)."""
    names = imagenet_wnids() if run.num_classes == 1000 else [str(i) for i in range(run.num_classes)]
    n = np.bincount(run.labels, minlength=run.num_classes)
    hit1 = np.bincount(run.labels, weights=run.predicted == run.labels, minlength=run.num_classes)
    hit5 = np.bincount(run.labels, weights=run.top5, minlength=run.num_classes)
    return {
        names[k]: dict(count=int(n[k]), top1=float(hit1[k] / n[k]), top5=float(hit5[k] / n[k]))
        for k in np.flatnonzero(n)
    }


def evaluate_classifier(
    classifier, val_dir, *, batch_size=32, runtime="keras", precision="fp32", calibration=None, strict=False, verbose=1
) -> dict:
    """Accuracy, per-class figures and the confusion matrix of ``classifier`` on class folders.

    ``classifier``: the path of a ``.keras`` file from :func:`~keras_xception.tasks.training.train`, or a
    :class:`~keras_xception.tasks.classifier.Classifier` (or an object with its ``.model`` giving class
    probabilities, ``.class_names`` and ``.transform``). Each ``val_dir/<class>`` folder must be one of its classes.
    ``runtime``, ``precision``, ``calibration``: as in :func:`evaluate`.

    Returns:
        :func:`classification_report`'s dict, and ``class_names``, ``skipped`` (``{"path",
        "reason"}``), ``source``, ``transform``, ``runtime``, ``precision``, ``elapsed_seconds``.
    """
    import tensorflow as tf

    positive_int(batch_size, "batch_size")
    existing_dir(val_dir, "val_dir", "an existing folder of class folders")
    path = keras_path(classifier, "classifier") if isinstance(classifier, (str, os.PathLike)) else None
    options = dict(precision=precision, calibration=calibration, transform=None if path else classifier.transform)
    predictor = Predictor(path or classifier.model, runtime, **options)  # a file: its model, class names, transform
    names = predictor.class_names if path else tuple(str(c) for c in classifier.class_names)
    units = predictor.model.output_shape[-1]
    if names is None or len(names) != units:
        raise ValueError(f"{classifier!r} is not a classifier of its {units} outputs: class names {names}.")
    records = Records.from_class_folders(val_dir, names, strict=strict)
    run = _loop(predictor, records, batch_size, tf.distribute.get_strategy(), strict, verbose)
    if run.labels.size == 0:
        raise ValueError(f"None of the {records.size} images under {val_dir!r} could be read.")
    return dict(
        classification_report(run.labels, run.predicted, names, top5=run.top5),
        class_names=list(names),
        skipped=[dict(path=s.path, reason=s.reason) for _, s in run.skipped],
        source=val_dir,
        transform=predictor.transform.to_dict(),
        runtime=runtime,
        precision=precision,
        elapsed_seconds=round(run.elapsed, 3),
    )
