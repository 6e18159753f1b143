"""The one load step: pretrained weights (a registered name or a file) into a built Xception.

What it handles (top or not, class counts, input channels, variants) is in docs/weights.md. Every
shape is checked before anything is assigned, so a failed load leaves the model as it was.
"""

from __future__ import annotations

import os
import warnings

import keras

from keras_xception.model.graph import build_model, check_input_shape
from keras_xception.model.introspect import backbone_weighted_layers, find_xception, spec_of, weighted_layers
from keras_xception.model.spec import ARCHITECTURES, MIN_INPUT_SIZE
from keras_xception.pretrained import download, formats
from keras_xception.pretrained.formats import WeightsFileError
from keras_xception.pretrained.registry import WeightRecord, get_record, imagenet_of, is_registered, list_records

__all__ = [
    "resolve_weights",
    "check_pretrained",
    "load_pretrained",
    "transfer_weights",
    "xception_from_file",
    "convert_weights",
    "FORMATS",
]


def resolve_weights(weights, arch=None):
    """``(record, path)`` for ``weights``: ``(None, None)``, a registered record, or an existing file or preset.

    ``"imagenet"`` with an aligned ``arch`` (``"xception65"``...): the first registered ImageNet set for it.

    Raises:
        ValueError: naming the registered sets, for anything else.
    """
    if weights is None:
        return None, None
    if isinstance(weights, WeightRecord):
        return weights, None
    if weights == "imagenet" and arch is not None:
        weights = imagenet_of(arch)
    if is_registered(weights):
        return get_record(weights), None
    if isinstance(weights, (str, os.PathLike)) and (os.path.isfile(weights) or formats.is_hub_preset(weights)):
        return None, os.fspath(weights)
    known = sorted(r.name for r in list_records())
    raise ValueError(
        "`weights` must be None (random initialization), a registered weight set "
        f"{known}, the path of an existing weights file (.h5, .weights.h5, .keras, timm's .safetensors) or a "
        "KerasHub preset directory; "
        f"received weights={weights!r}" + (" (no such file)." if isinstance(weights, (str, os.PathLike)) else ".")
    )


def _refusal(spec) -> str:
    return (
        "Official (pretrained) weights only fit variants with the official weight shapes: "
        "width_multiplier=1.0 and middle_flow_blocks=8 (residual, intermediate_activation "
        f"and output_stride may change). This model has middle_flow_blocks={spec.middle_flow_blocks} "
        f"and width_multiplier={spec.width_multiplier:g}. Pass weights=None, or a file saved from a "
        "model built with the same options."
    )


def check_pretrained(spec, record, include_top=False, classifier_activation=None, input_shape=None, input_tensor=None):
    """Raise ``ValueError`` before the model is built if the registered set ``record`` cannot go into it."""
    if record is None:
        return
    if record.arch == "xception" and not spec.takes_official_weights:
        raise ValueError(f"Cannot use weights={record.name!r}. " + _refusal(spec))
    if record.arch != spec.arch:
        raise ValueError(
            f"Cannot use weights={record.name!r}: they are for {record.arch} (keras_xception.{record.arch}), and this "
            f"model is {spec.arch or 'none of ' + ', '.join(ARCHITECTURES)}. Build {record.arch}, or pass weights=None."
        )
    if include_top is not True:
        return
    if classifier_activation not in (None, "softmax"):
        raise ValueError(
            f"With pretrained weights {record.name!r} `classifier_activation` must be None "
            f"or 'softmax'; received {classifier_activation!r}."
        )
    size = tuple(record.input_size)
    shape = check_input_shape(input_shape, input_tensor, True, size)
    if (shape[1:] if keras.config.image_data_format() == "channels_first" else shape[:2]) != size:
        raise ValueError(
            f"With include_top=True and weights={record.name!r} the input must be {size}; received "
            f"input_shape={shape}. Use include_top=False (with pooling='avg') for other sizes."
        )


def _classes(arrays) -> int:
    """The class count of a classifier's weights ``[kernel, bias]``."""
    return int(arrays[0].shape[-1])


