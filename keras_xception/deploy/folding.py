"""BatchNormalization folding: an inference-only copy of a model with every BatchNormalization that
directly follows a convolution merged into it (kernel scaled by ``gamma / sqrt(var + eps)`` along the output
channels, the pointwise kernel of a SeparableConv2D; bias ``scale * (b - mean) + beta``). Layers keep their
names; each folded BatchNormalization becomes an ``Identity``. Exact up to float rounding (about 1e-6).

Used for the TensorFlow runtime and SavedModel exports only, which do not fuse them (299x299, CPU time per
call 1434 against 1609 ms at batch 8: ``python benchmarks/inference.py``). OpenVINO and ONNX Runtime fuse
them themselves: folding first changed neither their speed (within 3%) nor their outputs.
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["fold_batchnorm", "foldable_pairs"]

_CONVS = ("Conv2D", "SeparableConv2D")


def _single_producer(layer):
    """The layer whose only consumer is ``layer`` and which is its only input, or None."""
    if len(layer._inbound_nodes) != 1:
        return None
    node = layer._inbound_nodes[0]
    if len(node.input_tensors) != 1:
        return None
    producer = node.input_tensors[0]._keras_history.operation
    if type(producer).__name__ not in _CONVS:
        return None
    if len(producer._inbound_nodes) != 1 or len(producer._outbound_nodes) != 1:
        return None
    return producer


def _channel_axis_ok(bn, conv) -> bool:
    axis = bn.axis if isinstance(bn.axis, int) else (bn.axis[0] if len(bn.axis) == 1 else None)
    if axis is None:
        return False
    rank = len(conv.output.shape)
    axis = axis % rank
    want = rank - 1 if conv.data_format == "channels_last" else 1
    return axis == want


def foldable_pairs(model) -> dict:
    """``{bn_layer_name: conv_layer_name}`` for every BatchNormalization of
    ``model`` that can be folded: its single input is a Conv2D/SeparableConv2D
    whose output feeds nothing else, normalised along the channel axis."""
    pairs = {}
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        conv = _single_producer(layer)
        if conv is not None and _channel_axis_ok(layer, conv):
            pairs[layer.name] = conv.name
    return pairs


def _bn_scale_shift(bn):
    """(scale, shift) as float64 arrays so that bn(z) == scale * z + shift."""
    weights = {w.path.split("/")[-1]: np.asarray(w.numpy(), np.float64) for w in bn.weights}
    mean = weights["moving_mean"]
    var = weights["moving_variance"]
    gamma = weights.get("gamma", np.ones_like(mean))
    beta = weights.get("beta", np.zeros_like(mean))
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - scale * mean


def fold_batchnorm(model, name: str | None = None):
    """A copy of the functional ``model`` with BatchNormalization folded into the preceding Conv2D /
    SeparableConv2D layers, for inference: ``model(x, training=False)``'s outputs up to float rounding.
    ``model`` is not modified; a BatchNormalization that cannot be folded (shared input) is kept.

    Args:
        model: A functional (or Sequential) ``keras.Model``.
        name: Name of the new model (default: the original name).

    Raises:
        ValueError: if ``model`` is not a built functional model.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
        raise ValueError(
            "`model` must be a functional keras.Model (such as keras_xception.Xception(...)); "
            f"received {type(model).__name__}."
        )
    pairs = foldable_pairs(model)
    folded_convs = set(pairs.values())

    def clone(layer):
        config = layer.get_config()
        if layer.name in pairs:
            return keras.layers.Identity(name=layer.name)
        if layer.name in folded_convs:
            config["use_bias"] = True
            config["bias_initializer"] = "zeros"
        return layer.__class__.from_config(config)

    def call(layer, *args, **kwargs):
        if layer.name in pairs:  # the Identity takes no BatchNormalization arguments
            kwargs.pop("mask", None)
            kwargs.pop("training", None)
        return layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone, call_function=call)
    if name is not None:
        folded.name = name
    _copy_weights(model, folded, pairs)
    return folded


def _copy_weights(model, folded, pairs):
    """Weights of ``model`` into ``folded``, each folded convolution's scaled by its BatchNormalization."""
    conv_to_bn = {c: b for b, c in pairs.items()}
    for layer in model.layers:
        if layer.name in pairs or not layer.weights:
            continue
        new = folded.get_layer(layer.name)
        if layer.name not in conv_to_bn:
            new.set_weights(layer.get_weights())
            continue
        scale, shift = _bn_scale_shift(model.get_layer(conv_to_bn[layer.name]))
        weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
        bias = weights.pop() if layer.use_bias else np.zeros_like(scale)
        # The kernel that produces the output channels is the last one
        # (Conv2D: the kernel; SeparableConv2D: the pointwise kernel), with
        # output channels on its last axis.
        weights[-1] = weights[-1] * scale
        weights.append(scale * bias + shift)
        new.set_weights([w.astype(layer.dtype if layer.dtype else "float32") for w in weights])
