"""Image folders: finding image files and class-per-folder splits.

* :func:`list_images` - every image file under a directory (recursive, sorted).
* :func:`class_folder_split` - a class-per-folder tree (``root/<class>/*.jpg``)
  split into training and validation files, per class and seeded.

The ``tf.data`` pipeline over the files is :func:`keras_xception.data.dataset.image_dataset`.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from keras_xception.data.transform import IMAGE_EXTENSIONS

__all__ = [
    "IMAGE_EXTENSIONS",
    "list_images",
    "looks_like_image",
    "class_folders",
    "class_folder_split",
    "report_unreadable",
]


_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def looks_like_image(path) -> bool:
    """Whether the file starts like a JPEG, PNG, GIF or BMP (a cheap check, no decoding).

    Raises ``OSError`` when the file cannot be read (the caller reports it).
    """
    with open(path, "rb") as f:
        head = f.read(8)
    return any(head.startswith(m) for m in _MAGIC)


def _check_dir(directory, argument):
    if not isinstance(directory, (str, os.PathLike)) or not os.path.isdir(directory):
        raise ValueError(f"`{argument}` must be an existing directory; received {argument}={directory!r}.")
    return os.fspath(directory)


def report_unreadable(problems, path, reason, strict, what="file"):
    """The one policy for an input that cannot be read: raise (``strict``), collect, or warn.

    Appends ``(path, reason)`` to ``problems`` when it is a list, else warns;
    with ``strict`` raises ``ValueError`` naming the path and the reason.
    """
    if strict:
        raise ValueError(f"Cannot read the {what} {path!r}: {reason}.")
    if problems is None:
        warnings.warn(f"Skipping unreadable {what} {path!r}: {reason}", stacklevel=3)
    else:
        problems.append((path, reason))


def list_images(directory, *, problems=None, strict=False) -> list[str]:
    """Paths of the image files under ``directory``, recursively, in sorted order.

    A file counts as an image by its extension (:data:`IMAGE_EXTENSIONS`, any
    case); hidden files and folders (names starting with ``.``) are ignored.

    Unreadable sub-folders and image files (no permission) are not silently
    left out: each is appended to ``problems`` as ``(path, reason)`` when a
    list is given, else warned about; ``strict=True`` raises instead.
    Files that cannot be *decoded* are found later, by the pipeline.

    Raises:
        ValueError: ``directory`` is not a folder, or cannot be read (the reason is given).
    """
    directory = _check_dir(directory, "directory")
    try:
        os.listdir(directory)
    except OSError as e:
        raise ValueError(f"Cannot read the folder {directory!r}: {e.strerror or e}.") from None
    found = []

    def on_error(e):
        report_unreadable(problems, e.filename, e.strerror or str(e), strict, "folder")

    for root, dirs, files in os.walk(directory, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(root, name)
                if os.access(path, os.R_OK):
                    found.append(path)
                else:
                    report_unreadable(problems, path, "Permission denied", strict, "file")
    return found


def class_folders(root, problems, *, min_classes=1):
    """Every image of a class-per-folder tree (``root/<class>/*``): ``(paths, labels, class_names)``.

    Every sub-folder of ``root`` (sorted by name: label 0 is the first; hidden ones ignored) is a
    class; its image files are found recursively. Files that cannot be opened or are not JPEG,
    PNG, GIF or BMP, and unreadable folders, are appended to ``problems`` as ``(path, reason)``.

    Raises:
        ValueError: ``root`` is not a readable folder, has fewer than ``min_classes`` class
            folders, or a class folder holds no image file.
    """
    root = _check_dir(root, "directory")
    try:
        names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    except OSError as e:
        raise ValueError(f"Cannot read the folder {root!r}: {e.strerror or e}.") from None
    if len(names) < min_classes:
        raise ValueError(
            f"{root!r} must hold one sub-folder of images per class (at least {min_classes} classes); it has "
            f"{len(names)}: {names}."
        )
    paths, labels = [], []
    for label, name in enumerate(names):
        files = []
        for path in list_images(os.path.join(root, name), problems=problems):
            try:
                if looks_like_image(path):
                    files.append(path)
                else:
                    problems.append((path, "not a JPEG, PNG, GIF or BMP image"))
            except OSError as e:
                problems.append((path, e.strerror or str(e)))
        if not files:
            raise ValueError(
                f"Class folder {os.path.join(root, name)!r} has no image files ({', '.join(IMAGE_EXTENSIONS)})."
            )
        paths += files
        labels += [label] * len(files)
    return paths, np.array(labels, "int32"), names


def class_folder_split(data_dir, val_split=0.2, seed=1337, *, problems=None):
    """Split a class-per-folder image tree into training and validation files.

    Every sub-directory of ``data_dir`` is a class (sorted by name: label 0 is
    the first); its images (found recursively) are shuffled with ``seed`` and
    ``round(val_split * n)`` of them go to validation, per class, so every
    class is represented in both parts whenever it has at least 2 images.
    Files that do not start like an image (:func:`looks_like_image`) and
    unreadable files and folders are skipped, each with its path and reason:
    appended to ``problems`` when a list is given, else warned about.

    Returns:
        ``(train_paths, train_labels, val_paths, val_labels, class_names)``;
        paths are lists of strings, labels int32 arrays.
    """
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float)) or not 0 <= val_split < 1:
        raise ValueError(f"`val_split` must be a number in [0, 1); received val_split={val_split!r}.")
    _check_dir(data_dir, "data_dir")
    warn = problems is None
    problems = [] if warn else problems
    reported = len(problems)
    paths, labels, class_names = class_folders(data_dir, problems, min_classes=2)
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

    for path, reason in problems[reported:] if warn else []:
        warnings.warn(f"Skipping {path!r}: {reason}", stacklevel=2)

    def unzip(pairs):
        return [p for p, _ in pairs], np.array([label for _, label in pairs], dtype="int32")

    return (*unzip(train), *unzip(val), class_names)
