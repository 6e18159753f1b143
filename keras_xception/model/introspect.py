"""Finding the Xception inside a built model and reading its architecture back.

:func:`find_xception` (the model itself, a nested model at any depth, or one built inline; this
package's and ``keras.applications``' Xceptions), :func:`spec_of` (its
:class:`~keras_xception.model.spec.XceptionSpec`), :func:`tap` (inner activations at any depth).
"""

from __future__ import annotations

import re

import keras

from keras_xception.model.spec import XceptionSpec, xception_spec

__all__ = [
    "find_xception",
    "block_numbers",
    "spec_of",
    "weighted_layers",
    "backbone_weighted_layers",
    "find_layer",
    "pool_stride",
    "block_stride",
    "tap",
    "tap_tensors",
]

_BLOCK = re.compile(r"^block(\d+)_")
_STEM = ("block1_conv1", "block1_conv2_act")


def _missing(names) -> list[str]:
    """The layers that mark an Xception, absent from ``names``."""
    missing = [n for n in _STEM if n not in names]
    return missing + ([] if any(n.startswith("block2_sepconv1") for n in names) else ["block2_sepconv1"])


def _models(model):
    """``model`` and the models nested in it at any depth, breadth first."""
    queue = [model]
    while queue:
        m = queue.pop(0)
        yield m
        queue.extend(layer for layer in getattr(m, "layers", None) or [] if isinstance(layer, keras.Model))


def pool_stride(layer) -> int:
    """The stride of a pooling layer (an int; Keras stores a tuple)."""
    strides = layer.strides
    return strides[0] if isinstance(strides, (tuple, list)) else strides


def block_stride(layers: dict, n: int) -> int:
    """The stride of block ``n`` (``layers``: name -> layer): of its pooling, or of an aligned block's last depthwise
    convolution; 1 if it has neither."""
    names = (f"block{n}_pool", f"block{n}_sepconv3_depthwise")
    return max((pool_stride(layers[name]) for name in names if name in layers), default=1)


def find_xception(model) -> keras.Model:
    """The model holding the Xception layers of ``model``: itself, or a nested model (breadth first).

    Raises:
        ValueError: if no model has layers ``block1_conv1``, ``block1_conv2_act`` and
            ``block2_sepconv1...``, naming those missing.
    """
    seen = set()
    for m in _models(model):
        layers = getattr(m, "layers", None) or []
        if not _missing({layer.name for layer in layers}):
            return m
        seen.update(layer.name for layer in layers)
    missing = _missing(seen)
    raise ValueError(
        f"`model` must be or contain an Xception (built by keras_xception.Xception or "
        f"keras.applications.Xception): a model with layers {_STEM[0]!r}, {_STEM[1]!r} and "
        f"'block2_sepconv1...'; {getattr(model, 'name', model)!r} has none"
        + (f" (missing: {', '.join(map(repr, missing))})." if missing else " (they are spread over several models).")
    )


def block_numbers(model) -> list[int]:
    """The block numbers (2, 3, ..., 14 for the official model) of the Xception in ``model``."""
    return sorted(
        {int(m.group(1)) for m in (_BLOCK.match(layer.name) for layer in find_xception(model).layers) if m} - {1}
    )


def spec_of(model) -> XceptionSpec:
    """The spec of the Xception in ``model``, read from its layers and checked against their shapes.

    Channel counts are rounded (:func:`~keras_xception.model.spec.scale_channels`), so the
    ``width_multiplier`` read back is the shortest decimal giving the model's shapes (0.35 for 0.35;
    0.254 for 0.252, the same network).

    Raises:
        ValueError: if there is no Xception, or its layers match no spec.
    """
    xception = find_xception(model)
    layers = {layer.name: layer for layer in xception.layers}
    blocks = block_numbers(xception)
    last = blocks[-1]
    act = layers.get("block2_sepconv1_depthwise_act")
    out = layers.get(f"block{last}_sepconv3_pointwise") or layers.get(f"block{last}_sepconv2_pointwise")
    channels = (out or layers.get(f"block{last}_sepconv2")).weights[-1].shape[-1]
    kind = "original" if "block1_conv1_pad" not in layers else "aligned"
    kind = "aligned_preact" if kind == "aligned" and "block2_sepconv1_depthwise_bn" not in layers else kind
    options = dict(
        residual=any(isinstance(layer, keras.layers.Add) for layer in xception.layers),
        intermediate_activation=None if act is None or kind != "original" else act.get_config()["activation"],
        width_multiplier=channels / 2048,
        output_stride=2,
        kind=kind,
        bn_epsilon=layers["block1_conv1_bn"].epsilon,
    )
    for n in blocks:
        options["output_stride"] *= block_stride(layers, n)
    exact, error = options["width_multiplier"], None
    for entry in (3,) if kind == "original" else (3, 5):
        for width in dict.fromkeys([round(exact, digits) for digits in range(1, 5)] + [exact]):
            try:
                spec = xception_spec(
                    len(blocks) - 2 - entry, **dict(options, width_multiplier=width, entry_flow_blocks=entry)
                )
            except ValueError as e:
                error = error or e
                continue
            if _fits(spec, layers):
                return spec
    if error is not None:
        raise ValueError(f"{xception.name!r} does not look like an Xception variant ({error}).")
    raise ValueError(f"The layers of {xception.name!r} do not match any Xception spec (read {options}).")


