"""The argument parser of ``keras-xception``: every option defined once, each command listing the ones it
takes. No TensorFlow here."""

from __future__ import annotations

import argparse

from keras_xception.checks import argtype, fraction, positive_int
from keras_xception.cli import commands, train
from keras_xception.deploy.runtimes import CLI_RUNTIMES, FORMATS, PRECISIONS, RECOMMENDED_CALIBRATION, RUNTIMES
from keras_xception.model.spec import MIN_INPUT_SIZE, OUTPUT_STRIDES

__all__ = ["build_parser", "add_runtime_argument"]

_positive_int = argtype(positive_int)
_image_size = argtype(positive_int, minimum=MIN_INPUT_SIZE)
_fraction = argtype(fraction)


def _weights(text):
    """``--weights``: a registered name or a file; ``none`` (any case) means random weights."""
    return None if text.lower() == "none" else text


_WEIGHTS = "registered name, weights file (.h5, .weights.h5, .keras), or 'none' (random)"
_RUNTIME = (
    f"inference runtime: auto (the fastest installed one), keras (the Keras model, no export step), or one of "
    f"{', '.join(RUNTIMES)} (default: keras in fp32, auto in bf16/int8)"
)
_PRECISION = (
    "fp32 (default); bf16 (OpenVINO) or int8 (OpenVINO with NNCF, or onnxruntime): faster on CPUs with "
    "AVX512_BF16/AMX or VNNI/AMX, slightly different results (measured by `quantize`)"
)
_MODEL = "instead of --weights: a classifier trained by `keras-xception train` (its own classes and transform)"
_SAMPLE = f"int8: the most calibration images used, a random sample of DIR (default {RECOMMENDED_CALIBRATION})"
_STRATEGY = "tf.distribute strategy; multi-worker reads TF_CONFIG (default: default)"

#: The options that several commands take, each defined once: name -> (flag, argparse keywords).
OPTIONS = {
    "weights": ("--weights", dict(type=_weights, default="imagenet", help=f"{_WEIGHTS} (default imagenet)")),
    "model": ("--model", dict(metavar="MODEL.keras", help=_MODEL)),
    "image_size": ("--image-size", dict(type=_image_size, help="square input side (default: the weights', 299)")),
    "batch_size": ("--batch-size", dict(type=_positive_int, default=32, help="images per batch (default 32)")),
    "strict": ("--strict", dict(action="store_true", help="stop at the first unreadable input instead of skipping it")),
    "runtime": ("--runtime", dict(choices=CLI_RUNTIMES, help=_RUNTIME)),
    "precision": ("--precision", dict(choices=PRECISIONS, default="fp32", help=_PRECISION)),
    "calibration": ("--calibration", dict(metavar="DIR", help="int8: folder of images like the ones to be run")),
    "calibration_size": ("--calibration-size", dict(type=_positive_int, default=RECOMMENDED_CALIBRATION, help=_SAMPLE)),
    "strategy": (
        "--strategy",
        dict(choices=("default", "mirrored", "multi-worker"), default="default", help=_STRATEGY),
    ),
    "report": ("--report", dict(metavar="OUT.json", help="write the report as JSON")),
    "json": ("--json", dict(action="store_true", help="print JSON instead of a table")),
    "quiet": ("--quiet", dict(action="store_true", help="no progress bar")),
}
#: Running a model over images: predict, extract, evaluate.
RUN = ("weights", "model", "batch_size", "strict", "runtime", "precision", "calibration")


def add_options(parser, names, **changes) -> None:
    """Add the shared options ``names`` (keys of :data:`OPTIONS`); ``changes``: per name, keywords to override."""
    for name in names:
        flag, kwargs = OPTIONS[name]
        parser.add_argument(flag, **{**kwargs, **changes.get(name, {})})


def add_runtime_argument(parser, default: str | None = None) -> None:
    """``--runtime`` (default ``default``; None: keras in fp32, auto otherwise), ``--precision``, ``--calibration``."""
    add_options(parser, ("runtime", "precision", "calibration"), runtime=dict(default=default))


