"""Multi-scale feature maps of an Xception (detectors, segmenters) and the one feature-model builder.

Each stride's map is the deepest block output at that resolution (the table is in docs/variants.md).
"""

from __future__ import annotations

import re

import keras

from keras_xception.checks import one_of
from keras_xception.model.introspect import block_stride, find_xception, tap_tensors

__all__ = ["feature_layers", "feature_extractor", "feature_model", "STRIDES"]

#: The strides an Xception can provide (at output stride 32).
STRIDES = (2, 4, 8, 16, 32)
_BLOCK = re.compile(r"^block(\d+)_")


def feature_layers(model) -> dict[int, str]:
    """Map each stride of the Xception in ``model`` to its feature layer's name.

    Stride 2 is ``block1_conv2_act``; every other stride the output of the last block at that
    stride (``blockN_add``, or the block's last layer without a residual). Strides are read from
    the ``blockN_pool`` layers (aligned: the strided depthwise convolutions), so unknown input sizes work too.
    """
    xception = find_xception(model)
    by_name = {layer.name: layer for layer in xception.layers}
    last_layer = {}  # block number -> its last named layer
    adds = {}  # id of an Add's input -> the Add (unnamed, "add_3", in keras.applications)
    for layer in xception.layers:
        m = _BLOCK.match(layer.name)
        if m and int(m.group(1)) >= 2:
            last_layer[int(m.group(1))] = layer
        if isinstance(layer, keras.layers.Add):
            adds.update({id(t): layer.name for t in layer.input})
    out, stride = {2: "block1_conv2_act"}, 2
    for n, last in sorted(last_layer.items()):
        stride *= block_stride(by_name, n)
        out[stride] = adds.get(id(last.output), last.name)  # the residual sum that ends the block
    return out


def feature_model(model, layers, *, pool=False, name=None) -> keras.Model:
    """A model from ``model``'s inputs to the outputs of ``layers`` (names, at any nesting depth).

    The one feature-model builder (multi-scale maps, pooled vectors, a classifier's features); it
    shares ``model``'s layers and weights. ``pool=True`` average-pools 4D outputs and flattens other
    non-2D ones. A single name (a string) gives a single output, a list a list.

    Raises:
        ValueError: for a name that is no layer of ``model`` (nested models searched too).
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    inputs, outputs, _ = tap_tensors(model, outputs=layers)
    if pool:
        pooled = []
        for layer_name, out in zip(layers, outputs):
            if len(out.shape) == 4:
                out = keras.layers.GlobalAveragePooling2D(name=f"{layer_name}_pooled")(out)
            elif len(out.shape) != 2:
                out = keras.layers.Flatten(name=f"{layer_name}_flat")(out)
            pooled.append(out)
        outputs = pooled
    return keras.Model(inputs, outputs[0] if len(outputs) == 1 else outputs, name=name or f"{model.name}_features")


def feature_extractor(model, strides=(4, 8, 16, 32), *, name=None) -> keras.Model:
    """A model returning the feature maps of the Xception ``model`` at ``strides``.

    Args:
        model: An Xception (any variant, with or without the top), or a model containing one.
        strides: Strides from ``(2, 4, 8, 16, 32)``; the outputs come as a list in this order.
        name: Name of the new model (default ``"<model name>_features"``).

    Returns:
        A ``keras.Model`` sharing ``model``'s layers and weights, taking the Xception's inputs.

    Raises:
        ValueError: for a stride not in ``STRIDES``, a repeated one, or one the model does not have
            (e.g. 32 with ``output_stride=16``).
    """
    strides = tuple(strides) if isinstance(strides, (tuple, list)) else (strides,)
    if not strides:
        raise ValueError(f"`strides` must be a non-empty tuple of values from {STRIDES}; received strides=().")
    for s in strides:
        one_of(s, "strides", STRIDES)
    if len(set(strides)) != len(strides):
        raise ValueError(f"`strides` must not repeat a stride; received strides={strides!r}.")
    available = feature_layers(model)
    missing = [s for s in strides if s not in available]
    if missing:
        raise ValueError(
            f"The model has no feature map at stride(s) {missing}: its output stride is "
            f"{max(available)}, so the available strides are {tuple(sorted(available))}. "
            "Request those, or build the model with a larger `output_stride`."
        )
    xception = find_xception(model)
    return feature_model(xception, [available[s] for s in strides], name=name or f"{xception.name}_features")
