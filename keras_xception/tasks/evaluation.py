"""ImageNet evaluation: top-1/top-5 of any Keras classifier over :mod:`keras_xception.data` records.

:func:`evaluate` runs one ``tf.distribute`` strategy (the default one, a
``MirroredStrategy`` over several devices, or a ``MultiWorkerMirroredStrategy``
over several hosts) over the decoded records and returns a report dict.

How each image is evaluated exactly once: every worker decodes the records
whose index ``i`` has ``i % num_workers == worker`` (sharding by index, before
decoding), then appends padding examples flagged invalid without end, so all
replicas always receive full batches and run the same number of steps. Each
step sums, per replica, the count and the top-1/top-5 hits of the valid
examples (Keras's ``sparse_categorical_accuracy`` and
``sparse_top_k_categorical_accuracy`` per example, weighted by validity) and
reduces them across replicas; the loop ends at the first step in which no
replica saw a real example. Examples that failed to decode are invalid too;
their indices are gathered from all replicas and explained at the end (or, with
``strict=True``, at once, as an error).

The code is in that order: the input (``_replica_dataset``), the step
(``_replica_step`` on each replica, ``_distributed_step`` across them), the
report (``_report``), and :func:`evaluate`, the loop that ties them together.
"""

from __future__ import annotations

import functools
import time
import warnings

import numpy as np

from keras_xception.data.dataset import Records, decode_records, explain
from keras_xception.data.imagenet import imagenet_wnids
from keras_xception.data.transform import Transform, resolve_transform
from keras_xception.deploy.predictor import predict_function

__all__ = ["evaluate", "make_strategy", "is_chief", "STRATEGIES"]

STRATEGIES = ("default", "mirrored", "multi-worker")


def make_strategy(name="default"):
    """A ``tf.distribute`` strategy by name: ``default``, ``mirrored`` or ``multi-worker``.

    ``multi-worker`` reads the cluster from the ``TF_CONFIG`` environment
    variable and must be created before TensorFlow runs any operation.
    """
    import json
    import os

    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        try:
            cluster = json.loads(os.environ["TF_CONFIG"])["cluster"]
        except (KeyError, ValueError, TypeError):
            raise ValueError(
                "strategy='multi-worker' needs the TF_CONFIG environment variable, e.g. "
                '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": '
                '"worker", "index": 0}}, set on every worker (index 0 is the chief).'
            ) from None
        del cluster
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"`strategy` must be one of {STRATEGIES}; received {name!r}.")


def _strategy_name(strategy) -> str:
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"  # the class is named CollectiveAllReduceStrategy
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    name = type(strategy).__name__
    return "default" if name == "_DefaultDistributionStrategy" else name


def is_chief(strategy) -> bool:
    """Whether this process is the chief (worker 0) of ``strategy`` (True when not multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver is None or not resolver.task_type or (resolver.task_id or 0) == 0


def _scores_function(model, runtime, replicas, num_classes, options):
    """``images -> class scores`` inside the evaluation step, on the Keras model or a Predictor."""
    import tensorflow as tf

    if runtime == "keras":
        predict_function(model, runtime, **options)  # checks the options (keras runs float32 only)
        return lambda x: model(x, training=False)
    if replicas != 1:
        raise ValueError(
            f"runtime={runtime!r} runs outside TensorFlow and needs the default strategy (one "
            f"replica); this strategy has {replicas}. Use runtime='keras' with tf.distribute."
        )
    predict = predict_function(model, runtime, **options)

    def scores(x):
        out = tf.numpy_function(lambda a: np.asarray(predict(a), np.float32), [x], tf.float32)
        out.set_shape((None, num_classes))
        return out

    return scores


# ---------------------------------------------------------------- input


def _replica_dataset(ctx, *, records, transform, batch_size):
    """The batches of one input pipeline (``ctx``: a ``tf.distribute.InputContext``).

    Its shard of the records (by index, before decoding: see
    :func:`~keras_xception.data.dataset.decode_records`), then padding
    examples without end (index -1, a zero image, label 0, ``ok`` False), in
    per-replica batches of ``(index, image, label, ok)``: every replica gets
    full batches for as long as the loop runs.
    """
    import tensorflow as tf

    per_replica = ctx.get_per_replica_batch_size(batch_size)
    ds = decode_records(records, transform, num_shards=ctx.num_input_pipelines, shard_index=ctx.input_pipeline_id)
    pad = tf.data.Dataset.from_tensors(
        (tf.constant(-1, tf.int64), tf.zeros(transform.target_size + (3,)), tf.constant(0, tf.int64), False)
    ).repeat()
    return ds.concatenate(pad).batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------- step

# The entries of a step's sums: valid examples, top-1 hits, top-5 hits, real examples (valid or not).
_COUNT, _TOP1, _TOP5, _SEEN = range(4)


def _replica_step(index, image, label, ok, *, transform, scores_of, num_classes):
    """One replica's batch -> ``(sums, per_class, bad)``.

    ``sums``: see ``_COUNT``.. ``_SEEN``; ``per_class``: count, top-1 and
    top-5 hits per class (3 x ``num_classes``); ``bad``: the index of every
    real example that failed to decode, -1 for the others. Only valid
    examples (``ok``) count; a label outside the model's classes fails an
    assertion whose message names ``label_offset``.
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
    w = tf.cast(ok, tf.float32)
    hit1 = keras.metrics.sparse_categorical_accuracy(label, scores) * w
    hit5 = keras.metrics.sparse_top_k_categorical_accuracy(label, scores, k=min(5, num_classes)) * w
    real = tf.cast(index >= 0, tf.float32)
    sums = tf.stack([tf.reduce_sum(w), tf.reduce_sum(hit1), tf.reduce_sum(hit5), tf.reduce_sum(real)])
    per_class = tf.stack([tf.math.unsorted_segment_sum(v, label, num_classes) for v in (w, hit1, hit5)])
    bad = tf.where(tf.logical_and(index >= 0, tf.logical_not(ok)), index, tf.constant(-1, tf.int64))
    return sums, per_class, bad


