"""The argument parser of ``keras-xception``: the shared options defined once, each command listing the ones it
takes (the reference is docs/*.md). No TensorFlow here."""

from __future__ import annotations

import argparse

from keras_xception.checks import argtype, fraction, positive_int
from keras_xception.cli import commands
from keras_xception.deploy.runtimes import CLI_RUNTIMES, EXPORT_FORMATS, PRECISIONS, RECOMMENDED_CALIBRATION
from keras_xception.model.spec import ARCHITECTURES, MIN_INPUT_SIZE, OUTPUT_STRIDES
from keras_xception.tasks.options import STRATEGIES, add_arguments

__all__ = ["build_parser", "add_runtime_argument", "add_options"]

_positive_int = argtype(positive_int)
_image_size = argtype(positive_int, minimum=MIN_INPUT_SIZE)
_fraction = argtype(fraction)


def _weights(text):
    """``--weights``: a registered name or a file; ``none`` (any case) means random weights."""
    return None if text.lower() == "none" else text


#: The options that several commands take, each defined once: name -> (flag, argparse keywords).
OPTIONS = {
    "weights": ("--weights", dict(type=_weights, default="imagenet", help="registered name, file, or 'none'")),
    "model": ("--model", dict(metavar="MODEL.keras", help="instead of --weights: a classifier from `train`")),
    "arch": (
        "--arch",
        dict(choices=list(ARCHITECTURES), help="architecture (default: the --weights' own, else xception)"),
    ),
    "image_size": ("--image-size", dict(type=_image_size, help="square input side (default: the weights')")),
    "batch_size": ("--batch-size", dict(type=_positive_int, default=32, help="images per batch")),
    "strict": ("--strict", dict(action="store_true", help="stop at the first unreadable input")),
    "runtime": ("--runtime", dict(choices=CLI_RUNTIMES, help="inference runtime (unset: keras in fp32, else auto)")),
    "precision": ("--precision", dict(choices=PRECISIONS, default="fp32", help="numeric precision of the run")),
    "calibration": ("--calibration", dict(metavar="DIR", help="int8: images like the ones to be run")),
    "calibration_size": (
        "--calibration-size",
        dict(type=_positive_int, default=RECOMMENDED_CALIBRATION, help="int8: the most calibration images used"),
    ),
    "strategy": ("--strategy", dict(choices=STRATEGIES, default="default", help="tf.distribute strategy")),
    "report": ("--report", dict(metavar="OUT.json", help="write the report as JSON")),
    "json": ("--json", dict(action="store_true", help="print JSON instead of a table")),
    "quiet": ("--quiet", dict(action="store_true", help="no progress output")),
}
#: Running a model over images: predict, extract, evaluate.
RUN = ("weights", "arch", "model", "batch_size", "strict", "runtime", "precision", "calibration")


def add_options(parser, names, **changes) -> None:
    """Add the shared options ``names`` (keys of :data:`OPTIONS`); ``changes``: per name, keywords to override."""
    for name in names:
        flag, kwargs = OPTIONS[name]
        parser.add_argument(flag, **{**kwargs, **changes.get(name, {})})


def add_runtime_argument(parser, default: str | None = None) -> None:
    """``--runtime`` (default ``default``; None: keras in fp32, auto otherwise), ``--precision``, ``--calibration``."""
    add_options(parser, ("runtime", "precision", "calibration"), runtime=dict(default=default))


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's ``(default: X)`` after an option's help, unless X is None, empty, a flag's or named by the help."""

    def _get_help_string(self, action):
        if not action.default or isinstance(action.default, bool) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _command(sub, name, help, func, options=(), **changes):
    """A command's parser, running ``func``, with the shared ``options`` (``changes``: see :func:`add_options`)."""
    p = sub.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)
    add_options(p, options, **changes)
    p.set_defaults(func=func)
    return p


