"""The ``train`` command: ``keras-xception train DATA_DIR --out model.keras`` trains a classifier on a
class-per-folder image tree (:func:`keras_xception.tasks.training.train`). Its options are derived from
:class:`keras_xception.tasks.options.TrainOptions` and checked before TensorFlow is imported. Like the
other commands: results to standard output, progress to standard error.
"""

from __future__ import annotations

import dataclasses

from keras_xception.cli.commands import _check_out_dir, _print_table, _report_skipped

__all__ = ["train", "add_parser"]


def add_parser(sub) -> None:
    """The ``train`` command."""
    from keras_xception.cli.parser import _add_weights
    from keras_xception.tasks.options import add_arguments

    p = sub.add_parser(
        "train",
        help="train a classifier on your images (one folder per class)",
        description="Transfer learning: a frozen pretrained Xception and a new head trained on its cached "
        "features until the validation loss stops falling, then optionally fine-tuning of the top blocks. "
        "Writes the classifier (.keras, with its class names and input transform inside; reloads with "
        "keras.saving.load_model), a training-curves PNG and a confusion-matrix PNG beside it, and a report.",
    )
    p.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder of images per class")
    p.add_argument("--out", required=True, metavar="MODEL.keras", help="the trained classifier (.keras)")
    _add_weights(p, "backbone: registered name, weights file, or 'none' (random)")
    add_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=train)


def train(args, stdout) -> int:
    """Train a classifier on DATA_DIR (class folders); write the model, plots and report."""
    import os

    from keras_xception.tasks.options import TrainOptions

    if not args.out.endswith(".keras"):
        raise ValueError(f"--out must be a .keras file (the Keras model format); received {args.out!r}.")
    _check_out_dir(args.out, "--out")
    _check_out_dir(args.report_path, "--report")
    if not os.path.isdir(args.data_dir):
        raise ValueError(
            f"DATA_DIR must be an existing folder with one sub-folder of images per class; received {args.data_dir!r}."
        )
    if args.augment and not args.fine_tune_epochs:
        raise ValueError(
            "--augment applies to fine-tuning only (the head trains on cached features, each image as it is); "
            "add --fine-tune-epochs N."
        )
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    options = {k: v for k, v in vars(args).items() if k in names}
    TrainOptions(**options)  # every check before TensorFlow is imported
    from keras_xception.tasks import reports, training

    classifier, report = training.train(args.data_dir, **dict(options, verbose=0 if args.quiet else args.verbose))
    if report["outputs"]:  # written by the chief only
        print(reports.summary(report), file=stdout)
        _print_table(report, list(classifier.class_names), stdout)
        for what, path in report["outputs"].items():
            print(f"{what.replace('_', ' ')}: {path}", file=stdout)
    _report_skipped(report["skipped"], report["num_train"] + report["num_val"] + len(report["skipped"]))
    return 0
