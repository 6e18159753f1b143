"""What to read: the image files under a folder, a class-per-folder tree and its seeded train/validation split, a
list of paths, and :class:`Records` (the examples of one source, before decoding)."""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np

from keras_xception.checks import existing_dir, fraction, positive_int
from keras_xception.data.results import Skipped
from keras_xception.data.transform import IMAGE_EXTENSIONS

__all__ = ["Records", "list_images", "list_folder", "class_folders", "class_folder_split", "report_unreadable"]

_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def list_folder(directory) -> list:
    """The sorted entries of a folder; ``ValueError`` naming it and the reason when it cannot be read."""
    try:
        return sorted(os.listdir(directory))
    except OSError as e:
        raise ValueError(f"Cannot read the folder {directory!r}: {e.strerror or e}.") from None


def report_unreadable(problems, path, reason, strict):
    """The one policy for an input that cannot be read: ``ValueError`` (``strict``), else appended to
    ``problems`` as ``(path, reason)``, or warned about when ``problems`` is None."""
    if strict:
        raise ValueError(f"Cannot read {path}: {reason}.")
    if problems is None:
        warnings.warn(f"Skipping {path}: {reason}", stacklevel=3)
    else:
        problems.append((path, reason))


def list_images(directory, *, problems=None, strict=False) -> list[str]:
    """Paths of the image files under ``directory``, recursively, in sorted order.

    An image by its extension (:data:`IMAGE_EXTENSIONS`, any case); hidden files and folders are
    ignored. Unreadable sub-folders and files go through :func:`report_unreadable` (``problems``,
    ``strict``); files that cannot be *decoded* are found later, by the pipeline. ``ValueError``
    when ``directory`` is not a readable folder.
    """
    list_folder(existing_dir(directory, "directory"))
    return _walk(directory, problems, strict)


def _walk(directory, problems, strict) -> list[str]:
    """:func:`list_images` of a folder known to exist."""
    found = []

    def on_error(e):
        report_unreadable(problems, e.filename, e.strerror or str(e), strict)

    for root, dirs, files in os.walk(os.fspath(directory), onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(root, name)
                if os.access(path, os.R_OK):
                    found.append(path)
                else:
                    report_unreadable(problems, path, "Permission denied", strict)
    return found


def read_path_list(path) -> list[str]:
    """The paths listed in a text file (one a line) or a ``.parquet`` file (a ``path`` column); relative ones are
    taken from the list's folder. A listed file that is missing is found later, by the pipeline."""
    try:
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            entries = pq.read_table(path, columns=["path"]).column("path").to_pylist()
        else:
            with open(path, encoding="utf-8") as f:
                entries = [line.strip() for line in f]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"Cannot read the list {path!r} (a path a line, or a Parquet `path` column): {e}") from None
    return [os.path.join(os.path.dirname(os.path.abspath(path)), p) for p in entries if p]


def _image_files(folder, problems):
    """The files under ``folder`` that start like a JPEG, PNG, GIF or BMP; the others go to ``problems``."""
    files = []
    for path in _walk(folder, problems, False):
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except OSError as e:
            problems.append((path, e.strerror or str(e)))
            continue
        if any(head.startswith(m) for m in _MAGIC):
            files.append(path)
        else:
            problems.append((path, "not a JPEG, PNG, GIF or BMP image"))
    return files


def class_folders(root, problems, *, min_classes=1):
    """Every image of a class-per-folder tree (``root/<class>/*``): ``(paths, labels, class_names)``.

    Every sub-folder of ``root`` (sorted by name: label 0 is the first; hidden ones ignored) is a
    class; its image files are found recursively. Files that cannot be opened or are not JPEG,
    PNG, GIF or BMP, and unreadable folders, are appended to ``problems`` as ``(path, reason)``.

    Raises:
        ValueError: ``root`` (an existing folder: its callers check that) cannot be read, has fewer
            than ``min_classes`` class folders, or a class folder holds no image file.
    """
    root = os.fspath(root)
    names = [d for d in list_folder(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")]
    if len(names) < min_classes:
        raise ValueError(
            f"{root!r} must hold one sub-folder of images per class (at least {min_classes} classes); it has "
            f"{len(names)}: {names}."
        )
    paths, labels = [], []
    for label, name in enumerate(names):
        files = _image_files(os.path.join(root, name), problems)
        if not files:
            raise ValueError(
                f"Class folder {os.path.join(root, name)!r} has no image files ({', '.join(IMAGE_EXTENSIONS)})."
            )
        paths += files
        labels += [label] * len(files)
    return paths, np.array(labels, "int32"), names


def class_folder_split(data_dir, val_split=0.2, seed=1337, *, problems=None):
    """Split a class-per-folder image tree into training and validation files.

    The classes and files are :func:`class_folders`'; each class's files are shuffled with ``seed``
    and ``round(val_split * n)`` go to validation (at least one in each part from 2 images on).
    What is skipped is appended to ``problems`` as ``(path, reason)``, or warned about.

    Returns:
        ``(train_paths, train_labels, val_paths, val_labels, class_names)``;
        paths are lists of strings, labels int32 arrays.
    """
    fraction(val_split, "val_split", low_open=False, high_open=True)
    found = []
    paths, labels, class_names = class_folders(existing_dir(data_dir, "data_dir"), found, min_classes=2)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in range(len(class_names)):
        files = [p for p, lab in zip(paths, labels) if lab == label]
        order = rng.permutation(len(files))
        n_val = int(round(val_split * len(files)))
        if val_split > 0 and len(files) >= 2:
            n_val = min(max(n_val, 1), len(files) - 1)
        val += [(files[i], label) for i in order[:n_val]]
        train += [(files[i], label) for i in order[n_val:]]
    for path, reason in found:
        report_unreadable(problems, path, reason, False)

    def unzip(pairs):
        return [p for p, _ in pairs], np.array([label for _, label in pairs], dtype="int32")

    return (*unzip(train), *unzip(val), class_names)


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