def load_pretrained(model, weights, *, strict=False, stacklevel=2) -> list[str]:
    """Load ``weights`` (a registered name or record, or a file path) into the Xception ``model``.

    With ``strict=True`` a model with a classifier needs the weights' classifier of the same shape
    (else ``WeightsFileError``) instead of getting a fresh one (with a warning).

    Returns:
        The names of the official layers whose weights the model does not use
        (e.g. the residual projections of ``residual=False``), else ``[]``.

    Raises:
        ValueError: unknown weights, or a registered set that cannot fit the variant.
        WeightsFileError: (a ValueError) a file that does not fit, naming the
            file, the layer and both shapes.
        WeightsDownloadError: a registered file that cannot be downloaded.
    """
    record, path = resolve_weights(weights)
    if record is None and path is None:
        return []
    spec = spec_of(model)
    check_pretrained(spec, record)
    backbone = backbone_weighted_layers(model)
    head = backbone.pop() if backbone[-1].name == "predictions" else None
    source, skipped_top = record.name if record is not None else path, None  # skipped: a top not downloaded
    if record is not None:
        if record.include_top and record.notop and (head is None or _classes(head.weights) != record.classes):
            skipped_top, record = record.classes, get_record(record.notop)  # the smaller download
        path = download.get_file(record)
    direct = record is None or record.arch != "xception"
    plan, top, adapted, unused = _backbone_plan(model, spec, path, backbone, direct=direct)
    if head is not None and top is None and strict:
        raise WeightsFileError(
            f"Cannot load weights from {path!r}: the model has a classifier {head.name!r} "
            f"(shapes {[tuple(w.shape) for w in head.weights]}) but the file has none."
        )
    weights_classes = _classes(top[1]) if top is not None else skipped_top
    fresh_head = head is not None and weights_classes != _classes(head.weights) and not strict
    if head is not None and not fresh_head:
        plan += formats.match_layers(path, [head], [top])
    for layer, arrays in plan:  # everything checked: now assign
        layer.set_weights(arrays)
    if adapted:
        warnings.warn(
            f"Adapting the pretrained 3-channel kernel of {backbone[0].name!r} to {_channels(model)} input "
            "channels (summed for 1 channel, repeated and rescaled by 3/channels for more).",
            stacklevel=stacklevel + 1,
        )
    if fresh_head:
        warnings.warn(
            f"weights={source!r} "
            + (f"has a {weights_classes}-class top" if weights_classes is not None else "has no classifier")
            + f"; building the pretrained backbone with a new, randomly initialised {_classes(head.weights)}"
            "-class 'predictions' layer. Train it before use (see keras_xception.transfer).",
            stacklevel=stacklevel + 1,
        )
    return unused


def _read_and_match(model, path, layers):
    """``(plan, top, adapted)``: the file's backbone checked against ``layers`` of ``model``."""
    entries, top = formats.read_weights(path, model)
    adapted = formats.adapt_first_conv(entries, layers[0]) if _channels(model) != 3 else entries
    return formats.match_layers(path, layers, adapted), top, adapted is not entries


def _backbone_plan(model, spec, path, backbone, *, direct):
    """``(plan, top, adapted, unused)`` for the backbone layers of ``model``; nothing is assigned.

    The file is read directly (the official model; with ``direct``, a variant's own file), else,
    or if that fails, through the official layer list, matched by name (:func:`transfer_weights`).
    """
    direct_error = None
    if spec.is_official or direct:
        try:
            return (*_read_and_match(model, path, backbone), [])
        except WeightsFileError as e:
            if spec.is_official or spec.kind != "original":
                raise
            if not spec.takes_official_weights:
                raise WeightsFileError(f"{e} ({_refusal(spec)})") from None
            direct_error = e
    official = build_model(include_top=False, input_shape=tuple(find_xception(model).input_shape[1:]))
    try:
        official_plan, top, adapted = _read_and_match(official, path, backbone_weighted_layers(official))
    except WeightsFileError as e:
        if direct_error is None:
            raise
        raise WeightsFileError(
            f"The file fits neither this variant ({direct_error}) nor the official "
            f"Xception, whose weights would be copied into it ({e})."
        ) from None
    plan, unused = _transfer_plan({layer.name: arrays for layer, arrays in official_plan}, backbone, path)
    return plan, top, adapted, unused


