"""The ``keras-xception`` command line.

Subcommands:

* ``predict IMAGE... [--top K] [--weights W] [--json]``: top-k ImageNet classes
  per image (with no image: a sample photo shipped with matplotlib).
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
