"""The argument parser of ``keras-xception``: options, their types and help. No TensorFlow here."""

from __future__ import annotations

import argparse

from keras_xception.cli import commands, train
from keras_xception.deploy.runtimes import CLI_RUNTIMES, FORMATS, PRECISIONS, RECOMMENDED_CALIBRATION, RUNTIMES
from keras_xception.model.spec import MIN_INPUT_SIZE, OUTPUT_STRIDES

__all__ = ["build_parser", "add_runtime_argument", "add_precision_arguments"]


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def _image_size(text):
    """An input side: an integer of at least Xception's minimum."""
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


def _weights(text):
    """``--weights``: a registered name or a file; ``none`` (any case) means random weights."""
    return None if text.lower() == "none" else text


def add_runtime_argument(parser, default: str | None = None) -> None:
    """``--runtime {auto,keras,openvino,onnxruntime,tensorflow}`` and ``--precision``/``--calibration``
    for predict, extract and evaluate. ``default=None``: keras in fp32, auto otherwise (see commands.runtime_of)."""
    parser.add_argument(
        "--runtime",
        default=default,
        choices=CLI_RUNTIMES,
        help=f"inference runtime: auto (the fastest installed one), keras (the Keras model, no export "
        f"step), or one of {', '.join(RUNTIMES)} (default: keras in fp32, auto in bf16/int8)",
    )
    add_precision_arguments(parser, PRECISIONS)


def add_precision_arguments(parser, choices, calibration_size=False, default="fp32") -> None:
    """``--precision`` (one of ``choices``), ``--calibration`` and, optionally, ``--calibration-size``."""
    parser.add_argument(
        "--precision",
        choices=choices,
        default=default,
        help=f"default {default}. fp32; bf16 (OpenVINO) or int8 (OpenVINO with NNCF, or onnxruntime): faster on CPUs "
        "with AVX512_BF16/AMX or VNNI/AMX, slightly different results (measure them: keras-xception quantize)",
    )
    parser.add_argument(
        "--calibration",
        metavar="DIR",
        help="int8: folder of images like the ones to be run (about 300; read with the model's transform)",
    )
    if calibration_size:
        parser.add_argument(
            "--calibration-size",
            type=_positive_int,
            default=RECOMMENDED_CALIBRATION,
            help=f"int8: the most calibration images used, a random sample of DIR (default {RECOMMENDED_CALIBRATION})",
        )


def _add_weights(p, what="registered name, weights file (.h5, .weights.h5, .keras), or 'none' (random)"):
    p.add_argument("--weights", type=_weights, default="imagenet", help=f"{what} (default imagenet)")


