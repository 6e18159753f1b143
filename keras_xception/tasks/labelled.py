"""Labelled images: class-per-folder trees (``root/<class>/*.jpg``) and a model run over their files.

The data steps shared by :func:`~keras_xception.tasks.training.train` and
:func:`~keras_xception.tasks.classifier.evaluate_classifier`:

* :func:`split_class_folders`: training and validation files with their
  labels, from one tree (split per class) or two (``val_dir``).
* :func:`run_over_files`: a predict function over the readable images of a
  list of files, unreadable ones skipped and listed with the reason.

Files that cannot be read are collected as ``(path, reason)`` rather than
raised; the caller decides (``strict``) whether that is an error.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from keras_xception.data.dataset import Records, explain, readable_batches
from keras_xception.data.files import class_folder_split, class_folders
from keras_xception.tasks.extraction import predict_batches

__all__ = ["split_class_folders", "run_over_files"]


def split_class_folders(data_dir, val_dir, val_split, seed, problems, stacklevel=3):
    """``(train_paths, train_labels, val_paths, val_labels, class_names)`` from class folders.

    Unreadable files are appended to ``problems``; ``stacklevel`` is the
    warnings stack level of the user's call.
    """
    if val_dir is None:
        if isinstance(val_split, bool) or not isinstance(val_split, (int, float)) or not 0 < val_split < 1:
            raise ValueError(
                f"`val_split` must be a number in (0, 1) (or pass `val_dir`): early stopping and the "
                f"report need validation images; received val_split={val_split!r}."
            )
        tp, tl, vp, vl, classes = class_folder_split(data_dir, val_split, seed, problems=problems)
        if not vp:
            raise ValueError(f"val_split={val_split} leaves no validation images; add images or raise val_split.")
        return tp, tl, vp, vl, classes
    tp, tl, _, _, classes = class_folder_split(data_dir, 0.0, seed, problems=problems)
    if not os.path.isdir(val_dir):
        raise ValueError(f"`val_dir` must be an existing folder of class folders; received val_dir={val_dir!r}.")
    vp, vl0, val_classes = class_folders(os.fspath(val_dir), problems)
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        raise ValueError(
            f"`val_dir` {val_dir!r} has class folders that `data_dir` has not: {unknown}; the classes are {classes}."
        )
    missing = sorted(set(classes) - set(val_classes))
    if missing:
        warnings.warn(
            f"`val_dir` has no folder for the classes {missing}: they are not validated.", stacklevel=stacklevel
        )
    index = {c: i for i, c in enumerate(classes)}
    vl = np.array([index[val_classes[k]] for k in vl0], "int32")
    return tp, tl, vp, vl, classes


def run_over_files(predict, paths, labels, transform, batch_size, verbose, strict, skipped, what, stacklevel=3):
    """``predict`` over the readable images of ``paths``: ``(outputs, labels, kept_paths)``.

    Unreadable files are appended to ``skipped`` as ``(path, reason)``
    (``strict``: ``ValueError`` at the first) and warned about at
    ``stacklevel`` (the user's call).
    """
    records = Records.from_files(paths, labels, description=what)
    kept, kept_labels, bad = [], [], []
    batches = readable_batches(records, transform, batch_size, strict=strict, kept=kept, bad=bad, labels=kept_labels)

    if verbose:
        print(f"Running the model over the {what} ({len(paths)} images)")
    out = predict_batches(predict, batches, total=len(paths), verbose=verbose)
    for _, name, reason in explain(records, bad, transform):
        skipped.append((name, reason))
        warnings.warn(f"Skipping unreadable image {name!r}: {reason}", stacklevel=stacklevel)
    return out, np.asarray(kept_labels, "int64"), [paths[i] for i in kept]
