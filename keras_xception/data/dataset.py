"""The one ``tf.data`` image pipeline over :class:`~.files.Records` (every image decoded as :func:`load_image`
does): :func:`decode_records` (every example once, flagged ``ok``: evaluation), :func:`image_dataset` (training
batches) and :func:`map_batches` (a function over batches of files); bad files are explained by
:func:`~.transform.explain`.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from keras_xception.checks import non_negative_int, one_of, positive_int
from keras_xception.data.files import Records
from keras_xception.data.results import Results, Skipped
from keras_xception.data.transform import (
    Transform,
    decode_and_transform,
    explain,
    file_windows,
    reason,
    resolve_transform,
)

__all__ = ["decode_records", "image_dataset", "map_batches", "ON_ERROR"]

#: Policies for files that cannot be read or decoded.
ON_ERROR = ("skip", "raise")


def _examples(records, transform):
    """``(examples, decode)``: ``(name, label, payload, extra)`` and ``(payload, extra) -> image``; for files,
    ``extra`` is the crop window and EXIF orientation read up front (:func:`~.transform.file_windows`)."""
    import tensorflow as tf

    if records.paths is not None:
        column = tf.data.Dataset.from_tensor_slices(file_windows(records.paths, transform))
    else:
        column = tf.data.Dataset.from_tensors((np.full(4, -1, np.int32), np.int32(-1))).repeat()

    def decode(payload, extra):
        if not records.payload_is_path:
            return decode_and_transform(payload, transform)
        window, orientation = extra
        return decode_and_transform(tf.io.read_file(payload), transform, orientation, window)

    examples = tf.data.Dataset.zip((records.dataset, column)).map(lambda example, x: (*example, x))
    return examples.with_options(_options()), decode


def _options():
    """The ``tf.data`` options of every pipeline here (measured: ``benchmarks/pipeline.py``, int8 extract)."""
    import tensorflow as tf

    options = tf.data.Options()
    # The autotuner's thread makes an iterator's teardown wait out its optimization period: a 10 s stall at the
    # end of 2 in 5 extract runs. Without it, parallel maps use one thread per CPU.
    options.autotune.enabled = False
    # Each op on one thread (images decode in parallel instead): the pipeline no longer wakes TensorFlow's
    # intra-op pool beside the model's runtime on the same cores (int8 extract: 88% -> 97% of the model).
    options.threading.max_intra_op_parallelism = 1
    return options


def decode_records(records: Records, transform: Transform, *, num_shards=1, shard_index=0):
    """Decode and transform records: a dataset of ``(index, image, label, ok)``.

    ``index`` (int64) is the position in ``records``; every example comes out once, in order (shard
    ``s`` of ``n`` gets the indices ``i % n == s``). ``ok`` is False for an example that could not be
    read or decoded (all-zero image, not to be counted; :func:`explain` says why).
    """
    if not isinstance(records, Records):
        raise ValueError(f"`records` must be keras_xception.data.Records; received {type(records).__name__}.")
    positive_int(num_shards, "num_shards")
    if non_negative_int(shard_index, "shard_index") >= num_shards:
        raise ValueError(f"`shard_index` must be in [0, num_shards); received shard_index={shard_index!r}.")
    ds, decode = _examples(records, transform)
    ds = ds.enumerate()
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)
    return _decode_each(ds.map(lambda index, example: (index, *example[1:])), decode, transform)


def _decode_each(ds, decode, transform):
    """``(key, label, payload, extra, *rest)`` -> ``(key, image, label, ok, *rest)``, one output per input:
    each example is decoded in its own tiny pipeline, an error falling back to zeros with ``ok=False``."""
    import tensorflow as tf

    zeros = tf.zeros(transform.target_size + (3,), tf.float32)

    def one(key, label, payload, extra, *rest):
        good = tf.data.Dataset.from_tensors((key, label, payload, extra, *rest))
        good = good.map(lambda k, lab, p, o, *r: (k, decode(p, o), lab, tf.constant(True), *r)).ignore_errors()
        bad = tf.data.Dataset.from_tensors((key, zeros, label, tf.constant(False), *rest))
        return good.concatenate(bad).take(1)

    return ds.interleave(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def image_dataset(
    records,
    transform: Transform | None = None,
    *,
    labels=None,
    batch_size=32,
    shuffle=False,
    seed=None,
    on_error="skip",
):
    """A batched ``tf.data.Dataset`` of ``(images, labels)``: float32 images in [0, 255], int labels.

    Args:
        records: :class:`Records`, or a list of image paths (with ``labels``).
        transform: The :class:`~keras_xception.data.transform.Transform`
            (default: :func:`~keras_xception.data.transform.resolve_transform`).
        labels: With a list of paths: one integer label per path (default 0).
        batch_size: Images per batch (the last batch may be smaller).
        shuffle: Reshuffle the examples every epoch (``seed`` for the order).
        on_error: ``"skip"``: a file that cannot be read or decoded is left out and warned
            about (path and reason, once); ``"raise"``: iterating fails there, naming it.
    """
    import tensorflow as tf

    one_of(on_error, "on_error", ON_ERROR)
    positive_int(batch_size, "batch_size")
    if not isinstance(records, Records):
        records = Records.from_files(records, labels)
    transform = transform or resolve_transform()
    examples, decode = _examples(records, transform)
    if shuffle:
        examples = examples.shuffle(max(records.size or 1, 1), seed=seed, reshuffle_each_iteration=True)
    examples = examples.map(lambda name, label, payload, o: (name, label, payload, o, payload))
    ds = _decode_each(examples, decode, transform)  # (name, image, label, ok, payload)
    reported = set()

    def report(name, payload):
        skipped = Skipped(name.numpy().decode("utf-8", "replace"), reason(payload, transform, records.payload_is_path))
        if on_error == "raise":
            raise ValueError(f"Cannot read {skipped}.")
        if skipped.path not in reported:
            reported.add(skipped.path)
            warnings.warn(f"Skipping {skipped}", stacklevel=2)
        return False

    def keep(name, image, label, ok, payload):
        return tf.cond(ok, lambda: tf.constant(True), lambda: tf.py_function(report, [name, payload], tf.bool))

    ds = ds.filter(keep).map(lambda name, image, label, ok, payload: (image, label))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def map_batches(fn, paths, transform, *, labels=None, batch_size=32, strict=False, verbose=1, what="images"):
    """``fn`` over batches of the readable images of ``paths`` (or of :class:`Records`): the one run over many files.

    Each batch is read with ``transform`` (preprocessed too) and passed to ``fn`` (numpy in, numpy
    out, e.g. ``predict_on_batch``) while the next ones are decoded. ``verbose``: a
    ``keras.utils.Progbar`` (0 silent, 1 animated, 2 one line). An unreadable file is skipped and
    warned about once (``"Skipping path: reason"``); with ``strict`` it raises ``ValueError``.

    Returns:
        :class:`~keras_xception.data.results.Results`: ``outputs`` (float32, None when no file was
        readable), the ``paths`` read, their ``labels`` (when given) and the ``skipped`` files.
    """
    import keras
    import tensorflow as tf

    records = paths if isinstance(paths, Records) else Records.from_files(paths, labels, description=what)
    records = dataclasses.replace(records, size=len(names := records.paths or record_names(records)))
    examples, decode = _examples(records, transform)

    def read(index, example):
        return index, transform.preprocess(decode(example[2], example[3]))

    # A file that fails is dropped (ignore_errors) and found as a gap in the indices: much cheaper
    # than decode_records's per-example isolation, which the distributed evaluation needs.
    ds = examples.enumerate().map(read, tf.data.AUTOTUNE, deterministic=True)
    progbar = keras.utils.Progbar(records.size, unit_name="image", verbose=verbose)
    outputs, kept, bad = [], [], []
    for index, images in ds.ignore_errors().batch(batch_size).prefetch(2).as_numpy_iterator():
        seen = len(kept) + len(bad)
        bad += _unreadable(records, transform, np.setdiff1d(np.arange(seen, index[-1] + 1), index), strict)
        outputs.append(np.asarray(fn(images), dtype="float32"))
        kept += index.tolist()
        progbar.update(len(kept) + len(bad))
    if len(kept) + len(bad) < records.size:
        bad += _unreadable(records, transform, np.arange(len(kept) + len(bad), records.size), strict)
        progbar.update(records.size)
    skipped = tuple(s for _, s in explain(records, bad, transform))
    for s in skipped:
        warnings.warn(f"Skipping {s}", stacklevel=2)
    return Results(
        np.concatenate(outputs) if outputs else None,
        [names[i] for i in kept],
        None if labels is None else np.asarray(labels, "int64")[kept],
        skipped,
    )


def _unreadable(records, transform, indices, strict) -> list:
    """``indices`` as a list; with ``strict``, a ``ValueError`` naming the first and why it cannot be read."""
    if strict and len(indices):
        raise ValueError(f"Cannot read {explain(records, indices[:1], transform)[0][1]}.")
    return [int(i) for i in indices]


def record_names(records) -> tuple:
    """The names of ``records`` (``DESCRIPTION#i`` if unnamed) in one pass: ``ValueError`` where it fails."""
    import tensorflow as tf

    names = []
    try:
        for name, _, _ in records.dataset.as_numpy_iterator():
            names.append(name.decode("utf-8", "replace") or f"{records.description}#{len(names)}")
    except tf.errors.OpError as e:
        raise ValueError(f"unreadable after {len(names)} records: {e.message.splitlines()[0]}") from None
    return tuple(names)
