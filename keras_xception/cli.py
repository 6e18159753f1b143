"""The ``keras-xception`` command line.

Subcommands:

* ``predict IMAGE... [--top K] [--weights W] [--json] [--runtime R]``: top-k ImageNet classes
  per image (with no image: a sample photo shipped with matplotlib).
* ``export --format F --out PATH [--weights W] [--image-size N] [--no-top]``:
  write a SavedModel / ONNX / OpenVINO model, checked against Keras.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from keras_xception.exporting import FORMATS
from keras_xception.inference import add_runtime_argument

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
    from keras_xception.inference import predict_function

    paths = args.images or [sample_image()]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"keras-xception predict: no such file: {', '.join(missing)}")
    model = Xception(weights=args.weights)
    kw = _transform_kwargs(args.weights)
    kw.setdefault("target_size", tuple(model.input_shape[1:3]))
    predict = predict_function(model, args.runtime)
    x = preprocess_input(np.stack([load_image(path, **kw) for path in paths]))
    top = decode_predictions(predict(x), top=args.top)
    results = [{"path": path, "top": t} for path, t in zip(paths, top)]
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


def _cmd_export(args) -> int:
    from keras_xception import Xception
    from keras_xception.exporting import ParityError, export

    weights = None if args.weights.lower() == "none" else args.weights
    shape = None
    if args.image_size is not None:
        if args.image_size < 71:
            raise ValueError(f"--image-size must be at least 71; received {args.image_size}.")
        shape = (args.image_size, args.image_size, 3)
    pooling = None if args.include_top or args.pooling == "none" else args.pooling
    model = Xception(include_top=args.include_top, weights=weights, input_shape=shape, pooling=pooling)
    print(f"exporting {model.name} ({model.count_params():,} parameters, input {model.input_shape}) "
          f"as {args.format} to {args.out} ...", file=sys.stderr, flush=True)
    try:
        export(model, args.out, format=args.format, fold_bn=not args.no_fold_bn, check=not args.no_check)
    except ParityError as e:
        raise SystemExit(f"keras-xception export: parity check failed: {e}") from None
    print(args.out)
    return 0


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
    add_runtime_argument(p, default="keras")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="export the model (SavedModel, ONNX, OpenVINO), checked against Keras")
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="artifact format")
    p.add_argument("--out", required=True, help="output: a directory (savedmodel), .onnx or .xml file")
    p.add_argument("--weights", default="imagenet", help="registered name, weights file, or 'none' (random)")
    p.add_argument("--image-size", type=int, default=None,
                   help="input height and width (default 299 with the top, any size without)")
    top = p.add_mutually_exclusive_group()
    top.add_argument("--include-top", dest="include_top", action="store_true", default=True,
                     help="keep the 1000-class classifier (default)")
    top.add_argument("--no-top", dest="include_top", action="store_false",
                     help="export the feature extractor (see --pooling)")
    p.add_argument("--pooling", choices=("avg", "max", "none"), default="avg",
                   help="global pooling with --no-top (default avg; none: the 4D feature map)")
    p.add_argument("--no-fold-bn", action="store_true", help="keep BatchNormalization layers as they are")
    p.add_argument("--no-check", action="store_true", help="skip the parity check against Keras")
    p.set_defaults(func=_cmd_export)
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