def _add_files(p):
    p.add_argument("--batch-size", type=_positive_int, default=32, help="images per forward pass (default 32)")
    p.add_argument(
        "--strict", action="store_true", help="stop at the first unreadable image or folder instead of skipping it"
    )
    add_runtime_argument(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-xception",
        description="Xception (Chollet, CVPR 2017) for Keras 3: classify, extract, evaluate, export. "
        "Exit status: 0 done, 1 done in part (some inputs unreadable, a download or check failed), "
        "2 usage error.",
    )
    parser.set_defaults(needs_tensorflow=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("predict", help="ImageNet classes of images (default: a sample photo)")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders (default: a sample photo)")
    p.add_argument("--top", type=_positive_int, default=5, help="classes to show per image (default 5)")
    _add_weights(p, "registered name or weights file with the 1000-class ImageNet classifier, or 'none'")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--cam", metavar="OUT.png", help="also write a Grad-CAM heatmap of each image's top class")
    _add_files(p)
    p.set_defaults(func=commands.predict)

    p = sub.add_parser(
        "extract",
        help="feature vectors for every image under a folder, to .npz",
        description="One feature vector per image file under DIR (recursive; JPEG, PNG, GIF, BMP), read "
        "with the weights' transform. Default: the average-pooled output of the last block (2048-d); "
        "--layer NAME: that layer's output, globally average pooled. Writes an .npz with 'features' "
        "(N x D float32), 'paths' (N strings) and 'skipped' (unreadable files and folders).",
    )
    p.add_argument("dir", metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output .npz file")
    _add_weights(p)
    p.add_argument("--layer", default=None, help="take this layer's output (globally average pooled)")
    p.add_argument(
        "--image-size", type=_image_size, default=None, help="square input side (default: the weights', 299)"
    )
    _add_files(p)
    p.set_defaults(func=commands.extract)

    p = sub.add_parser(
        "evaluate",
        help="ImageNet top-1/top-5 (tfds, a folder of validation images, or TFRecords)",
        description="Evaluate on the ImageNet validation set. Data: ILSVRC2012_img_val.tar from "
        "https://image-net.org/download-images (for --tfds-manual-dir, or extracted for --val-dir).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--tfds-data-dir", metavar="D", help="tfds data dir (prepared imagenet2012, or where to prepare it)"
    )
    src.add_argument("--val-dir", metavar="D", help="folder of ILSVRC2012_val_*.JPEG or of n0xxxxxxx/ class folders")
    src.add_argument(
        "--tfrecords", metavar="GLOB", help="classic ImageNet TFRecord shards (image/encoded, image/class/label)"
    )
    p.add_argument(
        "--tfds-manual-dir", metavar="M", help="folder holding ILSVRC2012_img_val.tar (prepares --tfds-data-dir)"
    )
    p.add_argument(
        "--label-offset", type=int, default=1, help="subtracted from TFRecord labels (default 1: 1-based labels)"
    )
    _add_weights(p)
    p.add_argument("--limit", type=_positive_int, help="evaluate only the first N images")
    p.add_argument("--image-size", type=_image_size, help="input size (default: the weight set's, 299)")
    p.add_argument("--crop-pct", type=_fraction, help="central crop fraction (default: the weight set's, 0.875)")
    p.add_argument(
        "--resize-mode", choices=("central", "shorter-side"), help="crop protocol (default: the weight set's)"
    )
    p.add_argument("--interpolation", choices=("bilinear", "bicubic"), help="resize method (default: the weight set's)")
    p.add_argument(
        "--strategy",
        choices=("default", "mirrored", "multi-worker"),
        default="default",
        help="tf.distribute strategy; multi-worker reads TF_CONFIG (default: default)",
    )
    p.add_argument("--per-class", action="store_true", help="add per-class accuracy to the report")
    p.add_argument("--report", metavar="OUT.json", help="write the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_files(p)
    p.set_defaults(func=commands.evaluate)

    wp = sub.add_parser("weights", help="pretrained weights: list, download, verify, convert")
    wsub = wp.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    p = wsub.add_parser("list", help="registered weight sets and whether they are cached")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=commands.weights_list, needs_tensorflow=False)
    p = wsub.add_parser("download", help="download and verify into the Keras cache")
    p.add_argument("names", nargs="*", help="registered names (default: imagenet, imagenet_notop)")
    p.add_argument("--force", action="store_true", help="download even if cached")
    p.set_defaults(func=commands.weights_download, needs_tensorflow=False)
    p = wsub.add_parser("verify", help="check cached files' hashes, or that given files load")
    p.add_argument("names", nargs="*", help="registered names (default: all of them, unless --file is given)")
    p.add_argument("--file", action="append", default=[], help="a weights file to check by loading it (repeatable)")
    p.set_defaults(func=commands.weights_verify)
    p = wsub.add_parser("convert", help="convert .h5/.weights.h5/.keras to .weights.h5 or legacy .h5")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--format", default="weights.h5", choices=["weights.h5", "legacy-h5"])
    p.set_defaults(func=commands.weights_convert)

    p = sub.add_parser("summary", help="parameters and multiply-accumulates of a variant")
    p.add_argument("--size", type=_image_size, default=299, help="input height and width (default 299)")
    p.add_argument("--no-top", action="store_true", help="without the classifier")
    p.add_argument("--no-residual", dest="residual", action="store_false", help="no residual connections")
    p.add_argument(
        "--intermediate-activation",
        choices=["relu", "elu", "linear"],
        default=None,
        help="activation between depthwise and pointwise convolutions",
    )
    p.add_argument("--middle-flow-blocks", type=int, default=8, help="middle-flow blocks (default 8)")
    p.add_argument("--width-multiplier", type=float, default=1.0, help="channel width multiplier (default 1)")
    p.add_argument("--output-stride", type=int, choices=OUTPUT_STRIDES, default=32, help="output stride (default 32)")
    p.add_argument("--ablations", action="store_true", help="table of the paper's ablations and the atrous variants")
    p.add_argument("--layers", action="store_true", help="also list every layer")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=commands.summary)

    p = sub.add_parser("export", help="export the model (SavedModel, ONNX, OpenVINO), checked against Keras")
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="artifact format")
    p.add_argument("--out", required=True, help="output: a directory (savedmodel), .onnx or .xml file")
    _add_weights(p)
    p.add_argument(
        "--image-size",
        type=_image_size,
        default=None,
        help="input height and width (default 299 with the top, any size without)",
    )
    top = p.add_mutually_exclusive_group()
    top.add_argument(
        "--include-top",
        dest="include_top",
        action="store_true",
        default=True,
        help="keep the 1000-class classifier (default)",
    )
    top.add_argument(
        "--no-top", dest="include_top", action="store_false", help="export the feature extractor (see --pooling)"
    )
    p.add_argument(
        "--pooling",
        choices=("avg", "max", "none"),
        default="avg",
        help="global pooling with --no-top (default avg; none: the 4D feature map)",
    )
    p.add_argument("--no-fold-bn", action="store_true", help="keep BatchNormalization layers as they are")
    p.add_argument("--no-check", action="store_true", help="skip the parity check of the written file")
    add_precision_arguments(p, ("fp32", "int8"), calibration_size=True)
    p.set_defaults(func=commands.export)

    p = sub.add_parser(
        "quantize",
        help="int8 or bf16 model, compared with fp32 on held-out images; written only if it agrees",
        description="Quantize (int8, calibrated on --calibration) or compile in bf16, run the held-out "
        "images through both the float32 Keras model and the reduced-precision one, and report top-1 "
        "agreement, top-5 overlap, max/mean absolute difference of the outputs and the cosine of the "
        "output vectors. The model is written to --out only if top-1 agreement (classifiers) or the mean "
        "cosine (feature models) reaches --min-agreement; exit status 1 otherwise.",
    )
    model = p.add_mutually_exclusive_group()
    _add_weights(model)
    model.add_argument("--model", metavar="M.keras", help="a saved Keras model (e.g. a transfer-learned classifier)")
    p.add_argument("--features", action="store_true", help="with --weights: the pooled feature extractor, no top")
    p.add_argument("--image-size", type=_image_size, default=None, help="with --weights: input side (default 299)")
    add_precision_arguments(p, ("int8", "bf16"), calibration_size=True, default="int8")
    p.add_argument("--holdout", metavar="DIR", required=True, help="folder of other images to compare on")
    p.add_argument("--holdout-size", type=_positive_int, help="the most held-out images used (default all)")
    p.add_argument("--out", help="where to write the model: .xml (OpenVINO) or .onnx (ONNX Runtime)")
    p.add_argument("--runtime", choices=("auto", "openvino", "onnxruntime"), default="auto", help="default auto")
    p.add_argument(
        "--min-agreement", type=_fraction, default=0.99, help="the least agreement to write the model (default 0.99)"
    )
    p.add_argument("--report", metavar="OUT.json", help="write the report as JSON")
    p.set_defaults(func=commands.quantize)
    train.add_parser(sub)
    _add_model_option(sub)
    return parser


def _add_model_option(sub) -> None:
    """``--model`` (a classifier trained by ``keras-xception train``) for predict, extract, evaluate and export."""
    uses = {
        "predict": ("its class names (top-k)", commands.predict_model),
        "extract": ("its backbone's pooled features", commands.extract_model),
        "evaluate": (
            "accuracy, per-class figures and the confusion matrix on --val-dir class folders",
            commands.evaluate_model,
        ),
        "export": ("the classifier, with its transform and class names beside it", commands.export_model),
    }
    for name, (what, run) in uses.items():
        p = sub.choices[name]
        p.add_argument("--model", metavar="MODEL.keras", help=f"a classifier trained by `keras-xception train`: {what}")
        p.set_defaults(func=commands.with_model(p.get_default("func"), run))
