"""The one load step: pretrained weights (a registered name or a file) into a built Xception.

:func:`load_pretrained` takes any model built by
:func:`keras_xception.model.graph.build_model` (the official network or a
variant, with or without the top, any input size and channel count) and
loads ``weights``:

1. a registered name is resolved by the registry and downloaded (the smaller
   no-top file when the top is not needed); a path is used as it is;
2. a registered set and a file follow the same rule: weights without a
   classifier, or with another class count, loaded into a model with a top
   give the pretrained backbone and a fresh ``predictions`` layer (a warning
   says so), as ``"imagenet"`` with ``classes=10`` does; a classifier the
   model has no place for is ignored;
3. an RGB first convolution is adapted to another input channel count (with
   a warning);
4. the official model's weights reach a variant by name (below).

Every shape is checked before anything is assigned: a load that fails leaves
the model as it was, and its :class:`~keras_xception.pretrained.formats.WeightsFileError`
names the file, the layer and both shapes.

Weight files (:func:`keras_xception.pretrained.formats.read_weights`) match
layers by order and shape, which only works for a model with the official
layer list. For a variant the official model is built
(:func:`~keras_xception.model.graph.build_model`), loaded the normal way, and
copied into the variant with :func:`transfer_weights`, matching layers by name:

* ``output_stride=16/8``: same layers, same shapes (a dilated kernel is the
  same kernel); everything is copied. Up to the first changed block the
  variant computes exactly what the official model does, and where the
  feature maps have odd sizes (299x299 and 71x71 inputs, for instance) its
  output sampled every 2 (16) or 4 (8) positions *is* the official output:
  the atrous model evaluates the pretrained network densely. (At even sizes
  Keras's ``"same"`` pooling window sits half a pixel off the strided 1x1
  projection, so the dense model differs slightly there.)
* ``intermediate_activation="relu"/"elu"/"linear"``: every ``SeparableConv2D``
  ``X`` (weights ``[depthwise (3, 3, Cin, 1), pointwise (1, 1, Cin, Cout)]``)
  becomes ``X_depthwise`` (``DepthwiseConv2D``, kernel ``(3, 3, Cin, 1)``) and
  ``X_pointwise`` (1x1 ``Conv2D``, kernel ``(1, 1, Cin, Cout)``), which receive
  the two halves. ``"linear"`` computes what the official model computes.
* ``residual=False``: every layer the variant has is copied; the weights of the
  residual projections the variant lacks (``blockN_residual_conv`` and
  ``blockN_residual_bn`` for blocks 2, 3, 4 and 13) are dropped. Without the
  shortcuts the network computes something else, so the copied weights are an
  initialization for fine-tuning, not a working classifier.
* ``width_multiplier != 1`` or ``middle_flow_blocks != 8``: the layer shapes or
  the layer list differ, and no copy would be meaningful; asking for a
  registered weight set raises ``ValueError``. A file path is still accepted if
  it holds weights of the same variant (saved with ``model.save_weights``).

Files written by a variant itself are loaded directly (order and shape
matching) before the official route is tried, so ``model.save_weights`` /
``Xception(weights=path, <same options>)`` round-trips for every variant.
"""

from __future__ import annotations

import os
import warnings

import keras

from keras_xception.model.graph import build_model
from keras_xception.model.introspect import backbone_weighted_layers, find_xception, spec_of, weighted_layers
from keras_xception.model.spec import MIN_INPUT_SIZE
from keras_xception.pretrained import download, formats
from keras_xception.pretrained.formats import WeightsFileError
from keras_xception.pretrained.registry import WeightRecord, get_record, is_registered, list_records

__all__ = [
    "resolve_weights",
    "check_pretrained",
    "load_pretrained",
    "transfer_weights",
    "xception_from_file",
    "convert_weights",
    "FORMATS",
]


