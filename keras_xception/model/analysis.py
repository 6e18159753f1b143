"""Parameters and multiply-accumulates (MACs) of a built model, layer by layer, per image.

A layer's MACs are its kernels' sizes times its output positions (Conv2D, DepthwiseConv2D, both
parts of SeparableConv2D, Dense); BatchNormalization (folded at inference), activations, pooling,
additions and biases count 0. This gives the 8.36 GMACs usually quoted for Xception at 299x299.
``fvcore=True`` counts as fvcore (timm's published GMACs) does: also 2 per BatchNormalization output
element and 1 per input element of a global average pooling.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

__all__ = ["LayerCost", "layer_costs", "count_macs", "summary", "format_summary", "ABLATIONS"]

#: The variants ``keras-xception summary --ablations`` lists (``Xception`` keyword arguments).
ABLATIONS = (
    {},
    {"residual": False},
    {"intermediate_activation": "relu"},
    {"intermediate_activation": "elu"},
    {"output_stride": 16},
    {"output_stride": 8},
    {"middle_flow_blocks": 4},
    {"middle_flow_blocks": 16},
    {"width_multiplier": 0.5},
    {"width_multiplier": 0.75},
)


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """Parameters and MACs of one layer."""

    name: str
    class_name: str
    output_shape: tuple
    params: int
    macs: int


def _macs(layer, fvcore=False) -> int:
    """Output positions x the sizes of the layer's kernels (SeparableConv2D: depthwise + pointwise)."""
    if fvcore and isinstance(layer, keras.layers.BatchNormalization):
        return 2 * int(np.prod(layer.output.shape[1:]))
    if fvcore and isinstance(layer, keras.layers.GlobalAveragePooling2D):
        return int(np.prod(layer.input.shape[1:]))
    kernels = [w for w in layer.weights if w.name.endswith("kernel")]
    if not kernels:
        return 0
    shape = layer.output.shape
    dims = shape[2:] if getattr(layer, "data_format", None) == "channels_first" else shape[1:-1]
    if any(d is None for d in dims):
        raise ValueError(
            f"Cannot count MACs of layer {layer.name!r}: its output shape {tuple(shape)} has "
            "unknown spatial sizes. Build the model with a fixed input_shape, e.g. "
            "Xception(..., input_shape=(299, 299, 3))."
        )
    return int(np.prod(dims)) * sum(int(np.prod(k.shape)) for k in kernels)


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def layer_costs(model, fvcore=False) -> list[LayerCost]:
    """One :class:`LayerCost` per layer of ``model`` (nested models flattened)."""
    return [
        LayerCost(
            layer.name, type(layer).__name__, tuple(layer.output.shape), layer.count_params(), _macs(layer, fvcore)
        )
        for layer in _leaf_layers(model)
        if not isinstance(layer, keras.layers.InputLayer)
    ]


def count_macs(model, *, fvcore=False) -> int:
    """Multiply-accumulates of one forward pass of one image (see the module's conventions)."""
    return sum(c.macs for c in layer_costs(model, fvcore))


def summary(model) -> dict:
    """Totals of ``model``: parameters (all / trainable), MACs, input and output shapes."""
    return {
        "name": model.name,
        "input_shape": tuple(model.input_shape),
        "output_shape": model.output_shape,
        "params": int(model.count_params()),  # BatchNormalization statistics included
        "trainable_params": sum(int(np.prod(w.shape)) for w in model.trainable_weights),
        "macs": count_macs(model),
    }


def format_summary(rows: list[dict]) -> str:
    """A text table of :func:`summary` dicts (one row per model), MACs in G, params in M."""
    head = f"{'model':<36} {'input':>11} {'params (M)':>11} {'trainable (M)':>14} {'GMACs':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        size = "x".join(str(d) for d in r["input_shape"][1:])
        lines.append(
            f"{r['name']:<36} {size:>11} {r['params'] / 1e6:>11.3f} "
            f"{r['trainable_params'] / 1e6:>14.3f} {r['macs'] / 1e9:>8.3f}"
        )
    return "\n".join(lines)
