"""The one ``tf.data`` image pipeline, with an explicit policy for files that cannot be read.

* :class:`Records`: raw examples ``(name, label, payload)`` in a fixed order,
  where ``payload`` is encoded image bytes or a file path; made from a file
  list (:meth:`Records.from_files`) or an ImageNet source
  (:mod:`keras_xception.data.imagenet`).
* :func:`decode_records`: ``(index, image, label, ok)``; an example that
  cannot be read or decoded comes out once, flagged ``ok=False`` (all-zero
  image), without stopping the run; :func:`explain` gives each one's reason.
  Evaluation, extraction and prediction build on it.
* :func:`image_dataset`: batched ``(image, label)`` for training, with
  ``on_error="skip"`` (bad files are left out and reported by path and reason,
  once each) or ``"raise"`` (the first bad file stops the iteration, naming it).

Every image goes through :func:`keras_xception.data.transform.decode_and_transform`,
the transform of :func:`keras_xception.load_image`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings

import numpy as np

from keras_xception.checks import one_of, positive_int
from keras_xception.data.results import Results, Skipped
from keras_xception.data.transform import Transform, decode_and_transform, file_orientation, resolve_transform

__all__ = [
    "Records",
    "decode_records",
    "readable_batches",
    "map_batches",
    "explain",
    "skipped_examples",
    "reason",
    "image_dataset",
    "ON_ERROR",
]

#: Policies for files that cannot be read or decoded.
ON_ERROR = ("skip", "raise")


@dataclasses.dataclass(frozen=True)
class Records:
    """Raw examples of one source, before decoding.

    Attributes:
        dataset: ``tf.data.Dataset`` of ``(name, label, payload)``: a string
            naming the example (file path or file name), the int64 class
            index, and the encoded image bytes or (``payload_is_path``) a path.
        payload_is_path: Whether ``payload`` is a file path to read.
        size: Number of examples when known without reading them, else None.
        description: Where the examples come from (for reports).
        problems: ``(path, reason)`` of inputs that could not even be listed
            (an unreadable folder); reported with the skipped examples.
        paths: The files, in order, for records made by :meth:`from_files` (else None).
    """

    dataset: object
    payload_is_path: bool
    size: int | None
    description: str
    problems: tuple = ()
    paths: tuple | None = None

    @classmethod
    def from_files(cls, paths, labels=None, description="files") -> Records:
        """Records of image files (labels default to 0), in the given order."""
        import tensorflow as tf

        paths = [os.fspath(p) for p in paths]
        labels = np.zeros(len(paths), np.int64) if labels is None else np.asarray(labels, np.int64)
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels; they must match one to one.")
        ds = tf.data.Dataset.from_tensor_slices(
            (tf.constant(paths, tf.string), tf.constant(labels, tf.int64), tf.constant(paths, tf.string))
        )
        return cls(ds, True, len(paths), description, paths=tuple(paths))

    def take(self, limit):
        """The first ``limit`` records (all of them for ``None``)."""
        if positive_int(limit, "limit", allow_none=True) is None:
            return self
        size = limit if self.size is None else min(limit, self.size)
        return dataclasses.replace(
            self,
            dataset=self.dataset.take(limit),
            size=size,
            description=f"{self.description} (first {limit})",
            paths=None if self.paths is None else self.paths[:limit],
        )


def _examples(records, transform):
    """``(name, label, payload, orientation)``: the records with the EXIF orientation of each file.

    For files turned upright (``transform.exif_orientation``) it is read up front from each
    file's header by Pillow: a Python call per image inside ``tf.data`` (``tf.numpy_function``)
    slowed the whole map down (benchmarks/pipeline.py). Otherwise -1: not known (see :func:`_orientation`).
    """
    import tensorflow as tf

    if _upfront(records, transform):
        values = np.array([file_orientation(p) for p in records.paths], np.int32)
        column = tf.data.Dataset.from_tensor_slices(values)
    else:
        column = tf.data.Dataset.from_tensors(np.int32(-1)).repeat()
    return tf.data.Dataset.zip((records.dataset, column)).map(lambda example, o: (*example, o))


def _upfront(records, transform) -> bool:
    return transform.exif_orientation and records.paths is not None


def _orientation(records, transform, column):
    """The ``orientation`` argument of ``decode_and_transform`` from an :func:`_examples` column."""
    return column if _upfront(records, transform) else None


def decode_records(records: Records, transform: Transform, *, num_shards=1, shard_index=0):
    """Decode and transform records: a dataset of ``(index, image, label, ok)``.

    ``index`` (int64) is the position of the example in ``records``; every
    example comes out once, in order (after sharding by index: shard ``s`` of
    ``n`` gets the indices ``i`` with ``i % n == s``). ``ok`` is False for an
    example that could not be read or decoded; its image is all zeros and it
    must not be counted. Use :func:`explain` for the reason.
    """

    if not isinstance(records, Records):
        raise ValueError(f"`records` must be keras_xception.data.Records; received {type(records).__name__}.")
    positive_int(num_shards, "num_shards")
    if isinstance(shard_index, bool) or not isinstance(shard_index, int) or not 0 <= shard_index < num_shards:
        raise ValueError(f"`shard_index` must be an integer in [0, num_shards); received shard_index={shard_index!r}.")
    ds = _examples(records, transform).enumerate()
    if num_shards > 1:
        ds = ds.shard(num_shards, shard_index)
    ds = ds.map(lambda index, example: (index, *example[1:]))
    return _decode_each(ds, transform, records)


def _decode_each(ds, transform, records):
    """``(key, label, payload, orientation, *rest)`` -> ``(key, image, label, ok, *rest)``, one output per input.

    Each example is decoded in its own tiny pipeline whose errors are ignored,
    falling back to an all-zero image flagged ``ok=False``: a bad file neither
    stops the run nor loses its place.
    """
    import tensorflow as tf

    zeros = tf.zeros(transform.target_size + (3,), tf.float32)

    def decode(key, label, payload, orientation, *rest):
        contents = tf.io.read_file(payload) if records.payload_is_path else payload
        image = decode_and_transform(contents, transform, _orientation(records, transform, orientation))
        return (key, image, label, tf.constant(True), *rest)

    def one(key, label, payload, orientation, *rest):
        good = tf.data.Dataset.from_tensors((key, label, payload, orientation, *rest)).map(decode).ignore_errors()
        bad = tf.data.Dataset.from_tensors((key, zeros, label, tf.constant(False), *rest))
        return good.concatenate(bad).take(1)

    return ds.interleave(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def reason(payload, transform, payload_is_path=True) -> str:
    """Why one example cannot be read or decoded (the reader's or decoder's message, the path not repeated)."""
    import tensorflow as tf

    try:
        contents = tf.io.read_file(payload) if payload_is_path else payload
        decode_and_transform(contents, transform)
    except (tf.errors.OpError, ValueError) as e:
        text = _error_text(e)
        if payload_is_path:  # TensorFlow's file errors start with the path: "PATH; No such file or directory"
            path = payload.numpy().decode("utf-8", "replace") if hasattr(payload, "numpy") else os.fspath(payload)
            text = text.removeprefix(f"{path}; ").removeprefix(f"{path}: ")
        return text
    return "decoded on retry (transient read error?)"


def _error_text(e) -> str:
    msg = getattr(e, "message", None) or str(e)
    msg = msg.splitlines()[0] if msg else type(e).__name__
    msg = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", msg)
    return re.sub(r"\s*\[Op:\w+\].*$", "", msg).strip()


def explain(records: Records, indices, transform: Transform) -> list:
    """``[(index, name, reason)]`` for the examples at ``indices`` that fail to decode.

    Re-reads those examples and runs the transform on them eagerly to capture
    the reader's or decoder's message.
    """
    import tensorflow as tf

    wanted = sorted({int(i) for i in indices})
    if not wanted:
        return []
    w = tf.constant(wanted, tf.int64)
    found = records.dataset.enumerate().filter(lambda i, ex: tf.reduce_any(tf.equal(i, w)))
    out = []
    for i, (name, _, payload) in found:
        name = name.numpy().decode("utf-8", "replace") or f"record #{int(i)}"
        out.append((int(i), name, reason(payload, transform, records.payload_is_path)))
    return out


def skipped_examples(records: Records, indices, transform: Transform) -> tuple:
    """:class:`~keras_xception.data.results.Skipped` for the examples at ``indices`` (see :func:`explain`)."""
    return tuple(Skipped(name, why) for _, name, why in explain(records, indices, transform))


def _read_batches(records, transform, batch_size, strict):
    """``(index, label, preprocessed images)`` of the readable examples, and the indices of the others.

    Yields ``(readable, unreadable)`` per batch: ``readable`` is ``(index, label, images)`` numpy
    arrays (None when the batch had no readable example). tf.data decodes and preprocesses the
    next batches in parallel, in the background, while the caller works on this one. A file that
    fails is dropped (``ignore_errors``) and found as a gap in the indices (``records.size`` must
    be known): much cheaper than :func:`decode_records`'s per-example isolation, which keeps the
    place of every example for the distributed evaluation. ``strict``: ``ValueError`` at the
    first unreadable example, naming it and the reason.
    """
    import tensorflow as tf

    def decode(index, example):
        _, label, payload, orientation = example
        contents = tf.io.read_file(payload) if records.payload_is_path else payload
        image = decode_and_transform(contents, transform, _orientation(records, transform, orientation))
        return index, label, transform.preprocess(image)

    ds = _examples(records, transform).enumerate().map(decode, tf.data.AUTOTUNE, deterministic=True)
    expected = 0
    for index, label, images in ds.ignore_errors().batch(batch_size).prefetch(2):
        index = index.numpy()
        unreadable = np.setdiff1d(np.arange(expected, index[-1] + 1), index)
        if strict and unreadable.size:
            raise ValueError(f"Cannot read {skipped_examples(records, unreadable[:1], transform)[0]}.")
        expected = index[-1] + 1
        yield (index, label.numpy(), images.numpy()), unreadable
    if expected < records.size:
        if strict:
            raise ValueError(f"Cannot read {skipped_examples(records, [expected], transform)[0]}.")
        yield None, np.arange(expected, records.size)


def readable_batches(records, transform, batch_size, *, strict, kept, bad, labels=None):
    """Deprecated (use :func:`map_batches`); kept until deploy.precision and tasks.labelled move off it.

    Yields ``(readable images, preprocessed, or None; images read)``; appends the indices of the
    readable examples to ``kept`` (their labels to ``labels``) and of the others to ``bad``.
    """
    for readable, unreadable in _read_batches(records, transform, batch_size, strict):
        bad.extend(int(i) for i in unreadable)
        if readable is not None:
            kept.extend(int(i) for i in readable[0])
            if labels is not None:
                labels.extend(readable[1])
        yield (
            (None if readable is None else readable[2]),
            len(unreadable) + (0 if readable is None else len(readable[0])),
        )


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
        on_error: ``"skip"``: a file that cannot be read or decoded is left
            out and reported (a warning naming the path and the reason, once
            per file); ``"raise"``: iterating fails at the first such file
            with an error naming it.
    """
    import tensorflow as tf

    one_of(on_error, "on_error", ON_ERROR)
    positive_int(batch_size, "batch_size")
    if not isinstance(records, Records):
        records = Records.from_files(records, labels)
    transform = transform or resolve_transform()
    examples = _examples(records, transform)
    if shuffle:
        examples = examples.shuffle(max(records.size or 1, 1), seed=seed, reshuffle_each_iteration=True)
    examples = examples.map(lambda name, label, payload, o: (name, label, payload, o, payload))
    ds = _decode_each(examples, transform, records)  # (name, image, label, ok, payload)
    reported = set()

    def report(name, payload):
        name = name.numpy().decode("utf-8", "replace")
        why = reason(payload, transform, records.payload_is_path)
        if on_error == "raise":
            raise ValueError(f"Cannot read {Skipped(name, why)}.")
        if name not in reported:
            reported.add(name)
            warnings.warn(f"Skipped {Skipped(name, why)}", stacklevel=2)
        return False

    def keep(name, image, label, ok, payload):
        return tf.cond(ok, lambda: tf.constant(True), lambda: tf.py_function(report, [name, payload], tf.bool))

    ds = ds.filter(keep).map(lambda name, image, label, ok, payload: (image, label))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def map_batches(fn, paths, transform, *, labels=None, batch_size=32, strict=False, verbose=1, what="images"):
    """``fn`` over batches of the readable images of ``paths``: the one run over many files.

    Each batch is read with ``transform`` (decoded, cropped, resized, preprocessed) and passed to
    ``fn`` (a numpy batch -> a numpy batch of outputs, e.g. a model's ``predict_on_batch``); the
    next batches are decoded in the background meanwhile. A ``keras.utils.Progbar`` counts the
    files (``verbose``: 0 silent, 1 animated, 2 one line). Files that cannot be read are skipped,
    each warned about once as ``"Skipped path: reason"``, or with ``strict`` the first one raises
    ``ValueError``.

    Returns:
        :class:`~keras_xception.data.results.Results`: ``outputs`` (float32, None when no file was
        readable), the ``paths`` read, their ``labels`` (when given) and the ``skipped`` files.
    """
    import keras

    paths = [os.fspath(p) for p in paths]
    records = Records.from_files(paths, labels, description=what)
    outputs, kept, kept_labels, bad = [], [], [], []
    progbar = keras.utils.Progbar(len(paths), unit_name="image", verbose=verbose)
    for readable, unreadable in _read_batches(records, transform, batch_size, strict):
        bad.extend(unreadable)
        if readable is not None:
            index, label, images = readable
            outputs.append(np.asarray(fn(images), dtype="float32"))
            kept.extend(index)
            kept_labels.extend(label)
        progbar.add(len(unreadable) + (0 if readable is None else len(readable[0])))
    skipped = skipped_examples(records, bad, transform)
    for s in skipped:
        warnings.warn(f"Skipped {s}", stacklevel=2)
    return Results(
        np.concatenate(outputs) if outputs else None,
        [paths[i] for i in kept],
        None if labels is None else np.asarray(kept_labels, "int64"),
        skipped,
    )