def _weights_only(p, *names) -> None:
    """Record the options that describe the --weights model, refused with ``--model`` (see commands.check)."""
    p.set_defaults(weights_only={name: p.get_default(name) for name in ("weights", *names)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-xception",
        description="Xception (Chollet, CVPR 2017) for Keras 3: classify, extract, evaluate, export. "
        "Exit status: 0 done, 1 done in part (some inputs unreadable, a download or check failed), "
        "2 usage error.",
    )
    parser.set_defaults(needs_tensorflow=True, weights_only={})
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_predict(sub)
    _add_extract(sub)
    _add_evaluate(sub)
    _add_weights_commands(sub)
    _add_summary(sub)
    _add_export(sub)
    _add_quantize(sub)
    train.add_parser(sub)
    return parser


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="classes of images: ImageNet's, or a trained --model's")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders (default: a sample photo)")
    p.add_argument("--top", type=_positive_int, default=5, help="classes to show per image (default 5)")
    p.add_argument("--cam", metavar="OUT.png", help="also write a Grad-CAM heatmap of each image's top class")
    add_options(
        p, RUN + ("json",), weights=dict(help=f"with the 1000-class ImageNet classifier: {_WEIGHTS} (default imagenet)")
    )
    _weights_only(p, "cam")
    p.set_defaults(func=commands.predict)


def _add_extract(sub) -> None:
    p = sub.add_parser(
        "extract",
        help="feature vectors for every image under a folder, to .npz",
        description="One feature vector per image file under DIR (recursive; JPEG, PNG, GIF, BMP), read "
        "with the model's transform. Default: the average-pooled output of the last block (2048-d); "
        "--layer NAME: that layer's output, globally average pooled. Writes an .npz with 'features' "
        "(N x D float32), 'paths' (N strings) and 'skipped' (unreadable files and folders).",
    )
    p.add_argument("dir", metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--layer", default=None, help="take this layer's output (globally average pooled)")
    add_options(p, RUN + ("image_size",))
    _weights_only(p, "image_size")
    p.set_defaults(func=commands.extract)


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="ImageNet top-1/top-5 (tfds, a folder of validation images, or TFRecords), or a --model's accuracy",
        description="Evaluate on the ImageNet validation set. Data: ILSVRC2012_img_val.tar from "
        "https://image-net.org/download-images (for --tfds-manual-dir, or extracted for --val-dir). "
        "With --model: accuracy, per-class figures and the confusion matrix on --val-dir class folders.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tfds-data-dir", metavar="D", help="tfds data dir (prepared imagenet2012, or where to prepare)")
    src.add_argument("--val-dir", metavar="D", help="folder of ILSVRC2012_val_*.JPEG or of class folders")
    src.add_argument("--tfrecords", metavar="GLOB", help="ImageNet TFRecord shards (image/encoded, image/class/label)")
    p.add_argument("--tfds-manual-dir", metavar="M", help="folder holding ILSVRC2012_img_val.tar (for --tfds-data-dir)")
    p.add_argument("--label-offset", type=int, default=1, help="subtracted from TFRecord labels (default 1)")
    p.add_argument("--limit", type=_positive_int, help="evaluate only the first N images")
    p.add_argument("--crop-pct", type=_fraction, help="central crop fraction (default: the weight set's, 0.875)")
    p.add_argument("--resize-mode", choices=("central", "shorter-side"), help="crop protocol (default: the weights')")
    p.add_argument("--interpolation", choices=("bilinear", "bicubic"), help="resize method (default: the weights')")
    p.add_argument("--per-class", action="store_true", help="add per-class accuracy to the report")
    add_options(p, RUN + ("image_size", "strategy", "report", "quiet"))
    _weights_only(p, "image_size", "crop_pct", "resize_mode", "interpolation", "limit", "tfds_manual_dir", "strategy")
    p.set_defaults(func=commands.evaluate)


def _add_weights_commands(sub) -> None:
    wp = sub.add_parser("weights", help="pretrained weights: list, download, verify, convert")
    wsub = wp.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    p = wsub.add_parser("list", help="registered weight sets and whether they are cached")
    add_options(p, ("json",))
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


