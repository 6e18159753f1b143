"""The one ``tf.data`` image pipeline over :class:`Records` (every image decoded as :func:`load_image` does):
:func:`decode_records` (every example once, flagged ``ok``: evaluation), :func:`image_dataset` (training
batches) and :func:`map_batches` (a function over batches of files), with :func:`explain` for bad files.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings

import numpy as np

from keras_xception.checks import non_negative_int, one_of, positive_int
from keras_xception.data.files import class_folders, report_unreadable
from keras_xception.data.results import Results, Skipped
from keras_xception.data.transform import Transform, decode_and_transform, file_windows, resolve_transform

__all__ = ["Records", "decode_records", "image_dataset", "map_batches", "explain", "ON_ERROR"]

#: Policies for files that cannot be read or decoded.
ON_ERROR = ("skip", "raise")


@dataclasses.dataclass(frozen=True)
class Records:
    """Raw examples of one source, before decoding.

    Attributes:
        dataset: ``tf.data.Dataset`` of ``(name, label, payload)``: the file path or name, the int64
            class index, and the encoded image bytes or (``payload_is_path``) a path.
        payload_is_path: Whether ``payload`` is a file path to read.
        size: Number of examples when known without reading them, else None.
        description: Where the examples come from (for reports).
        problems: ``(path, reason)`` of inputs that could not even be listed (reported as skipped).
        paths: The files, in order, for records of files (else None).
    """

    dataset: object
    payload_is_path: bool
    size: int | None
    description: str
    problems: tuple = ()
    paths: tuple | None = None

    @classmethod
    def from_files(cls, paths, labels=None, description="files", problems=()) -> Records:
        """Records of image files (labels default to 0), in the given order."""
        import tensorflow as tf

        paths = [os.fspath(p) for p in paths]
        labels = np.zeros(len(paths), np.int64) if labels is None else np.asarray(labels, np.int64)
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels; they must match one to one.")
        ds = tf.data.Dataset.from_tensor_slices(
            (tf.constant(paths, tf.string), tf.constant(labels, tf.int64), tf.constant(paths, tf.string))
        )
        return cls(ds, True, len(paths), description, problems, tuple(paths))

    @classmethod
    def from_class_folders(cls, root, class_names, *, strict=False, description=None) -> Records:
        """Records of a class-per-folder tree (:func:`~keras_xception.data.files.class_folders`) labelled by
        ``class_names``; a folder not among them is an error. What could not be listed is warned about
        and kept in ``problems`` (``strict``: ``ValueError`` at the first)."""
        problems = []
        paths, labels, folders = class_folders(root, problems)
        index = {c: i for i, c in enumerate(class_names)}
        unknown = sorted(set(folders) - set(index))
        if unknown:
            known = list(class_names) if len(class_names) <= 20 else f"{len(class_names)} names: {class_names[0]}, ..."
            raise ValueError(f"{root!r} has class folders the model does not know: {unknown}; its classes are {known}.")
        for path, reason in problems:
            report_unreadable(None, path, reason, strict)
        skipped = tuple(Skipped(path, reason) for path, reason in problems)
        return cls.from_files(paths, [index[folders[k]] for k in labels], description or root, problems=skipped)

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


def reason(payload, transform, payload_is_path=True) -> str:
    """Why one example cannot be read or decoded (the reader's or decoder's message, the path not repeated)."""
    import tensorflow as tf

    try:
        decode_and_transform(tf.io.read_file(payload) if payload_is_path else payload, transform)
    except (tf.errors.OpError, ValueError) as e:
        text = getattr(e, "message", None) or str(e)
        text = text.splitlines()[0] if text else type(e).__name__
        text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", text)
        text = re.sub(r"\s*\[Op:\w+\].*$", "", text).strip()
        if payload_is_path:  # TensorFlow's file errors start with the path: "PATH; No such file or directory"
            path = payload.numpy().decode("utf-8", "replace") if hasattr(payload, "numpy") else os.fspath(payload)
            text = text.removeprefix(f"{path}; ").removeprefix(f"{path}: ")
        return text
    return "decoded on retry (transient read error?)"


def explain(records: Records, indices, transform: Transform) -> list:
    """``[(index, Skipped(name, reason))]`` for the examples at ``indices`` (re-read and decoded eagerly)."""
    import tensorflow as tf

    wanted = sorted({int(i) for i in indices})
    if not wanted:
        return []
    w = tf.constant(wanted, tf.int64)
    found = records.dataset.enumerate().filter(lambda i, ex: tf.reduce_any(tf.equal(i, w)))
    out = []
    for i, (name, _, payload) in found:
        name = name.numpy().decode("utf-8", "replace") or f"record #{int(i)}"
        out.append((int(i), Skipped(name, reason(payload, transform, records.payload_is_path))))
    return out


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