def _distributed_step(strategy, replica_step):
    """A ``tf.function``: a distributed batch -> sums and per-class sums over all replicas, bad indices gathered."""
    import tensorflow as tf

    @tf.function
    def step(batch):
        sums, per_class, bad = strategy.run(replica_step, args=batch)
        return (
            strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.SUM, per_class, axis=None),
            strategy.gather(bad, axis=0),
        )

    return step


def _run_step(step, batch, records, num_classes):
    """``step(batch)`` in NumPy: int64 sums and per-class sums, and the list of bad indices.

    A label outside ``[0, num_classes)`` becomes a ``ValueError`` about ``label_offset``.
    """
    import tensorflow as tf

    try:
        sums, per_class, bad = step(batch)
    except tf.errors.InvalidArgumentError as e:
        if "label_offset" not in e.message:
            raise
        raise ValueError(
            f"{records.description}: a class label is outside [0, {num_classes}). Wrong "
            "label_offset? TFRecords from the classic scripts store 1..1000 (label_offset=1); "
            "0-based ones need label_offset=0."
        ) from None
    as_int = lambda t: np.rint(t.numpy()).astype(np.int64)  # noqa: E731
    return as_int(sums), as_int(per_class), [int(i) for i in bad.numpy() if i >= 0]


# ---------------------------------------------------------------- report


def _report(
    totals, class_totals, skipped, *, elapsed, records, model, num_classes, transform, batch_size, strategy, per_class
):
    """The report dict of :func:`evaluate` from the summed ``totals`` / ``class_totals`` and ``skipped``."""
    count, c1, c5 = (int(totals[i]) for i in (_COUNT, _TOP1, _TOP5))
    report = dict(
        top1=c1 / count if count else None,
        top5=c5 / count if count else None,
        count=count,
        top1_correct=c1,
        top5_correct=c5,
        skipped=skipped,
        source=records.description,
        model=model.name,
        num_classes=num_classes,
        transform=transform.to_dict(),
        batch_size=batch_size,
        strategy=_strategy_name(strategy),
        num_replicas=strategy.num_replicas_in_sync,
        elapsed_seconds=round(elapsed, 3),
        images_per_second=round(count / elapsed, 2) if elapsed > 0 else None,
    )
    if per_class:
        names = imagenet_wnids() if num_classes == 1000 else [str(i) for i in range(num_classes)]
        report["per_class"] = {
            names[k]: dict(count=int(n), top1=int(a) / int(n), top5=int(b) / int(n))
            for k, (n, a, b) in enumerate(class_totals.T)
            if n
        }
    return report


