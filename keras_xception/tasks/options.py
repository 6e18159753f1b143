"""The options of :func:`~keras_xception.tasks.training.train`, written once: :class:`TrainOptions`.

Each field carries its default, its check and its help text; ``train()``'s signature, the command's
options (:func:`add_arguments`) and the report's ``settings`` derive from it. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses

from keras_xception import checks
from keras_xception.checks import keras_path, path
from keras_xception.model.spec import ARCHITECTURES, MIN_INPUT_SIZE
from keras_xception.pretrained.registry import imagenet_of

__all__ = ["TrainOptions", "add_arguments", "keras_path", "STRATEGIES"]

STRATEGIES = ("default", "mirrored", "multi-worker")


def _epochs(value, name):
    if value == "auto":
        return value
    try:
        return checks.positive_int(value, name)
    except ValueError:
        raise ValueError(f"`{name}` must be a positive integer or 'auto'; received {name}={value!r}.") from None


def _class_weight(value, name):
    if value is not None and value != "balanced" and not isinstance(value, dict):
        raise ValueError(f"`{name}` must be None, 'balanced' or a dict; received {name}={value!r}.")
    return value


def _option(default, check, help=None, **cli):
    """A field: its default, its check, and (with ``help``) its command-line option (``cli``: argparse extras)."""
    return dataclasses.field(default=default, metadata=dict(check=check, help=help, cli=cli))


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """The keyword arguments of :func:`~keras_xception.tasks.training.train`, checked (``ValueError`` naming one)."""

    val_dir: object = _option(None, path, "validation images in class folders named like DATA_DIR's", metavar="DIR")
    val_split: float = _option(
        0.2, lambda v, n: checks.fraction(v, n, high_open=True), "fraction of each class held out for validation"
    )
    weights: object = _option(
        "imagenet", lambda v, n: v if v is None or isinstance(v, str) else path(v, n)
    )  # the command line's --weights is the shared one
    arch: object = _option(None, lambda v, n: v if v is None else checks.one_of(v, n, tuple(ARCHITECTURES)))  # --arch
    backbone: object = _option(None, lambda v, n: v)  # a function returning a Keras backbone (Python only)
    image_size: object = _option(
        None,
        lambda v, n: checks.positive_int(v, n, minimum=MIN_INPUT_SIZE, allow_none=True),
        "square input side (default: the weights', 299)",
    )
    epochs: object = _option(
        "auto", _epochs, "head epochs: auto (until the validation loss stops improving, best weights kept) or N"
    )
    max_epochs: int = _option(300, checks.positive_int, "cap of --epochs auto")
    patience: int = _option(10, checks.positive_int, "epochs without a lower validation loss before stopping")
    learning_rate: float = _option(1e-3, checks.positive_float, "head learning rate")
    dropout: float = _option(
        0.2,
        lambda v, n: checks.fraction(v, n, low_open=False, high_open=True),
        "dropout rate before the head's Dense layer",
    )
    fine_tune_epochs: int = _option(0, checks.non_negative_int, "fine-tuning epochs after the head")
    fine_tune_blocks: int = _option(2, checks.positive_int, "top backbone blocks to fine-tune")
    fine_tune_learning_rate: float = _option(1e-5, checks.positive_float, "fine-tuning learning rate")
    augment: bool = _option(
        False, checks.boolean, "augment images during fine-tuning (flip, rotation, zoom, translation)"
    )
    class_weight: object = _option(
        None, _class_weight, "weight classes inversely to their frequency", choices=("balanced",)
    )
    batch_size: int = _option(32, checks.positive_int, "global batch size")
    strategy: object = _option(
        "default",
        lambda v, n: checks.one_of(v, n, STRATEGIES) if isinstance(v, str) else v,
        "tf.distribute strategy; multi-worker reads TF_CONFIG",
        choices=STRATEGIES,
    )
    mixed_precision: bool = _option(False, checks.boolean, "mixed-precision backbone, float32 head")
    out: object = _option(None, keras_path)  # the command line's --out is required: added by cli/train.py
    report_path: object = _option(None, path, "write the training report as JSON", flag="--report", metavar="OUT.json")
    curves_path: object = _option(None, path)
    confusion_path: object = _option(None, path)
    seed: int = _option(1337, checks.non_negative_int, "seed of the split, the head and the shuffling")
    strict: bool = _option(False, checks.boolean, "stop at the first unreadable image instead of skipping it")
    verbose: object = _option(
        "auto", lambda v, n: v if v == "auto" else checks.one_of(v, n, (0, 1, 2))
    )  # the command line's --quiet

    def __post_init__(self):
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, field.metadata["check"](getattr(self, field.name), field.name))
        if self.arch is not None and self.weights == "imagenet":  # the architecture's own ImageNet weights
            object.__setattr__(self, "weights", imagenet_of(self.arch))

    def settings(self, image_size, policy, replicas) -> dict:
        """The report's ``settings`` (JSON values): the options as used."""
        skip = ("backbone", "out", "report_path", "curves_path", "confusion_path", "strict", "verbose")
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        if isinstance(self.class_weight, dict):
            out["class_weight"] = {str(k): v for k, v in self.class_weight.items()}
        if not isinstance(self.strategy, str):
            out["strategy"] = type(self.strategy).__name__
        if self.val_dir is not None:
            out["val_split"] = None
        return dict(out, image_size=image_size, mixed_precision=policy or False, num_replicas=replicas)


def add_arguments(parser) -> None:
    """The command-line options of :class:`TrainOptions` (the fields with a help text), checked by the same checks."""
    for field in dataclasses.fields(TrainOptions):
        help, cli, check = field.metadata["help"], dict(field.metadata["cli"]), field.metadata["check"]
        if help is None:
            continue
        if check is checks.boolean:
            cli["action"] = "store_true"
        elif "choices" not in cli and check is not path:
            cli["type"] = checks.argtype(check)
        default = "" if field.default is None or check is checks.boolean else f" (default {field.default})"
        flag = cli.pop("flag", "--" + field.name.replace("_", "-"))
        parser.add_argument(flag, dest=field.name, default=field.default, help=help + default, **cli)
