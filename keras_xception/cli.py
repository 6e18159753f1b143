"""The ``keras-xception`` command line.

Subcommands:

* ``predict IMAGE... [--top K] [--weights W] [--json] [--cam OUT.png] [--runtime R]``: top-k
  ImageNet classes per image (with no image: a sample photo shipped with
  matplotlib); ``--cam`` also writes a Grad-CAM heatmap for the top class.
* ``extract DIR --out features.npz [--weights W] [--layer NAME] [--image-size N]
  [--batch-size N]``: one feature vector per image file under DIR.
* ``weights list|download|verify|convert``: the pretrained weight registry and
  its cache.
* ``summary [variant options] [--ablations] [--layers] [--json]``: parameters and
  multiply-accumulates of the official model or an architecture variant.
* ``evaluate (--tfds-data-dir D | --val-dir D | --tfrecords GLOB) ...``: ImageNet
  top-1/top-5 with a progress bar and a JSON report (see ``_cmd_evaluate``).
* ``export --format F --out PATH [--weights W] [--image-size N] [--no-top]``:
  write a SavedModel / ONNX / OpenVINO model, checked against Keras.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from keras_xception.deploy.runtimes import CLI_RUNTIMES, FORMATS, RUNTIMES
from keras_xception.model.spec import MIN_INPUT_SIZE

__all__ = ["main", "sample_image"]


def sample_image() -> str:
    """Path of a sample photo that an installed dependency ships (matplotlib's Grace Hopper)."""
    import matplotlib.cbook

    return str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def _cmd_predict(args) -> int:
    import numpy as np

    from keras_xception.data.transform import load_image, resolve_transform
    from keras_xception.deploy.predictor import predict_function
    from keras_xception.model.imagenet import decode_predictions
    from keras_xception.xception import Xception

    paths = args.images or [sample_image()]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"keras-xception predict: no such file: {', '.join(missing)}")
    _check_out_dir(args.cam, "--cam")
    model = Xception(weights=args.weights)
    transform = resolve_transform(args.weights, model=model)
    images = [load_image(path, transform) for path in paths]
    x = transform.preprocess(np.stack(images))
    preds = predict_function(model, args.runtime)(x)
    tops = decode_predictions(preds, top=args.top)
    results = [{"path": path, "top": top} for path, top in zip(paths, tops)]
    if args.cam:
        from keras_xception.tasks.gradcam import save_cam_figure

        panels = [
            _cam_panel(model, image, x[i : i + 1], preds[i : i + 1], tops[i][0], path)
            for i, (path, image) in enumerate(zip(paths, images))
        ]
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


def _cmd_weights_list(args) -> int:
    from keras_xception import pretrained as w

    rows = []
    for r in w.list_records():
        path = w.cached_path(r)
        rows.append(dict(r.to_dict(), cached=os.path.isfile(path), cache_path=path))
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'name':<18} {'top':<5} {'top1':>6} {'top5':>6}  {'cached':<7} file")
    for r in rows:
        acc = lambda v: f"{v:.3f}" if v is not None else "-"
        print(
            f"{r['name']:<18} {str(r['include_top']):<5} {acc(r['top1']):>6} {acc(r['top5']):>6}  "
            f"{'yes' if r['cached'] else 'no':<7} {r['file_name']}"
        )
    print(f"cache: {w.cache_dir()}   mirror: ${w.MIRROR_ENV}={os.environ.get(w.MIRROR_ENV, '')}")
    return 0


def _cmd_weights_download(args) -> int:
    from keras_xception import pretrained as w

    for name in args.names or ["imagenet", "imagenet_notop"]:
        path = w.get_file(name, force_download=args.force)
        print(f"{name}: {path}")
    return 0


def _cmd_weights_verify(args) -> int:
    from keras_xception import pretrained as w

    failed = 0
    for name in args.names or [r.name for r in w.list_records()]:
        r = w.get_record(name)
        path = w.cached_path(r)
        if not os.path.isfile(path):
            status = "MISSING (run: keras-xception weights download " + name + ")"
            failed += 1
        elif w.verify_file(path, r):
            status = f"OK ({r.hash_algorithm} {r.file_hash})"
        else:
            digest = w.file_digest(path, r.hash_algorithm)
            status = f"MISMATCH ({r.hash_algorithm} {digest}, expected {r.file_hash})"
            failed += 1
        print(f"{name}: {status}  {path}")
    for path in args.file or []:
        if not os.path.isfile(path):
            raise ValueError(f"No such file: {path!r}.")
        _, top = w.xception_from_file(path)
        print(
            f"{path}: loads into Xception(include_top={top}); "
            f"sha256 {w.file_digest(path, 'sha256')}  md5 {w.file_digest(path, 'md5')}"
        )
    return 1 if failed else 0


