"""The ``train`` command and the ``--model`` form of ``predict``, ``extract``, ``evaluate`` and ``export``.

``keras-xception train DATA_DIR --out model.keras`` trains a classifier on a
class-per-folder image tree (:func:`keras_xception.tasks.training.train`);
``--model model.keras`` makes the other commands use that classifier, its
class names and its input transform. Like the other commands: no TensorFlow
at import time, results to standard output, progress to standard error.
"""

from __future__ import annotations

import json
import os
import sys

from keras_xception.cli.commands import (
    _check_out_dir,
    _image_paths,
    _report_skipped,
    export_precision,
    inference_options,
    sample_image,
    write_features,
    write_predictions,
)

__all__ = ["train", "with_model", "predict_model", "extract_model", "evaluate_model", "export_model", "classes_path"]


def with_model(default, with_model_file):
    """A command function that runs ``with_model_file`` when ``--model`` is given, else ``default``."""

    def command(args, stdout):
        return (with_model_file if args.model else default)(args, stdout)

    command.__name__ = getattr(default, "__name__", "command")
    command.__doc__ = default.__doc__
    return command


def _refuse(args, command, **flags):
    """ValueError for options that do not apply with ``--model`` (``flags``: attribute -> value meaning unset)."""
    given = [
        "--" + name.replace("_", "-") for name, unset in flags.items() if getattr(args, name, unset) not in (unset,)
    ]
    if given:
        raise ValueError(
            f"{', '.join(given)} cannot be combined with --model: `{command} --model` uses the classifier's own "
            "weights, input size and transform (saved with it by `keras-xception train`)."
        )


def _load(path):
    from keras_xception.tasks.classifier import load_classifier

    return load_classifier(path)


def _print_table(report, class_names, stdout):
    width = max([len(c) for c in class_names] + [5])
    print(f"  {'class':<{width}}  precision  recall  support", file=stdout)
    for name in class_names:
        r = report["per_class"][name]
        recall = "-" if r["recall"] is None else f"{r['recall']:.3f}"
        print(f"  {name:<{width}}  {r['precision']:>9.3f}  {recall:>6}  {r['support']:>7}", file=stdout)


def _print_confusion(matrix, class_names, stdout, limit=20):
    if len(class_names) > limit:
        print(f"  (confusion matrix of {len(class_names)} classes: see the JSON report)", file=stdout)
        return
    width = max(max(len(c) for c in class_names), max(len(str(v)) for row in matrix for v in row), 4)
    print("  confusion matrix (rows: true class, columns: predicted):", file=stdout)
    print("  " + " " * width + "  " + " ".join(f"{c[:width]:>{width}}" for c in class_names), file=stdout)
    for name, row in zip(class_names, matrix):
        print(f"  {name:>{width}}  " + " ".join(f"{v:>{width}}" for v in row), file=stdout)


# ---------------------------------------------------------------- train


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


# ---------------------------------------------------------------- --model


def predict_model(args, stdout) -> int:
    """The classifier's own classes (top-k) for each image."""
    from keras_xception.tasks.extraction import extract_features

    _refuse(args, "predict", weights="imagenet", cam=None)
    classifier = _load(args.model)
    paths, skipped = _image_paths(args.images or [sample_image()], args.strict)
    result = extract_features(
        paths,
        model=classifier.model,
        transform=classifier.transform,
        batch_size=args.batch_size,
        **inference_options(args),
        verbose=args.verbose,
        strict=args.strict,
    )
    skipped = skipped + list(result.skipped)
    tops = [[dict(name=n, score=p) for n, p in classifier.top(probs, args.top)] for probs in result.features]
    width = max([len(c) for c in classifier.class_names] + [10])
    return write_predictions(result.paths, tops, skipped, args.json, stdout, width)


