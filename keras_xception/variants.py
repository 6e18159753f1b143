"""Pretrained weights for the architecture variants, copied layer by layer by name.

The weight files (and :func:`keras_xception.loading.load_weights`) match layers
by order and shape, which only works for a model with the official layer list.
For a variant, :func:`load_pretrained` builds the official model, loads the
weights into it the normal way, and copies them into the variant with
:func:`transfer_weights`, matching layers by name:

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

import keras

from keras_xception import architecture, loading

__all__ = ["is_official", "takes_official_weights", "check_pretrained", "load_pretrained", "transfer_weights"]


def is_official(spec: architecture.XceptionSpec) -> bool:
    """Whether ``spec`` is the official Xception (the weight files' layer list)."""
    return spec == architecture.xception_spec()


def takes_official_weights(spec: architecture.XceptionSpec) -> bool:
    """Whether official weights can be copied into ``spec``: same channels and blocks."""
    official = architecture.xception_spec()
    return spec.stem_filters == official.stem_filters and [
        (b.name, b.filters) for b in spec.blocks
    ] == [(b.name, b.filters) for b in official.blocks]


def _refusal(spec) -> str:
    official = architecture.xception_spec()
    n = len(spec.blocks) - len(official.blocks) + 8
    return (
        "Official (pretrained) weights only fit variants with the official weight shapes: "
        "width_multiplier=1.0 and middle_flow_blocks=8 (residual, intermediate_activation "
        f"and output_stride may change). This model has middle_flow_blocks={n} and "
        f"stem filters {spec.stem_filters}. Pass weights=None, or a file saved from a model "
        "built with the same options."
    )


def check_pretrained(spec: architecture.XceptionSpec, record) -> None:
    """Raise ``ValueError`` early if the registered weight set ``record`` cannot go into ``spec``."""
    if record is not None and not takes_official_weights(spec):
        raise ValueError(f"Cannot use weights={record.name!r}. " + _refusal(spec))


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


def transfer_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copy the weights of ``source`` into ``target``, layer by layer, matched by name.

    A ``SeparableConv2D`` ``X`` in one model matches the pair ``X_depthwise`` +
    ``X_pointwise`` in the other (either direction). Every weighted layer of
    ``target`` must find its weights with the same shapes; all are checked
    before anything is assigned.

    Returns:
        The names of the weighted ``source`` layers that were not used (e.g.
        the residual projections when ``target`` has ``residual=False``).

    Raises:
        keras_xception.loading.WeightsFileError: (a ``ValueError``) naming the
            first layer of ``target`` with no counterpart or other shapes.
    """
    src_layers = {l.name: l for l in loading.weighted_layers(source)}
    used, plan = set(), []
    for layer in loading.weighted_layers(target):
        src = src_layers.get(layer.name)
        arrays = src.get_weights() if src is not None else None
        if src is None:
            src, arrays = _split_source(src_layers, layer.name)
        if src is None:
            src, arrays = _merged_source(src_layers, layer)
            if src is not None:
                used.add(f"{layer.name}_pointwise")
        if src is None:
            raise loading.WeightsFileError(
                f"Cannot copy weights into layer {layer.name!r} ({type(layer).__name__}): "
                f"the source model {source.name!r} has no layer of that name (nor a "
                "separable convolution to split or merge)."
            )
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise loading.WeightsFileError(
                f"Cannot copy weights into layer {layer.name!r} ({type(layer).__name__}): it "
                f"expects shapes {expected}, the source layer {src.name!r} has {got}."
            )
        used.add(src.name)
        plan.append((layer, arrays))
    for layer, arrays in plan:
        layer.set_weights(arrays)
    return [name for name in src_layers if name not in used]


def load_pretrained(model, weights, spec, *, include_top, input_shape, classes=1000, classifier_activation="softmax"):
    """Load official ``weights`` (a registered name or a file path) into the variant ``model``.

    A file path is first loaded directly (a file saved from the same variant);
    if its layers do not fit, and the variant takes official weights, the file
    (or the registered set) is loaded into an official model built with the
    same ``include_top``/``input_shape``/``classes`` and copied by
    :func:`transfer_weights`.

    Returns:
        The names of the official layers whose weights the variant does not use.
    """
    from keras_xception import weights as weights_lib
    from keras_xception.xception import Xception

    registered = isinstance(weights, str) and weights_lib.is_registered(weights)
    direct_error = None
    if not registered:
        try:
            loading.load_weights(model, weights, allow_top_mismatch=not include_top)
            return []
        except loading.WeightsFileError as e:
            direct_error = e
    if not takes_official_weights(spec):
        if direct_error is not None:
            raise loading.WeightsFileError(f"{direct_error} ({_refusal(spec)})") from None
        raise ValueError(_refusal(spec))
    try:
        official = Xception(
            include_top=include_top,
            weights=weights,
            input_shape=input_shape,
            classes=classes,
            classifier_activation=classifier_activation,
        )
    except loading.WeightsFileError as e:
        if direct_error is None:
            raise
        raise loading.WeightsFileError(
            f"The file fits neither this variant ({direct_error}) nor the official "
            f"Xception, whose weights would be copied into it ({e})."
        ) from None
    return transfer_weights(official, model)