def _cmd_weights_convert(args) -> int:
    from keras_xception import pretrained as w

    _, top = w.convert_weights(args.src, args.dst, format=args.format)
    print(
        f"wrote {args.dst} ({args.format}, include_top={top}); sha256 "
        f"{w.file_digest(args.dst, 'sha256')}"
    )
    return 0


def _variant_label(kw) -> str:
    return ", ".join(f"{k}={v}" for k, v in kw.items()) or "official"


def _cmd_summary(args) -> int:
    from keras_xception.model import analysis
    from keras_xception.xception import Xception

    if args.ablations:
        variants = [dict(**kw) for kw in analysis.ABLATIONS]
    else:
        kw = dict(
            residual=args.residual,
            intermediate_activation=args.intermediate_activation,
            middle_flow_blocks=args.middle_flow_blocks,
            width_multiplier=args.width_multiplier,
            output_stride=args.output_stride,
        )
        defaults = dict(residual=True, intermediate_activation=None, middle_flow_blocks=8, width_multiplier=1.0, output_stride=32)
        variants = [{k: v for k, v in kw.items() if v != defaults[k]}]
    rows, models = [], []
    for kw in variants:
        model = Xception(weights=None, include_top=not args.no_top, input_shape=(args.size, args.size, 3), **kw)
        row = analysis.summary(model)
        row["name"] = _variant_label(kw)
        rows.append(row)
        models.append(model)
    if args.json:
        out = [dict(r, input_shape=list(r["input_shape"]), output_shape=list(r["output_shape"])) for r in rows]
        if args.layers:
            for r, m in zip(out, models):
                r["layers"] = [dict(c.__dict__, output_shape=list(c.output_shape)) for c in analysis.layer_costs(m)]
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    if args.layers:
        for r, m in zip(rows, models):
            print(f"{r['name']}:")
            print(f"  {'layer':<36} {'class':<20} {'output':>18} {'params':>10} {'MMACs':>10}")
            for c in analysis.layer_costs(m):
                shape = "x".join(str(d) for d in c.output_shape[1:])
                print(f"  {c.name:<36} {c.class_name:<20} {shape:>18} {c.params:>10} {c.macs / 1e6:>10.2f}")
    print(analysis.format_summary(rows))
    return 0


