"""ImageNet validation data as :class:`~keras_xception.data.files.Records`: tfds, a folder, or TFRecords.

Class ``i`` is the ``i``-th WordNet id in sorted order (the Keras models' output index, the tfds label).
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import re

from keras_xception.checks import non_negative_int
from keras_xception.data.files import Records, list_folder
from keras_xception.model.imagenet import class_index

__all__ = ["imagenet_wnids", "validation_ground_truth", "tfds_records", "folder_records", "tfrecord_records"]

VAL_TAR = "ILSVRC2012_img_val.tar"
DOWNLOAD_HINT = (
    f"Download {VAL_TAR} (6.3 GB, the ILSVRC 2012 validation images; a free account is "
    "needed) from https://image-net.org/download-images"
)
_VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.(jpe?g|png)$", re.IGNORECASE)


@functools.cache
def imagenet_wnids() -> tuple:
    """The 1000 ImageNet-1k WordNet ids in model-output order (from the shipped class index)."""
    return tuple(wnid for wnid, _ in class_index())


@functools.cache
def validation_ground_truth() -> tuple:
    """Class index of each validation image: element ``k`` is ILSVRC2012_val_{k+1:08d} (tfds's copy of the truth)."""
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tensorflow-datasets is required for the ImageNet validation labels.")
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "imagenet2012", "validation_labels.txt")
    with open(path) as f:
        labels = tuple(index[line.strip()] for line in f if line.strip())
    assert len(labels) == 50000, "unexpected validation_labels.txt"
    return labels


