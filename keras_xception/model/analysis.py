"""Parameters and multiply-accumulates (MACs) of a built model, layer by layer.

Counting convention (the one behind the 8.36 GMACs usually quoted for
Xception at 299x299, which :func:`count_macs` reproduces: 8,357,403,496):

* ``Conv2D``: ``out_h * out_w * k_h * k_w * (c_in / groups) * c_out``;
* ``DepthwiseConv2D``: ``out_h * out_w * k_h * k_w * c_in * depth_multiplier``;
* ``SeparableConv2D``: its depthwise part plus its pointwise part
  ``out_h * out_w * (c_in * depth_multiplier) * c_out``;
* ``Dense``: ``units_in * units_out`` per position;
* everything else 0: BatchNormalization (folded into the convolution before
  it at inference), activations, pooling, additions and biases are not
  multiply-accumulates of a weight matrix. Counting one operation per output
  element for them would add 0.04 G (8.40 G in all).

Dilation changes no count (a dilated 3x3 kernel still has 9 taps), but an
``output_stride`` of 16 or 8 keeps the exit (and middle) flow at a higher
resolution, so it multiplies their MACs. Counts are per image.
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


def _spatial(shape, layer):
    """(positions, channels) of a layer output shape (batch axis included)."""
    fmt = getattr(layer, "data_format", None) or keras.config.image_data_format()
    dims = shape[2:] if fmt == "channels_first" else shape[1:-1]
    if any(d is None for d in dims):
        raise ValueError(
            f"Cannot count MACs of layer {layer.name!r}: its output shape {tuple(shape)} has "
            "unknown spatial sizes. Build the model with a fixed input_shape, e.g. "
            "Xception(..., input_shape=(299, 299, 3))."
        )
    return int(np.prod(dims))


def _macs(layer) -> int:
    if isinstance(layer, keras.layers.SeparableConv2D):
        kh, kw, cin, mult = layer.depthwise_kernel.shape
        cout = layer.pointwise_kernel.shape[-1]
        return _spatial(layer.output.shape, layer) * (kh * kw * cin * mult + cin * mult * cout)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw, cin, mult = layer.kernel.shape
        return _spatial(layer.output.shape, layer) * kh * kw * cin * mult
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin_per_group, cout = layer.kernel.shape
        return _spatial(layer.output.shape, layer) * kh * kw * cin_per_group * cout
    if isinstance(layer, keras.layers.Dense):
        units_in, units_out = layer.kernel.shape
        positions = int(np.prod(layer.output.shape[1:-1])) if len(layer.output.shape) > 2 else 1
        return positions * units_in * units_out
    return 0


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def layer_costs(model) -> list[LayerCost]:
    """One :class:`LayerCost` per layer of ``model`` (nested models flattened)."""
    out = []
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        out.append(
            LayerCost(
                name=layer.name,
                class_name=type(layer).__name__,
                output_shape=tuple(layer.output.shape),
                params=int(layer.count_params()),
                macs=int(_macs(layer)),
            )
        )
    return out


def count_macs(model) -> int:
    """Multiply-accumulates of one forward pass of one image (see the module's convention)."""
    return sum(c.macs for c in layer_costs(model))


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