def _channels(model) -> int:
    shape = find_xception(model).input_shape
    return shape[1] if keras.config.image_data_format() == "channels_first" else shape[-1]


def transfer_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copy the weights of ``source`` into ``target``, matched by name, all shapes checked first.

    A ``SeparableConv2D`` ``X`` in one model matches ``X_depthwise`` + ``X_pointwise`` in the other.

    Returns:
        The names of the weighted ``source`` layers that were not used (e.g.
        the residual projections when ``target`` has ``residual=False``).

    Raises:
        keras_xception.WeightsFileError: (a ``ValueError``) naming the
            first layer of ``target`` with no counterpart or other shapes.
    """
    arrays = {layer.name: layer.get_weights() for layer in weighted_layers(source)}
    plan, unused = _transfer_plan(arrays, weighted_layers(target), source.name, "the source model's")
    for layer, values in plan:
        layer.set_weights(values)
    return unused


def _transfer_plan(source: dict, targets, label, owner="the file's"):
    """``(plan, unused)``: arrays of ``source`` (layer name -> arrays) for each of ``targets``, shapes checked."""
    used, pairs = set(), []
    for layer in targets:
        name, split = layer.name, layer.name.rsplit("_", 1)
        if name in source:
            names = [name]
            arrays = source[name]
        elif split[-1] in ("depthwise", "pointwise") and len(source.get(split[0], ())) == 2:
            names = [split[0]]  # a SeparableConv2D's [depthwise, pointwise] kernels, split
            arrays = [source[split[0]][split[-1] == "pointwise"]]
        elif f"{name}_depthwise" in source and f"{name}_pointwise" in source:
            names = [f"{name}_depthwise", f"{name}_pointwise"]  # merged into one SeparableConv2D
            arrays = source[names[0]] + source[names[1]]
        else:
            raise WeightsFileError(
                f"Cannot load weights from {label!r} into layer {name!r} ({type(layer).__name__}): the source "
                "has no layer of that name (nor a separable convolution to split or merge)."
            )
        used.update(names)
        pairs.append((layer, names[0], arrays))
    return formats.check_shapes(label, pairs, owner), [name for name in source if name not in used]


FORMATS = ("weights.h5", "legacy-h5")


def xception_from_file(src, *, size=None):
    """Build the official-layout Xception that a weight file fits (top and classes detected) and load it.

    ``size``: the model's ``(height, width)`` (default 299x299; the weights do not depend on it).

    Returns:
        ``(model, include_top)``.

    Raises:
        ValueError: no such file; WeightsFileError: the file does not fit.
    """
    src = os.fspath(src)
    if not os.path.isfile(src):
        raise ValueError(f"No weights file at src={src!r}.")
    classes = formats.top_classes(src)
    model = build_model(include_top=classes is not None, classes=classes or 1000, default_size=size)
    load_pretrained(model, src)
    return model, classes is not None


def convert_weights(src, dst, *, format="weights.h5"):
    """Convert any Xception weight file (see :func:`xception_from_file`) to ``.weights.h5`` or legacy ``.h5``.

    Returns:
        ``(model, include_top)``: the Xception the weights were loaded into.
    """
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {FORMATS}; received format={format!r}.")
    if format == "weights.h5" and not str(dst).endswith(".weights.h5"):
        raise ValueError(f"A Keras 3 weights file must end in '.weights.h5'; received dst={dst!r}.")
    model, include_top = xception_from_file(src, size=(MIN_INPUT_SIZE, MIN_INPUT_SIZE))
    if format == "weights.h5":
        model.save_weights(os.fspath(dst))
    else:
        formats.save_legacy_h5(model, os.fspath(dst))
    return model, include_top