def tfds_records(data_dir, manual_dir=None, split="validation") -> Records:
    """The tfds ``imagenet2012`` split, preparing it first if needed.

    Args:
        data_dir: tfds data directory (holds or will hold ``imagenet2012/``).
        manual_dir: Folder holding ``ILSVRC2012_img_val.tar``, used when ``data_dir`` has no
            prepared ``imagenet2012``: only that tar is linked in for the builder, so only the
            validation split is built (a partial tar must hold the *first* N images).
        split: A tfds split spec (``"validation"``, ``"validation[:1000]"``).

    Raises:
        ValueError: the data is neither prepared nor preparable (saying what to download, where).
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    data_dir = os.path.abspath(os.fspath(data_dir))
    builder = tfds.builder("imagenet2012", data_dir=data_dir)
    if not tf.io.gfile.exists(os.path.join(os.fspath(builder.data_dir), "dataset_info.json")):
        _prepare_from_tar(builder, data_dir, manual_dir)
    splits = builder.info.splits
    try:
        size = splits[split].num_examples
    except (KeyError, ValueError) as e:
        raise ValueError(
            f"The prepared imagenet2012 in {data_dir!r} has no split {split!r} (available: {sorted(splits)}): {e}"
        ) from None
    ds = builder.as_dataset(
        split=split,
        shuffle_files=False,
        decoders={"image": tfds.decode.SkipDecoding()},
        # One shard after the other: the order must be the same on every pass (explain()
        # finds skipped examples again by position).
        read_config=tfds.ReadConfig(interleave_cycle_length=1),
    )
    ds = ds.map(
        lambda ex: (ex["file_name"], tf.cast(ex["label"], tf.int64), ex["image"]), num_parallel_calls=tf.data.AUTOTUNE
    )
    return Records(ds, False, size, f"tfds imagenet2012[{split}] in {data_dir}")


def _prepare_from_tar(builder, data_dir, manual_dir):
    """Prepare the validation split from ``manual_dir/ILSVRC2012_img_val.tar`` (only that tar is linked in)."""
    import tensorflow_datasets as tfds

    if manual_dir is None:
        raise ValueError(
            f"No prepared tfds 'imagenet2012' in data_dir={data_dir!r}. {DOWNLOAD_HINT}, "
            "put it in a folder and pass that folder as the manual dir "
            "(--tfds-manual-dir / manual_dir=); the validation split is then prepared "
            f"into {data_dir!r} once (about 6.4 GB)."
        )
    tar = os.path.join(os.path.abspath(os.fspath(manual_dir)), VAL_TAR)
    if not os.path.isfile(tar):
        raise ValueError(
            f"No {VAL_TAR} in manual_dir={os.fspath(manual_dir)!r}. {DOWNLOAD_HINT} and put it in that folder."
        )
    staging = os.path.join(data_dir, "keras_xception_manual")
    os.makedirs(staging, exist_ok=True)
    link = os.path.join(staging, VAL_TAR)
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(tar, link)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=staging, try_download_gcs=False)
    )


def folder_records(directory, *, strict=False) -> Records:
    """Images in a folder, labelled by the ImageNet validation ground truth or by sub-folder.

    Two layouts are recognised: flat ``ILSVRC2012_val_00000001.JPEG`` ... (as extracted from
    ``ILSVRC2012_img_val.tar``; other files are ignored), labelled by the official ground truth;
    or one sub-folder per WordNet id (``n01440764/*.JPEG``, :meth:`Records.from_class_folders`:
    another sub-folder name is an error; what cannot be listed is skipped with a warning, or with
    ``strict=True`` an error). Files that cannot be decoded are found by the pipeline.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(
            f"No such folder: {directory!r}. {DOWNLOAD_HINT}, extract it "
            f"(`mkdir val && tar -xf {VAL_TAR} -C val`) and pass the folder."
        )
    entries = list_folder(directory)
    if any(os.path.isdir(os.path.join(directory, e)) for e in entries) and not any(map(_VAL_NAME.match, entries)):
        description = f"{directory} (class folders)"
        return Records.from_class_folders(directory, imagenet_wnids(), strict=strict, description=description)
    names, labels = _validation_files(directory, entries)
    if not names:
        raise ValueError(
            f"No images in {directory!r}: expected ILSVRC2012_val_XXXXXXXX.JPEG files or "
            f"sub-folders named by WordNet id (n01440764/*.JPEG). {DOWNLOAD_HINT} and extract "
            "it into that folder."
        )
    return Records.from_files(names, labels, description=f"{directory} (ILSVRC2012_val_*.JPEG)")


def _validation_files(directory, entries):
    """``(paths, labels)`` of the ``ILSVRC2012_val_*`` files among ``entries``, by the official ground truth."""
    truth = validation_ground_truth()
    names, labels = [], []
    for f in entries:
        m = _VAL_NAME.match(f)
        if m:
            k = int(m.group(1))
            if not 1 <= k <= len(truth):
                raise ValueError(f"{f!r} in {directory!r}: validation images are numbered 1 to 50000.")
            names.append(os.path.join(directory, f))
            labels.append(truth[k - 1])
    return names, labels


def tfrecord_records(file_pattern, label_offset=1) -> Records:
    """TFRecord shards in the layout of TensorFlow's classic ImageNet conversion scripts.

    Each ``tf.train.Example`` holds ``image/encoded`` (JPEG bytes), ``image/class/label`` (int64)
    and optionally ``image/filename``.

    Args:
        file_pattern: A glob (``/data/imagenet/validation-*``) or a list of files (read sorted).
        label_offset: Subtracted from ``image/class/label``: 1 (the default) for the classic scripts'
            1..1000 (0 was "background"), 0 for 0-based shards. A label outside the classes makes
            the evaluation fail, naming the offset.
    """
    import tensorflow as tf

    non_negative_int(label_offset, "label_offset")
    patterns = [file_pattern] if isinstance(file_pattern, (str, os.PathLike)) else list(file_pattern)
    files = sorted({f for p in patterns for f in glob.glob(os.fspath(p))})
    if not files:
        raise ValueError(
            f"No TFRecord files match {file_pattern!r}. Shards are written by TensorFlow's "
            "ImageNet conversion script (build_imagenet_data.py in tensorflow/models) from "
            f"the extracted {VAL_TAR}; {DOWNLOAD_HINT}."
        )
    features = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
    }

    def parse(serialized):
        ex = tf.io.parse_single_example(serialized, features)
        return ex["image/filename"], ex["image/class/label"] - label_offset, ex["image/encoded"]

    ds = tf.data.TFRecordDataset(files, buffer_size=8 << 20).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    desc = f"TFRecords {file_pattern} ({len(files)} files, label_offset={label_offset})"
    return Records(ds, False, None, desc)
