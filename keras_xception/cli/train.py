"""The ``train`` command: ``keras-xception train DATA_DIR --out model.keras`` trains a classifier on a
class-per-folder image tree (:func:`keras_xception.tasks.training.train`). Like the other commands: no
TensorFlow at import time, results to standard output, progress to standard error.
"""

from __future__ import annotations

import argparse
import os

from keras_xception.cli.commands import _check_out_dir, _print_table, _report_skipped

__all__ = ["train", "add_parser"]


def _image_size(text):
    from keras_xception.cli.parser import _image_size as parse

    return parse(text)


def _positive_int(text):
    from keras_xception.cli.parser import _positive_int as parse

    return parse(text)


def _fraction(text):
    from keras_xception.cli.parser import _fraction as parse

    return parse(text)


def _add_weights(p, what):
    from keras_xception.cli.parser import _add_weights as add

    add(p, what)


def _epochs(text):
    """``--epochs``: ``auto`` (early stopping) or a positive integer."""
    return "auto" if text.lower() == "auto" else _positive_int(text)


def _non_negative_int(text):
    return 0 if text.strip() == "0" else _positive_int(text)


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, received {text!r}")
    return value


def _split_fraction(text):
    value = _fraction(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), received {text!r}")
    return value


def add_parser(sub) -> None:
    """The ``train`` command."""
    p = sub.add_parser(
        "train",
        help="train a classifier on your images (one folder per class)",
        description="Transfer learning: a frozen pretrained Xception and a new head trained on its cached "
        "features until the validation loss stops improving, then optionally fine-tuning of the top blocks. "
        "Writes the classifier (.keras, with its class names and input transform inside; reloads with "
        "keras.saving.load_model), a training-curves PNG and a confusion-matrix PNG beside it, and a report.",
    )
    p.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder of images per class")
    p.add_argument("--out", required=True, metavar="MODEL.keras", help="the trained classifier (.keras)")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val-dir", metavar="DIR", help="validation images in class folders named like DATA_DIR's")
    val.add_argument(
        "--val-split", type=_split_fraction, help="fraction of each class held out for validation (default 0.2)"
    )
    _add_weights(p, "backbone: registered name, weights file, or 'none' (random)")
    p.add_argument("--image-size", type=_image_size, help="square input side (default: the weights', 299)")
    p.add_argument(
        "--epochs",
        type=_epochs,
        default="auto",
        help="head epochs: auto (until the validation loss stops improving, best weights kept) or N (default auto)",
    )
    p.add_argument("--max-epochs", type=_positive_int, default=300, help="cap of --epochs auto (default 300)")
    p.add_argument("--patience", type=_positive_int, default=10, help="epochs without improvement (default 10)")
    p.add_argument("--learning-rate", type=_positive_float, default=1e-3, help="head learning rate (default 1e-3)")
    p.add_argument(
        "--fine-tune-epochs", type=_non_negative_int, default=0, help="fine-tuning epochs after the head (default 0)"
    )
    p.add_argument("--fine-tune-blocks", type=_positive_int, default=2, help="top blocks to fine-tune (default 2)")
    p.add_argument(
        "--fine-tune-learning-rate", type=_positive_float, default=1e-5, help="fine-tuning learning rate (default 1e-5)"
    )
    p.add_argument(
        "--augment", action="store_true", help="augment images during fine-tuning (flip, rotation, zoom, translation)"
    )
    p.add_argument("--class-weight", choices=("balanced",), help="weight classes inversely to their frequency")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="global batch size (default 32)")
    p.add_argument(
        "--strategy",
        choices=("default", "mirrored", "multi-worker"),
        default="default",
        help="tf.distribute strategy; multi-worker reads TF_CONFIG (default: default)",
    )
    p.add_argument("--mixed-precision", action="store_true", help="mixed-precision backbone, float32 head")
    p.add_argument("--report", metavar="OUT.json", help="write the training report as JSON")
    p.add_argument("--seed", type=int, default=1337, help="seed of the split, the head and the shuffling")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image instead of skipping it")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=train)


def train(args, stdout) -> int:
    """Train a classifier on DATA_DIR (class folders); write the model, plots and report."""
    from keras_xception.tasks import training

    if not args.out.endswith(".keras"):
        raise ValueError(f"--out must be a .keras file (the Keras model format); received {args.out!r}.")
    _check_out_dir(args.out, "--out")
    _check_out_dir(args.report, "--report")
    if not os.path.isdir(args.data_dir):
        raise ValueError(
            f"DATA_DIR must be an existing folder with one sub-folder of images per class; received {args.data_dir!r}."
        )
    if args.augment and not args.fine_tune_epochs:
        raise ValueError(
            "--augment applies to fine-tuning only (the head trains on cached features, each image as it is); "
            "add --fine-tune-epochs N."
        )
    classifier, report = training.train(
        args.data_dir,
        val_dir=args.val_dir,
        val_split=0.2 if args.val_split is None else args.val_split,
        weights=args.weights,
        image_size=args.image_size,
        epochs=args.epochs,
        max_epochs=args.max_epochs,
        patience=args.patience,
        learning_rate=args.learning_rate,
        fine_tune_epochs=args.fine_tune_epochs,
        fine_tune_blocks=args.fine_tune_blocks,
        fine_tune_learning_rate=args.fine_tune_learning_rate,
        augment=args.augment,
        class_weight=args.class_weight,
        batch_size=args.batch_size,
        strategy=args.strategy,
        mixed_precision=args.mixed_precision,
        out=args.out,
        report_path=args.report,
        seed=args.seed,
        strict=args.strict,
        verbose=0 if args.quiet else args.verbose,
    )
    if report["outputs"]:  # written by the chief only
        names = list(classifier.class_names)
        head = report["head"]
        print(
            f"val_accuracy {report['val_accuracy']:.4f} over {report['num_val']} validation images "
            f"({report['num_train']} training images, {len(names)} classes; head: {head['epochs_run']} epochs on "
            f"cached features, kept epoch {head['best_epoch']}"
            + (
                f"; fine-tuned {report['fine_tune']['epochs']} epochs, "
                + ("kept" if report["fine_tune"]["kept"] else "not kept: no better than the head")
                if report["fine_tune"]
                else ""
            )
            + f"; {report['timings']['total_seconds']:.1f} s)",
            file=stdout,
        )
        _print_table(report, names, stdout)
        for what, path in report["outputs"].items():
            print(f"{what.replace('_', ' ')}: {path}", file=stdout)
    skipped = report["skipped"]
    _report_skipped(skipped, report["num_train"] + report["num_val"] + len(skipped))
    return 0