def _cmd_evaluate(args) -> int:
    """ImageNet top-1/top-5 of an Xception weight set over one of the three data sources."""
    from keras_xception.tasks import evaluation

    # The strategy first: multi-worker must be set up before TensorFlow runs anything.
    strategy = evaluation.make_strategy(args.strategy)
    from keras_xception.data import imagenet as data
    from keras_xception.data.transform import resolve_transform
    from keras_xception.xception import Xception

    size = args.image_size
    transform = resolve_transform(
        args.weights,
        target_size=size,
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
        runtime=args.runtime,
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


def _image_size(text):
    """``--image-size``/``--size``: an integer of at least Xception's minimum input side."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < MIN_INPUT_SIZE:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= {MIN_INPUT_SIZE} (the smallest input Xception accepts), received {text!r}"
        )
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], received {text!r}")
    return value


def _check_out_dir(path, flag):
    """A clear error up front (not after the work) when an output file's folder is missing."""
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise ValueError(f"{flag}: the folder {folder!r} of {path!r} does not exist.")


def _cam_panel(model, image, x, preds, top1, path):
    """(image, Grad-CAM heatmap of the top class, title) for one image."""
    import numpy as np

    from keras_xception.tasks.gradcam import grad_cam

    heatmap, _ = grad_cam(model, x, class_index=int(np.argmax(preds[0])))
    _, name, score = top1
    return image, heatmap, f"{os.path.basename(path)}: {name} ({score:.3g})"


def _cmd_extract(args) -> int:
    from keras_xception.tasks.extraction import extract_features, save_features

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
        runtime=args.runtime,
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


def _cmd_export(args) -> int:
    from keras_xception.deploy.export import ParityError, export
    from keras_xception.xception import Xception

    weights = None if args.weights.lower() == "none" else args.weights
    shape = None
    if args.image_size is not None:
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


def add_runtime_argument(parser, default: str = "keras") -> None:
    """``--runtime {auto,keras,openvino,onnxruntime,tensorflow}`` for predict, extract and evaluate."""
    parser.add_argument(
        "--runtime",
        default=default,
        choices=CLI_RUNTIMES,
        help=f"inference runtime: auto (the fastest installed one), keras (the Keras model, "
        f"no export step), or one of {', '.join(RUNTIMES)} (default {default})",
    )


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
    add_runtime_argument(p, default="keras")
    p.set_defaults(func=_cmd_predict)

    wp = sub.add_parser("weights", help="pretrained weights: list, download, verify, convert")
    wsub = wp.add_subparsers(dest="weights_command", required=True)
    p = wsub.add_parser("list", help="registered weight sets and whether they are cached")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_weights_list)
    p = wsub.add_parser("download", help="download and verify into the Keras cache")
    p.add_argument("names", nargs="*", help="registered names (default: imagenet, imagenet_notop)")
    p.add_argument("--force", action="store_true", help="download even if cached")
    p.set_defaults(func=_cmd_weights_download)
    p = wsub.add_parser("verify", help="check cached files' hashes, or that a file loads")
    p.add_argument("names", nargs="*", help="registered names (default: all)")
    p.add_argument("--file", action="append", help="a weights file to check by loading it")
    p.set_defaults(func=_cmd_weights_verify)
    p = wsub.add_parser("convert", help="convert .h5/.weights.h5/.keras to .weights.h5 or legacy .h5")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--format", default="weights.h5", choices=["weights.h5", "legacy-h5"])
    p.set_defaults(func=_cmd_weights_convert)

    p = sub.add_parser("summary", help="parameters and multiply-accumulates of a variant")
    p.add_argument("--size", type=_image_size, default=299, help="input height and width (default 299)")
    p.add_argument("--no-top", action="store_true", help="without the classifier")
    p.add_argument("--no-residual", dest="residual", action="store_false", help="no residual connections")
    p.add_argument("--intermediate-activation", choices=["relu", "elu", "linear"], default=None,
                   help="activation between depthwise and pointwise convolutions")
    p.add_argument("--middle-flow-blocks", type=int, default=8, help="middle-flow blocks (default 8)")
    p.add_argument("--width-multiplier", type=float, default=1.0, help="channel width multiplier (default 1)")
    p.add_argument("--output-stride", type=int, choices=[32, 16, 8], default=32, help="output stride (default 32)")
    p.add_argument("--ablations", action="store_true", help="table of the paper's ablations and the atrous variants")
    p.add_argument("--layers", action="store_true", help="also list every layer")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_summary)

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
    p.add_argument("--image-size", type=_image_size, help="input size (default: the weight set's, 299)")
    p.add_argument("--crop-pct", type=_fraction, help="central crop fraction (default: the weight set's, 0.875)")
    p.add_argument("--resize-mode", choices=("central", "shorter-side"), help="crop protocol (default: central)")
    p.add_argument("--interpolation", choices=("bilinear", "bicubic"), help="resize method (default: bilinear)")
    p.add_argument("--strategy", choices=("default", "mirrored", "multi-worker"), default="default",
                   help="tf.distribute strategy; multi-worker reads TF_CONFIG (default: default)")
    p.add_argument("--strict", action="store_true", help="fail on an undecodable image instead of skipping it")
    p.add_argument("--per-class", action="store_true", help="add per-class accuracy to the report")
    p.add_argument("--report", metavar="OUT.json", help="write the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_runtime_argument(p, default="keras")
    p.set_defaults(func=_cmd_evaluate)

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
    p.add_argument("--image-size", type=_image_size, default=None, help="square input side (default: the weights' size, 299)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    add_runtime_argument(p, default="keras")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("export", help="export the model (SavedModel, ONNX, OpenVINO), checked against Keras")
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="artifact format")
    p.add_argument("--out", required=True, help="output: a directory (savedmodel), .onnx or .xml file")
    p.add_argument("--weights", default="imagenet", help="registered name, weights file, or 'none' (random)")
    p.add_argument("--image-size", type=_image_size, default=None,
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
    from keras_xception.pretrained.download import WeightsDownloadError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed by argparse)
        return e.code
    try:
        return args.func(args)
    except (ValueError, WeightsDownloadError) as e:  # our errors say what is wrong and what to do
        print(f"keras-xception {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