def _add_summary(sub) -> None:
    p = sub.add_parser("summary", help="parameters and multiply-accumulates of a variant")
    p.add_argument("--size", type=_image_size, default=299, help="input height and width (default 299)")
    p.add_argument("--no-top", action="store_true", help="without the classifier")
    p.add_argument("--no-residual", dest="residual", action="store_false", help="no residual connections")
    p.add_argument(
        "--intermediate-activation",
        choices=["relu", "elu", "linear"],
        help="activation between depthwise and pointwise convolutions",
    )
    # Plain int/float: Xception's own check names the argument (middle_flow_blocks, width_multiplier).
    p.add_argument("--middle-flow-blocks", type=int, default=8, help="middle-flow blocks (default 8)")
    p.add_argument("--width-multiplier", type=float, default=1.0, help="channel width multiplier (default 1)")
    p.add_argument("--output-stride", type=int, choices=OUTPUT_STRIDES, default=32, help="output stride (default 32)")
    p.add_argument("--ablations", action="store_true", help="table of the paper's ablations and the atrous variants")
    p.add_argument("--layers", action="store_true", help="also list every layer")
    add_options(p, ("json",))
    p.set_defaults(func=commands.summary)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export the model (SavedModel, ONNX, OpenVINO), checked against Keras")
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="artifact format")
    p.add_argument("--out", required=True, help="output: a directory (savedmodel), .onnx or .xml file")
    top = p.add_mutually_exclusive_group()
    top.add_argument("--include-top", action="store_true", default=True, help="keep the classifier (default)")
    top.add_argument("--no-top", dest="include_top", action="store_false", help="the feature extractor (--pooling)")
    p.add_argument(
        "--pooling",
        choices=("avg", "max", "none"),
        default="avg",
        help="global pooling with --no-top (default avg; none: the 4D feature map)",
    )
    p.add_argument("--no-check", action="store_true", help="skip the parity check of the written file")
    add_options(
        p,
        ("weights", "model", "image_size", "precision", "calibration", "calibration_size"),
        image_size=dict(help="input height and width (default 299 with the top, any size without)"),
        precision=dict(choices=("fp32", "int8")),
    )
    _weights_only(p, "image_size", "include_top", "pooling")
    p.set_defaults(func=commands.export)


def _add_quantize(sub) -> None:
    p = sub.add_parser(
        "quantize",
        help="int8 or bf16 model, compared with fp32 on held-out images; written only if it agrees",
        description="Quantize (int8, calibrated on --calibration) or compile in bf16, run the held-out "
        "images through both the float32 Keras model and the reduced-precision one, and report top-1 "
        "agreement, top-5 overlap, max/mean absolute difference of the outputs and the cosine of the "
        "output vectors. The model is written to --out only if top-1 agreement (classifiers) or the mean "
        "cosine (feature models) reaches --min-agreement; exit status 1 otherwise.",
    )
    p.add_argument("--features", action="store_true", help="with --weights: the pooled feature extractor, no top")
    p.add_argument("--holdout", metavar="DIR", required=True, help="folder of other images to compare on")
    p.add_argument("--holdout-size", type=_positive_int, help="the most held-out images used (default all)")
    p.add_argument("--out", help="where to write the model: .xml (OpenVINO) or .onnx (ONNX Runtime)")
    p.add_argument(
        "--min-agreement", type=_fraction, default=0.99, help="the least agreement to write the model (default 0.99)"
    )
    add_options(
        p,
        ("weights", "model", "image_size", "precision", "calibration", "calibration_size", "runtime", "report"),
        model=dict(help="a saved Keras model (e.g. a classifier trained by `keras-xception train`)"),
        precision=dict(choices=("int8", "bf16"), default="int8"),
        runtime=dict(choices=("auto", "openvino", "onnxruntime"), default="auto", help="default auto"),
    )
    _weights_only(p, "image_size", "features")
    p.set_defaults(func=commands.quantize)


def _add_weights(p, what=_WEIGHTS):
    """``--weights`` for cli/train.py (the train command)."""
    add_options(p, ("weights",), weights=dict(help=f"{what} (default imagenet)"))