def _fits(spec, layers) -> bool:
    """Whether every convolution of ``spec`` present in ``layers`` (by name) has the spec's output channels."""
    want = {"block1_conv1": spec.stem_filters[0], "block1_conv2": spec.stem_filters[1]}
    want.update({f"{b.name}_sepconv{i}": f for b in spec.blocks for i, f in enumerate(b.filters, start=1)})
    for name, channels in want.items():
        layer = layers.get(name) or layers.get(f"{name}_pointwise")
        if layer is not None and layer.weights[-1].shape[-1] != channels:  # the (pointwise) kernel
            return False
    return True


def weighted_layers(model) -> list:
    """The layers of ``model`` that own weights, in the order weight files use."""
    return [layer for layer in model.layers if layer.weights]


def backbone_weighted_layers(model) -> list:
    """The weighted layers of the Xception in ``model``, plus its own classifier if it has one.

    From ``block1_conv1`` to the last block's last weighted layer, then the
    ``predictions`` layer if the Xception's own top follows (a transfer
    learning head elsewhere in ``model`` is not included).
    """
    xception = find_xception(model)
    layers = weighted_layers(xception)
    start = next(i for i, layer in enumerate(layers) if layer.name == "block1_conv1")
    last = f"block{block_numbers(xception)[-1]}_"
    end = max(i for i, layer in enumerate(layers) if layer.name.startswith(last))
    top = [layer for layer in layers[end + 1 :] if layer.name == "predictions"]
    return layers[start : end + 1] + top


def find_layer(model, name):
    """The layer called ``name`` in ``model`` or in a model nested in it (breadth first), or None."""
    return next(
        (layer for m in _models(model) for layer in getattr(m, "layers", None) or [] if layer.name == name), None
    )


def tap(model, outputs=(), inputs=()) -> keras.Model:
    """A model (sharing ``model``'s layers) returning ``[*outputs of outputs, *inputs of inputs, *model.outputs]``.

    ``outputs`` and ``inputs`` name layers anywhere in ``model``, nested models included.

    Raises:
        ValueError: for a name that is no layer of ``model``.
    """
    model_inputs, taps, model_outputs = tap_tensors(model, outputs, inputs)
    model_inputs = model_inputs[0] if len(model_inputs) == 1 else model_inputs  # called with a tensor, as model is
    return keras.Model(model_inputs, taps + model_outputs, name=f"{model.name}_tap")


def tap_tensors(model, outputs=(), inputs=()):
    """``(inputs, taps, outputs)``: symbolic tensors of a graph equal to ``model`` with inner layers tapped.

    See :func:`tap`. A layer inside a nested model is reached by re-tracing ``model`` (sharing every
    layer) with the nested model replaced by its own tapped version.
    """
    names = list(outputs) + list(inputs)
    missing = [n for n in names if find_layer(model, n) is None]
    if missing:
        raise ValueError(f"No layer named {missing} in {model.name!r} (nested models searched too).")
    own = {layer.name: layer for layer in model.layers}
    if all(n in own for n in names):
        taps = [own[n].output for n in outputs] + [own[n].input for n in inputs]
        return list(model.inputs), taps, list(model.outputs)
    found: dict = {}

    def call(layer, *args, **kwargs):
        if layer.name in inputs:
            found[("in", layer.name)] = args[0]
        nested = isinstance(layer, keras.Model) and layer.name not in outputs
        inner_out = [n for n in outputs if nested and find_layer(layer, n) is not None]
        inner_in = [n for n in inputs if nested and find_layer(layer, n) is not None]
        if inner_out or inner_in:
            result = tap(layer, inner_out, inner_in)(*args, **kwargs)
            for n, t in zip(inner_out, result):
                found[("out", n)] = t
            for n, t in zip(inner_in, result[len(inner_out) :]):
                found[("in", n)] = t
            result = result[len(inner_out) + len(inner_in) :]
            result = result[0] if len(result) == 1 else result
        else:
            result = layer(*args, **kwargs)
        if layer.name in outputs:
            found[("out", layer.name)] = result
        return result

    clone = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    taps = [found[("out", n)] for n in outputs] + [found[("in", n)] for n in inputs]
    return list(clone.inputs), taps, list(clone.outputs)