# ---------------------------------------------------------------- evaluate


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
        model: A Keras model mapping a batch of (preprocessed) images to
            class scores (logits or probabilities), or a zero-argument
            function returning one; with a distribution strategy pass the
            function, so that the model is built in the strategy's scope.
        records: :class:`keras_xception.data.Records` (``*_records``).
        transform: A :class:`~keras_xception.data.transform.Transform`
            (default: :func:`~keras_xception.data.transform.resolve_transform`
            for the model: the ``imagenet`` transform at its input size).
        batch_size: Global batch size (split over the replicas).
        limit: Evaluate only the first ``limit`` records.
        strategy: A ``tf.distribute.Strategy`` (default: the current one).
        strict: Raise ``ValueError`` at the first file that cannot be decoded
            instead of skipping it.
        per_class: Add per-class count/top-1/top-5 to the report.
        runtime: ``"keras"`` (the model inside the strategy's ``tf.function``)
            or a :class:`keras_xception.deploy.predictor.Predictor` runtime
            (``"auto"``, ``"tensorflow"``, ``"onnxruntime"``, ``"openvino"``),
            called from the input pipeline's step; only with the default
            strategy (one replica).
        precision: ``"fp32"``, ``"bf16"`` or ``"int8"`` (a Predictor runtime;
            not ``"keras"``): measure the top-1 of a reduced-precision model.
        calibration: int8 calibration images (a directory read with
            ``transform``, a numpy array of model inputs or a ``tf.data.Dataset``).
        verbose: 1 shows a ``keras.utils.Progbar`` (on the chief only).

    Returns:
        The report dict: ``top1``, ``top5`` (None if nothing was evaluated),
        ``count``, ``top1_correct``, ``top5_correct``, ``skipped`` (a list of
        ``{"index", "name", "reason"}``), ``transform``, ``batch_size``,
        ``strategy``, ``num_replicas``, ``elapsed_seconds``,
        ``images_per_second`` and, on request, ``per_class``.
    """
    import keras
    import tensorflow as tf

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; received batch_size={batch_size!r}.")
    if not isinstance(records, Records):
        raise ValueError(
            "`records` must be keras_xception.data.Records (from tfds_records, folder_records or "
            f"tfrecord_records); received {type(records).__name__}."
        )
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"`batch_size` must be a multiple of the {replicas} replicas; received batch_size={batch_size}."
        )
    with strategy.scope():
        if not isinstance(model, keras.Model):
            if not callable(model):
                raise ValueError(f"`model` must be a keras.Model or a function returning one; received {model!r}.")
            model = model()
    num_classes = int(model.output_shape[-1])
    if transform is None:
        transform = resolve_transform(model=model)
    if not isinstance(transform, Transform):
        raise ValueError(f"`transform` must be a Transform (resolve_transform(...)); received {transform!r}.")
    options = dict(precision=precision, calibration=calibration)
    if runtime != "keras":
        options["transform"] = transform  # reads a calibration directory as the evaluation does
    scores_of = _scores_function(model, runtime, replicas, num_classes, options)
    records = records.take(limit)
    chief = is_chief(strategy)
    step = _distributed_step(
        strategy, functools.partial(_replica_step, transform=transform, scores_of=scores_of, num_classes=num_classes)
    )

    progbar = keras.utils.Progbar(records.size, unit_name="image") if verbose and chief else None
    totals = np.zeros(4, np.int64)
    class_totals = np.zeros((3, num_classes), np.int64)
    skipped_idx = []
    start = time.perf_counter()
    batches = strategy.distribute_datasets_from_function(
        functools.partial(_replica_dataset, records=records, transform=transform, batch_size=batch_size)
    )
    for batch in batches:
        sums, per_class_sums, bad = _run_step(step, batch, records, num_classes)
        if sums[_SEEN] == 0:  # no replica saw a real example: every shard is exhausted
            break
        totals += sums
        class_totals += per_class_sums
        if bad and strict:
            index, name, reason = explain(records, bad, transform)[0]
            raise ValueError(
                f"Cannot decode {name} (example {index}): {reason}. Without --strict/strict=True it would be skipped."
            )
        skipped_idx += bad
        if progbar is not None:
            progbar.add(int(sums[_SEEN]), [("top1", totals[_TOP1] / max(totals[_COUNT], 1))])
    elapsed = time.perf_counter() - start

    count, seen = int(totals[_COUNT]), int(totals[_SEEN])
    if count + len(skipped_idx) != seen:
        raise RuntimeError(f"Internal error: {seen} examples seen, {count} evaluated, {len(skipped_idx)} skipped.")
    skipped = [dict(index=i, name=n, reason=r) for i, n, r in explain(records, skipped_idx, transform)]
    for s in skipped if chief else []:  # (unreadable folders, records.problems, were warned about when listed)
        warnings.warn(f"Skipped {s['name']}: {s['reason']}", stacklevel=2)
    if count == 0:
        warnings.warn("No image was evaluated: top1/top5 are None.", stacklevel=2)
    skipped += [dict(index=None, name=path, reason=reason) for path, reason in records.problems]
    return _report(
        totals,
        class_totals,
        skipped,
        elapsed=elapsed,
        records=records,
        model=model,
        num_classes=num_classes,
        transform=transform,
        batch_size=batch_size,
        strategy=strategy,
        per_class=per_class,
    )
