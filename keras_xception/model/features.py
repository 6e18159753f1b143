"""Multi-scale feature maps of an Xception, for detectors and segmenters.

:func:`feature_extractor` returns a ``keras.Model`` whose outputs are the
feature maps at the requested strides (input size / map size). For each
stride it takes the **deepest block output** at that resolution: the output of
the last block that runs at that stride, i.e. after the block's pooling and
residual addition (what the next block consumes), not the pre-pooling map
inside the next downsampling block. For the official model:

======  =======================  ========  ===============  ==============
stride  layer                    channels  size at 299x299  size at 71x71
======  =======================  ========  ===============  ==============
2       ``block1_conv2_act``     64        147              33
4       ``block2_add``           128       74               17
8       ``block3_add``           256       37               9
16      ``block12_add``          728       19               5
32      ``block14_sepconv2_act`` 2048      10               3
======  =======================  ========  ===============  ==============

The maps at strides 4, 8 and 16 are residual sums, before the ReLU that
opens the next block; the stride-2 and stride-32 maps are after a ReLU.
Stride 16 is the end of the middle flow (``block{4 + middle_flow_blocks}_add``).

With ``output_stride=16`` the exit flow stays at stride 16, so stride 16 is
``block14_sepconv2_act`` (2048 channels) and stride 32 does not exist; with
``output_stride=8`` stride 8 is ``block14_sepconv2_act`` and 16/32 do not
exist. In a variant without residual connections the block outputs are the
``blockN_pool`` layers (or the last ``_bn`` of a middle block).
:func:`feature_layers` lists the layers of any Xception model.
"""

from __future__ import annotations

import re

import keras

from keras_xception.checks import one_of
from keras_xception.model.introspect import find_xception, pool_stride, tap_tensors

__all__ = ["feature_layers", "feature_extractor", "feature_model", "STRIDES"]

#: The strides an Xception can provide (at output stride 32).
STRIDES = (2, 4, 8, 16, 32)
_BLOCK = re.compile(r"^block(\d+)_")


def feature_layers(model) -> dict[int, str]:
    """Map each stride available in the Xception in ``model`` to the name of its feature layer.

    The stride-2 map is the stem's ``block1_conv2_act``; every other stride
    maps to the output layer of the last block at that stride (``blockN_add``,
    or the block's last layer when it has no residual addition). Strides are
    read from the layers' configuration (``blockN_pool`` strides), so models
    with unknown input sizes work too.
    """
    xception = find_xception(model)
    last_layer: dict[int, str] = {}
    for layer in xception.layers:
        m = _BLOCK.match(layer.name)
        if m and int(m.group(1)) >= 2:
            last_layer[int(m.group(1))] = layer.name
    by_name = {layer.name: layer for layer in xception.layers}
    # The residual addition that ends a block: named blockN_add here, unnamed ("add_3") in
    # keras.applications; found as the Add fed by the block's last named layer.
    adds = {}
    for layer in xception.layers:
        if isinstance(layer, keras.layers.Add):
            for t in layer.input:
                adds[id(t)] = layer.name
    out = {2: "block1_conv2_act"}
    stride = 2
    for n in sorted(last_layer):
        if f"block{n}_pool" in by_name:
            stride *= pool_stride(by_name[f"block{n}_pool"])
        last = by_name[last_layer[n]]
        out[stride] = adds.get(id(last.output), last.name)
    return out


def feature_model(model, layers, *, pool=False, name=None) -> keras.Model:
    """A model from ``model``'s inputs to the outputs of ``layers`` (names, at any nesting depth).

    The one feature-model builder: multi-scale maps (:func:`feature_extractor`),
    pooled vectors for extraction (``pool=True``: 4D outputs are globally
    average pooled, other non-2D ones flattened), a classifier's pooled
    features for transfer learning. ``model`` may be an Xception or any model
    containing one (nested or built inline); the new model shares its layers
    and weights. A single name (a string) gives a single output, a list a list.

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
        model: An Xception (any variant, with or without the top; the
            Xception may also be nested inside ``model``).
        strides: Strides to return, from ``(2, 4, 8, 16, 32)``; the outputs
            come as a list in this order. See the module documentation for
            the layers and channel counts.
        name: Name of the new model (default ``"<model name>_features"``).

    Returns:
        A ``keras.Model`` sharing the layers (and weights) of ``model``, with
        one output per stride. Its inputs are the Xception's (those of
        ``model`` itself, or of the nested Xception), so with
        ``include_preprocessing=True`` it takes raw 0..255 images.

    Raises:
        ValueError: for a stride that is not a power of two in 2..32, a
            repeated stride, or a stride the model does not have (e.g. 32 with
            ``output_stride=16``).
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