def resolve_weights(weights):
    """``(record, path)`` for ``weights``: ``(None, None)``, a registered record, or an existing file.

    Raises:
        ValueError: naming the registered sets, for anything else.
    """
    if weights is None:
        return None, None
    if isinstance(weights, WeightRecord):
        return weights, None
    if isinstance(weights, str) and is_registered(weights):
        return get_record(weights), None
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        return None, os.fspath(weights)
    known = sorted(r.name for r in list_records())
    raise ValueError(
        "`weights` must be None (random initialization), a registered weight set "
        f"{known}, or the path of an existing weights file (.h5, .weights.h5, .keras); "
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


def check_pretrained(spec, record) -> None:
    """Raise ``ValueError`` early if the registered weight set ``record`` cannot go into ``spec``."""
    if record is not None and not spec.takes_official_weights:
        raise ValueError(f"Cannot use weights={record.name!r}. " + _refusal(spec))


def _head(model):
    """The Xception's own ``predictions`` layer in ``model``, or None."""
    layers = backbone_weighted_layers(model)
    return layers[-1] if layers[-1].name == "predictions" else None


def _classes(arrays) -> int:
    """The class count of a classifier's weights ``[kernel, bias]``."""
    return int(arrays[0].shape[-1])


def load_pretrained(model, weights, *, stacklevel=2) -> list[str]:
    """Load ``weights`` (a registered name or record, or a file path) into the Xception ``model``.

    See the module documentation for what is handled. A registered set and a
    file follow the same rules: a model with a classifier whose shape the
    weights' classifier does not have (or that the weights lack) gets the
    pretrained backbone and a fresh ``predictions`` layer, with a warning.
    Every layer's shapes are checked before anything is assigned, so a
    failure leaves ``model`` as it was.

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
    head = _head(model)
    source = record.name if record is not None else path
    skipped_top = None  # the class count of a registered top left undownloaded
    if record is not None:
        if record.include_top and record.notop and (head is None or _classes(head.weights) != record.classes):
            skipped_top, record = record.classes, get_record(record.notop)  # the smaller download
        path = download.get_file(record)
    backbone = [layer for layer in backbone_weighted_layers(model) if layer is not head]
    plan, top, adapted, unused = _backbone_plan(model, spec, path, backbone, direct=record is None)
    weights_classes = _classes(top[1]) if top is not None else skipped_top
    fresh_head = head is not None and weights_classes != _classes(head.weights)
    if head is not None and not fresh_head:
        plan += formats.match_layers(path, [head], [top])
    for layer, arrays in plan:  # everything checked: now assign
        layer.set_weights(arrays)
    if adapted:
        warnings.warn(
            f"Adapting the pretrained 3-channel kernel of {backbone[0].name!r} to "
            f"{_channels(model)} input channels (summed for 1 channel, repeated and rescaled "
            "by 3/channels for more).",
            stacklevel=stacklevel + 1,
        )
    if fresh_head:
        warnings.warn(
            f"weights={source!r} "
            + (f"has a {weights_classes}-class top" if weights_classes is not None else "has no classifier")
            + f"; building the pretrained backbone with a new, randomly initialised "
            f"{_classes(head.weights)}-class 'predictions' layer. Train it before use "
            "(see keras_xception.transfer).",
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

    The official model, and with ``direct`` any variant, reads the file
    directly (a variant's own file fits that way). Otherwise, or if that
    fails, a variant with the official shapes gets the file through the
    official model (:func:`transfer_weights`).
    """
    direct_error = None
    if spec.is_official or direct:
        try:
            return (*_read_and_match(model, path, backbone), [])
        except WeightsFileError as e:
            if spec.is_official:
                raise
            if not spec.takes_official_weights:
                raise WeightsFileError(f"{e} ({_refusal(spec)})") from None
            direct_error = e
    official = build_model(
        include_top=False, input_shape=tuple(find_xception(model).input_shape[1:]), name="xception_official"
    )
    try:
        official_plan, top, adapted = _read_and_match(official, path, backbone_weighted_layers(official))
    except WeightsFileError as e:
        if direct_error is None:
            raise
        raise WeightsFileError(
            f"The file fits neither this variant ({direct_error}) nor the official "
            f"Xception, whose weights would be copied into it ({e})."
        ) from None
    for layer, arrays in official_plan:  # a throwaway model
        layer.set_weights(arrays)
    try:
        plan, unused = _transfer_plan(official, backbone)
    except WeightsFileError as e:
        raise WeightsFileError(f"Cannot load weights from {path!r} into this variant: {e}") from None
    return plan, top, adapted, unused


def _channels(model) -> int:
    shape = find_xception(model).input_shape
    return shape[1] if keras.config.image_data_format() == "channels_first" else shape[-1]


def _split_source(src_layers, name):
    """Weights for a split ``X_depthwise`` / ``X_pointwise`` layer from a ``SeparableConv2D`` ``X``."""
    for suffix, index in (("_depthwise", 0), ("_pointwise", 1)):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and isinstance(src_layers.get(base), keras.layers.SeparableConv2D):
            return src_layers[base], [src_layers[base].get_weights()[index]]
    return None, None


def _merged_source(src_layers, layer):
    """Weights for a ``SeparableConv2D`` ``X`` from split ``X_depthwise`` + ``X_pointwise`` layers."""
    if not isinstance(layer, keras.layers.SeparableConv2D):
        return None, None
    dw, pw = src_layers.get(f"{layer.name}_depthwise"), src_layers.get(f"{layer.name}_pointwise")
    if dw is None or pw is None:
        return None, None
    return dw, dw.get_weights() + pw.get_weights()


def transfer_weights(source: keras.Model, target: keras.Model, targets=None) -> list[str]:
    """Copy the weights of ``source`` into ``target``, layer by layer, matched by name.

    A ``SeparableConv2D`` ``X`` in one model matches the pair ``X_depthwise`` +
    ``X_pointwise`` in the other (either direction). Every weighted layer of
    ``target`` must find its weights with the same shapes; all are checked
    before anything is assigned. ``targets``: only these layers of ``target``.

    Returns:
        The names of the weighted ``source`` layers that were not used (e.g.
        the residual projections when ``target`` has ``residual=False``).

    Raises:
        keras_xception.WeightsFileError: (a ``ValueError``) naming the
            first layer of ``target`` with no counterpart or other shapes.
    """
    plan, unused = _transfer_plan(source, weighted_layers(target) if targets is None else targets)
    for layer, arrays in plan:
        layer.set_weights(arrays)
    return unused


def _transfer_plan(source, targets):
    """``(plan, unused)`` of :func:`transfer_weights`: every shape checked, nothing assigned."""
    src_layers = {layer.name: layer for layer in weighted_layers(source)}
    used, plan = set(), []
    for layer in targets:
        src = src_layers.get(layer.name)
        arrays = src.get_weights() if src is not None else None
        if src is None:
            src, arrays = _split_source(src_layers, layer.name)
        if src is None:
            src, arrays = _merged_source(src_layers, layer)
            if src is not None:
                used.add(f"{layer.name}_pointwise")
        if src is None:
            raise WeightsFileError(
                f"Cannot copy weights into layer {layer.name!r} ({type(layer).__name__}): "
                f"the source model {source.name!r} has no layer of that name (nor a "
                "separable convolution to split or merge)."
            )
        mismatch = formats.shape_mismatch(layer, arrays)
        if mismatch:
            expected, got = mismatch
            raise WeightsFileError(
                f"Cannot copy weights into layer {layer.name!r} ({type(layer).__name__}): it "
                f"expects shapes {expected}, the source layer {src.name!r} has {got}."
            )
        used.add(src.name)
        plan.append((layer, arrays))
    return plan, [name for name in src_layers if name not in used]


FORMATS = ("weights.h5", "legacy-h5")


def xception_from_file(src, *, size=None):
    """Build the Xception that an Xception weight file fits and load the file into it.

    The source may be a legacy ``.h5`` (official/tf_keras), a Keras 3
    ``.weights.h5`` or a ``.keras`` model containing an Xception (nested or
    not), of the official layout. Whether it has the top, and its class
    count, are detected (:func:`~keras_xception.pretrained.formats.top_classes`).
    ``size``: the model's ``(height, width)`` (default 299x299); the weights
    do not depend on it, so checks and conversions build the smallest graph.

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