def extract_model(args, stdout) -> int:
    """Feature vectors from the classifier's backbone (pooled; ``--layer`` as without --model)."""
    from keras_xception.model.features import feature_model
    from keras_xception.tasks.extraction import extract_features

    _refuse(args, "extract", weights="imagenet", image_size=None)
    if not os.path.isdir(args.dir):
        raise ValueError(f"DIR must be an existing folder; received {args.dir!r}.")
    _check_out_dir(args.out, "--out")
    classifier = _load(args.model)
    layer = args.layer or "avg_pool"
    try:
        model = feature_model(classifier.model, layer, pool=True, name="classifier_features")
    except ValueError as e:
        raise ValueError(f"--layer {layer!r}: {e}") from None
    result = extract_features(
        args.dir,
        model=model,
        transform=classifier.transform,
        batch_size=args.batch_size,
        **inference_options(args),
        verbose=args.verbose,
        strict=args.strict,
    )
    return write_features(args.out, result, stdout)


def evaluate_model(args, stdout) -> int:
    """Accuracy, per-class figures and the confusion matrix on class folders (``--val-dir``)."""
    from keras_xception.tasks.classifier import evaluate_classifier

    if args.val_dir is None:
        raise ValueError(
            "evaluate --model needs --val-dir DIR: a folder with one sub-folder of images per class, named like "
            "the model's classes (--tfds-data-dir and --tfrecords are ImageNet sources)."
        )
    _refuse(
        args,
        "evaluate",
        weights="imagenet",
        image_size=None,
        crop_pct=None,
        resize_mode=None,
        interpolation=None,
        limit=None,
        tfds_manual_dir=None,
        strategy="default",
    )
    _check_out_dir(args.report, "--report")
    classifier = _load(args.model)
    report = evaluate_classifier(
        classifier,
        args.val_dir,
        batch_size=args.batch_size,
        **inference_options(args),
        strict=args.strict,
        verbose=0 if args.quiet else args.verbose,
    )
    report["model"] = args.model
    names = report["class_names"]
    top5 = f"  top-5 {100 * report['top5_accuracy']:.2f}%" if "top5_accuracy" in report else ""
    print(
        f"accuracy {100 * report['accuracy']:.2f}%{top5}  over {report['count']} images "
        f"({len(report['skipped'])} skipped), {report['elapsed_seconds']} s",
        file=stdout,
    )
    _print_table(report, names, stdout)
    _print_confusion(report["confusion_matrix"], names, stdout)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    _report_skipped(report["skipped"], report["count"] + len(report["skipped"]))
    return 0


def classes_path(path, format: str) -> str:
    """Where ``export --model`` writes the class names (JSON list), next to the transform JSON.

    Inside a SavedModel directory ``keras_xception_classes.json``; else beside
    the file: ``model.onnx`` -> ``model.classes.json``.
    """
    path = os.fspath(path)
    if format == "savedmodel":
        return os.path.join(path, "keras_xception_classes.json")
    return os.path.splitext(path)[0] + ".classes.json"


def export_model(args, stdout) -> int:
    """Export the classifier (raw 0..255 images in, probabilities out) with its transform and class names."""
    from keras_xception.cli.commands import PartialFailure
    from keras_xception.deploy.export import ParityError
    from keras_xception.deploy.export import export as write_artifact
    from keras_xception.deploy.runtimes import check_export_path

    _refuse(args, "export", weights="imagenet", image_size=None, include_top=True, pooling="avg")
    check_export_path(args.out, args.format)
    precision = export_precision(args)
    classifier = _load(args.model)
    model = classifier.model
    print(
        f"exporting the classifier {args.model} ({len(classifier.class_names)} classes, input {model.input_shape}) "
        f"as {args.format} to {args.out} ...",
        file=sys.stderr,
        flush=True,
    )
    try:
        write_artifact(
            model,
            args.out,
            format=args.format,
            transform=classifier.transform,
            fold_bn=not args.no_fold_bn,
            check=not args.no_check,
            **precision,
        )
    except ParityError as e:
        raise PartialFailure(f"parity check failed: {e}") from None
    with open(classes_path(args.out, args.format), "w") as f:
        json.dump(list(classifier.class_names), f, indent=2)
        f.write("\n")
    print(args.out, file=stdout)
    return 0
