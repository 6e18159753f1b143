"""The ``keras-xception`` command line.

Subcommands:

* ``predict IMAGE... [--top K] [--weights W] [--json]``: top-k ImageNet classes
  per image (with no image: a sample photo shipped with matplotlib).
* ``evaluate (--tfds-data-dir D | --val-dir D | --tfrecords GLOB) ...``: ImageNet
  top-1/top-5 with a progress bar and a JSON report (see ``_cmd_evaluate``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["main", "sample_image"]


def sample_image() -> str:
    """Path of a sample photo that an installed dependency ships (matplotlib's Grace Hopper)."""
    import matplotlib.cbook

    return str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def _transform_kwargs(weights):
    """The evaluation transform of a registered weight set (defaults for files/None)."""
    from keras_xception import weights as weights_lib

    if isinstance(weights, str) and weights_lib.is_registered(weights):
        r = weights_lib.get_record(weights)
        return dict(
            target_size=tuple(r.input_size),
            crop_fraction=r.crop_fraction,
            resize_mode=r.resize_mode,
            interpolation=r.interpolation,
        )
    return {}


def _cmd_predict(args) -> int:
    import numpy as np

    from keras_xception import Xception, decode_predictions, load_image, preprocess_input

    paths = args.images or [sample_image()]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"keras-xception predict: no such file: {', '.join(missing)}")
    model = Xception(weights=args.weights)
    kw = _transform_kwargs(args.weights)
    kw.setdefault("target_size", tuple(model.input_shape[1:3]))
    results = []
    for path in paths:
        x = preprocess_input(load_image(path, **kw)[None])
        preds = model.predict(x, verbose=0)
        results.append({"path": path, "top": decode_predictions(preds, top=args.top)[0]})
    if args.json:
        out = [
            {"path": r["path"], "predictions": [dict(wnid=w, name=n, score=s) for w, n, s in r["top"]]}
            for r in results
        ]
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        for r in results:
            print(r["path"])
            for rank, (wnid, name, score) in enumerate(r["top"], 1):
                print(f"  {rank}. {name:<30} {wnid}  {score:.4f}")
    return 0


def _cmd_evaluate(args) -> int:
    """ImageNet top-1/top-5 of an Xception weight set over one of the three data sources."""
    from keras_xception import evaluation

    # The strategy first: multi-worker must be set up before TensorFlow runs anything.
    strategy = evaluation.make_strategy(args.strategy)
    from keras_xception import Xception, data

    size = args.image_size
    transform = evaluation.transform_for(
        args.weights,
        target_size=None if size is None else (size, size),
        crop_fraction=args.crop_pct,
        resize_mode=args.resize_mode,
        interpolation=args.interpolation,
    )
    if args.tfds_manual_dir is not None and args.tfds_data_dir is None:
        raise ValueError("--tfds-manual-dir needs --tfds-data-dir (where tfds writes the prepared data).")
    if args.tfds_data_dir is not None:
        records = data.tfds_records(args.tfds_data_dir, args.tfds_manual_dir)
    elif args.val_dir is not None:
        records = data.folder_records(args.val_dir)
    else:
        records = data.tfrecord_records(args.tfrecords, label_offset=args.label_offset)
    weights = None if args.weights == "none" else args.weights
    input_shape = None if size is None else (size, size, 3)
    report = evaluation.evaluate(
        lambda: Xception(weights=weights, input_shape=input_shape),
        records,
        transform=transform,
        batch_size=args.batch_size,
        limit=args.limit,
        strategy=strategy,
        strict=args.strict,
        per_class=args.per_class,
        verbose=0 if args.quiet else 1,
    )
    report["weights"] = args.weights
    if evaluation.is_chief(strategy):
        top = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"  # noqa: E731
        print(
            f"top-1 {top(report['top1'])}  top-5 {top(report['top5'])}  over {report['count']} images "
            f"({len(report['skipped'])} skipped), {report['images_per_second']} images/s, "
            f"{report['elapsed_seconds']} s"
        )
        if args.report:
            with open(args.report, "w") as f:
                json.dump(report, f, indent=2)
                f.write("\n")
    return 0


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], received {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-xception",
        description="Xception (Chollet, CVPR 2017) for Keras 3: classify, extract, evaluate.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="classify images (default: a sample photo)")
    p.add_argument("images", nargs="*", help="image files (default: a sample photo)")
    p.add_argument("--top", type=int, default=5, help="classes to show per image (default 5)")
    p.add_argument("--weights", default="imagenet", help="registered name or weights file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "evaluate",
        help="ImageNet top-1/top-5 (tfds, a folder of validation images, or TFRecords)",
        description="Evaluate on the ImageNet validation set. Data: ILSVRC2012_img_val.tar from "
        "https://image-net.org/download-images (for --tfds-manual-dir, or extracted for --val-dir).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tfds-data-dir", metavar="D", help="tfds data dir (prepared imagenet2012, or where to prepare it)")
    src.add_argument("--val-dir", metavar="D", help="folder of ILSVRC2012_val_*.JPEG or of n0xxxxxxx/ class folders")
    src.add_argument("--tfrecords", metavar="GLOB", help="classic ImageNet TFRecord shards (image/encoded, image/class/label)")
    p.add_argument("--tfds-manual-dir", metavar="M", help="folder holding ILSVRC2012_img_val.tar (prepares --tfds-data-dir)")
    p.add_argument("--label-offset", type=int, default=1, help="subtracted from TFRecord labels (default 1: 1-based labels)")
    p.add_argument("--weights", default="imagenet", help="registered name, weights file, or 'none' (random)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="global batch size (default 32)")
    p.add_argument("--limit", type=_positive_int, help="evaluate only the first N images")
    p.add_argument("--image-size", type=_positive_int, help="input size (default: the weight set's, 299)")
    p.add_argument("--crop-pct", type=_fraction, help="central crop fraction (default: the weight set's, 0.875)")
    p.add_argument("--resize-mode", choices=("central", "shorter-side"), help="crop protocol (default: central)")
    p.add_argument("--interpolation", choices=("bilinear", "bicubic"), help="resize method (default: bilinear)")
    p.add_argument("--strategy", choices=("default", "mirrored", "multi-worker"), default="default",
                   help="tf.distribute strategy; multi-worker reads TF_CONFIG (default: default)")
    p.add_argument("--strict", action="store_true", help="fail on an undecodable image instead of skipping it")
    p.add_argument("--per-class", action="store_true", help="add per-class accuracy to the report")
    p.add_argument("--report", metavar="OUT.json", help="write the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # our errors say what is wrong and what to do
        print(f"keras-xception {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
