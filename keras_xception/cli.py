"""The ``keras-xception`` command line.

Subcommands:

* ``predict IMAGE... [--top K] [--weights W] [--json] [--cam OUT.png]``: top-k
  ImageNet classes per image (with no image: a sample photo shipped with
  matplotlib); ``--cam`` also writes a Grad-CAM heatmap for the top class.
* ``extract DIR --out features.npz [--weights W] [--layer NAME] [--image-size N]
  [--batch-size N]``: one feature vector per image file under DIR.
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
    _check_out_dir(args.cam, "--cam")
    model = Xception(weights=args.weights)
    kw = _transform_kwargs(args.weights)
    kw.setdefault("target_size", tuple(model.input_shape[1:3]))
    results, panels = [], []
    for path in paths:
        image = load_image(path, **kw)
        x = preprocess_input(image[None])
        preds = model.predict(x, verbose=0)
        results.append({"path": path, "top": decode_predictions(preds, top=args.top)[0]})
        if args.cam:
            panels.append(_cam_panel(model, image, x, preds, results[-1]["top"][0], path))
    if args.cam:
        from keras_xception.gradcam import save_cam_figure

        save_cam_figure(args.cam, panels)
        print(f"Grad-CAM heatmap written to {args.cam}", file=sys.stderr)
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


def _check_out_dir(path, flag):
    """A clear error up front (not after the work) when an output file's folder is missing."""
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ValueError(f"{flag}: the folder {folder!r} of {path!r} does not exist.")


def _cam_panel(model, image, x, preds, top1, path):
    """(image, Grad-CAM heatmap of the top class, title) for one image."""
    import numpy as np

    from keras_xception.gradcam import grad_cam

    heatmap, _ = grad_cam(model, x, class_index=int(np.argmax(preds[0])))
    _, name, score = top1
    return image, heatmap, f"{os.path.basename(path)}: {name} ({score:.3g})"


def _cmd_extract(args) -> int:
    from keras_xception.features import extract_features, save_features

    if not os.path.isdir(args.dir):
        raise ValueError(f"DIR must be an existing directory; received {args.dir!r}.")
    _check_out_dir(args.out, "--out")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer; received {args.batch_size}.")
    result = extract_features(
        args.dir,
        weights=args.weights,
        layer=args.layer,
        image_size=args.image_size,
        batch_size=args.batch_size,
    )
    out = args.out if args.out.endswith(".npz") else args.out + ".npz"
    save_features(out, result)
    n, d = result.features.shape
    print(f"{n} images -> {n} x {d} features written to {out}", file=sys.stderr)
    if result.skipped:
        print(f"{len(result.skipped)} unreadable file(s) skipped:", file=sys.stderr)
        for path, _ in result.skipped:
            print(f"  {path}", file=sys.stderr)
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
    p.add_argument("--cam", metavar="OUT.png", help="also write a Grad-CAM heatmap of the top class")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "extract",
        help="feature vectors for every image under a directory, to .npz",
        description="One feature vector per image file under DIR (recursive; JPEG, PNG, GIF, BMP), "
        "read with load_image + preprocess_input. Default: the 2048-d average-pooled output of the "
        "last block; --layer NAME: that layer's output, globally average pooled. Writes an .npz with "
        "'features' (N x D float32), 'paths' (N strings) and 'skipped' (unreadable files).",
    )
    p.add_argument("dir", metavar="DIR", help="directory of images (searched recursively)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--weights", default="imagenet", help="registered name or weights file")
    p.add_argument("--layer", default=None, help="take this layer's output (globally average pooled)")
    p.add_argument("--image-size", type=int, default=None, help="square input side (default: the weights' size, 299)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    p.set_defaults(func=_cmd_extract)
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