def _weights_only(p, *names) -> None:
    """Record the options that describe the --weights model, refused with ``--model`` (see commands.check)."""
    p.set_defaults(weights_only={name: p.get_default(name) for name in ("weights", "arch", *names)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-xception",
        description="Xception for Keras 3: classify, extract, evaluate, train, export. "
        "Exit status: 0 done, 1 done in part, 2 usage error.",
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
    _add_train(sub)
    return parser


def _add_predict(sub) -> None:
    p = _command(sub, "predict", "classes of images: ImageNet's, or a --model's", commands.predict, RUN + ("json",))
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders (default: a sample photo)")
    p.add_argument("--top", type=_positive_int, default=5, help="classes per image")
    p.add_argument("--cam", metavar="OUT.png", help="also write Grad-CAM heatmaps of the top classes")
    _weights_only(p, "cam")


def _add_extract(sub) -> None:
    p = _command(sub, "extract", "feature vectors of images, to .npz", commands.extract, RUN + ("image_size",))
    p.add_argument("dir", metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--layer", help="this layer's output, globally average pooled")
    _weights_only(p, "image_size")


def _add_evaluate(sub) -> None:
    options = RUN + ("image_size", "strategy", "report", "quiet")
    p = _command(sub, "evaluate", "ImageNet top-1/top-5, or a --model's accuracy", commands.evaluate, options)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tfds-data-dir", metavar="D", help="tfds data dir of imagenet2012")
    src.add_argument("--val-dir", metavar="D", help="folder of ILSVRC2012_val_*.JPEG or of class folders")
    src.add_argument("--tfrecords", metavar="GLOB", help="ImageNet TFRecord shards")
    p.add_argument("--tfds-manual-dir", metavar="M", help="folder holding ILSVRC2012_img_val.tar")
    p.add_argument("--label-offset", type=int, default=1, help="subtracted from TFRecord labels")
    p.add_argument("--limit", type=_positive_int, help="evaluate only the first N images")
    p.add_argument("--crop-pct", type=_fraction, help="central crop fraction (default: the weights')")
    p.add_argument("--resize-mode", choices=("central", "shorter-side"), help="crop protocol")
    p.add_argument("--interpolation", choices=("bilinear", "bicubic"), help="resize method")
    p.add_argument("--per-class", action="store_true", help="add per-class accuracy to the report")
    _weights_only(p, "image_size", "crop_pct", "resize_mode", "interpolation", "limit", "tfds_manual_dir", "strategy")


def _add_weights_commands(sub) -> None:
    wp = sub.add_parser("weights", help="pretrained weights: list, download, verify, convert")
    wsub = wp.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    p = _command(wsub, "list", "registered weight sets and whether they are cached", commands.weights_list, ["json"])
    p.set_defaults(needs_tensorflow=False)
    p = _command(wsub, "download", "download and verify into the Keras cache", commands.weights_download)
    p.add_argument("names", nargs="*", help="registered names (default: imagenet, imagenet_notop)")
    p.add_argument("--force", action="store_true", help="download even if cached")
    p.set_defaults(needs_tensorflow=False)
    p = _command(wsub, "verify", "check cached files' hashes, or that given files load", commands.weights_verify)
    p.add_argument("names", nargs="*", help="registered names (default: all, unless --file is given)")
    p.add_argument("--file", action="append", default=[], help="a weights file to load (repeatable)")
    p = _command(wsub, "convert", "convert weights to .weights.h5 or legacy .h5", commands.weights_convert)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--format", default="weights.h5", choices=["weights.h5", "legacy-h5"])


def _add_summary(sub) -> None:
    p = _command(sub, "summary", "parameters and multiply-accumulates of a variant", commands.summary, ["arch", "json"])
    p.add_argument("--size", type=_image_size, default=299, help="input height and width")
    p.add_argument("--no-top", action="store_true", help="without the classifier")
    p.add_argument("--no-residual", dest="residual", action="store_false", help="no residual connections")
    p.add_argument("--intermediate-activation", choices=["relu", "elu", "linear"], help="between the convolutions")
    # Plain int/float: Xception's own check names the argument (middle_flow_blocks, width_multiplier).
    p.add_argument("--middle-flow-blocks", type=int, default=8, help="middle-flow blocks")
    p.add_argument("--width-multiplier", type=float, default=1.0, help="channel width multiplier")
    p.add_argument("--output-stride", type=int, choices=OUTPUT_STRIDES, default=32, help="output stride")
    p.add_argument("--ablations", action="store_true", help="the paper's ablations and the atrous variants")
    p.add_argument("--layers", action="store_true", help="also list every layer")


def _add_export(sub) -> None:
    options = ("weights", "arch", "model", "image_size", "precision", "calibration", "calibration_size")
    what = "SavedModel, ONNX, OpenVINO, LiteRT or KerasHub preset, checked against Keras"
    p = _command(sub, "export", what, commands.export, options, precision=dict(choices=("fp32", "int8")))
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="artifact format")
    p.add_argument("--out", required=True, help="a directory (savedmodel, keras-hub), .onnx, .xml or .tflite file")
    top = p.add_mutually_exclusive_group()
    top.add_argument("--include-top", action="store_true", default=True, help="keep the classifier (default)")
    top.add_argument("--no-top", dest="include_top", action="store_false", help="the feature extractor")
    p.add_argument("--pooling", choices=("avg", "max", "none"), default="avg", help="pooling with --no-top")
    p.add_argument("--no-check", action="store_true", help="skip the parity check of the written file")
    _weights_only(p, "image_size", "include_top", "pooling")


def _add_quantize(sub) -> None:
    options = ("weights", "arch", "model", "image_size", "precision", "calibration", "calibration_size", "runtime")
    options += ("report",)
    changes = dict(
        model=dict(help="a saved Keras model"),
        precision=dict(choices=("int8", "bf16"), default="int8"),
        runtime=dict(choices=("auto", "openvino", "onnxruntime", "litert"), default="auto"),
    )
    what = "int8 or bf16 model, written only if it agrees with fp32"
    p = _command(sub, "quantize", what, commands.quantize, options, **changes)
    p.add_argument("--features", action="store_true", help="with --weights: the pooled feature extractor")
    p.add_argument("--holdout", metavar="DIR", required=True, help="folder of other images to compare on")
    p.add_argument("--holdout-size", type=_positive_int, help="the most held-out images used")
    p.add_argument("--out", help="where to write the model: .xml (OpenVINO), .onnx (ONNX Runtime) or .tflite")
    p.add_argument("--min-agreement", type=_fraction, default=0.99, help="the least agreement to write the model")
    _weights_only(p, "image_size", "features")


def _add_train(sub) -> None:
    p = _command(sub, "train", "train a classifier on class folders", commands.train, ("weights", "arch", "quiet"))
    p.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder of images per class")
    p.add_argument("--out", required=True, metavar="MODEL.keras", help="the trained classifier")
    add_arguments(p)  # from keras_xception.tasks.options.TrainOptions
