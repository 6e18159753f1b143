"""BatchNormalization folding: an inference-only copy of a model with every BatchNormalization that directly
follows a convolution merged into it (kernel scaled by ``gamma / sqrt(var + eps)`` on the output channels, bias
``scale * (b - mean) + beta``); layers keep their names, each folded BatchNormalization becomes an ``Identity``.

For the TensorFlow runtime and SavedModel exports only: TensorFlow does not fuse them (CPU time per call at batch
8, 299x299: 1434 against 1609 ms, python benchmarks/inference.py); OpenVINO and ONNX Runtime do.
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["fold_batchnorm", "foldable_pairs"]

_CONVS = ("Conv2D", "SeparableConv2D")


def _conv_before(bn):
    """The Conv2D/SeparableConv2D whose output only ``bn`` reads, normalised along its channel axis, or None."""
    nodes = bn._inbound_nodes
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
        return None
    conv = nodes[0].input_tensors[0]._keras_history.operation
    if type(conv).__name__ not in _CONVS or len(conv._inbound_nodes) != 1 or len(conv._outbound_nodes) != 1:
        return None
    axes = [bn.axis] if isinstance(bn.axis, int) else list(bn.axis)
    rank = len(conv.output.shape)
    channel = rank - 1 if conv.data_format == "channels_last" else 1
    return conv if len(axes) == 1 and axes[0] % rank == channel else None


def foldable_pairs(model) -> dict:
    """``{bn_layer_name: conv_layer_name}`` for every BatchNormalization of ``model`` that can be folded."""
    convs = {layer.name: _conv_before(layer) for layer in model.layers if type(layer).__name__ == "BatchNormalization"}
    return {bn: conv.name for bn, conv in convs.items() if conv is not None}


def _bn_scale_shift(bn):
    """(scale, shift) as float64 arrays so that bn(z) == scale * z + shift."""
    weights = {w.path.split("/")[-1]: np.asarray(w.numpy(), np.float64) for w in bn.weights}
    scale = weights.get("gamma", 1.0) / np.sqrt(weights["moving_variance"] + bn.epsilon)
    return scale, weights.get("beta", 0.0) - scale * weights["moving_mean"]


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
        # The last kernel makes the output channels, on its last axis (SeparableConv2D: the pointwise one).
        weights[-1] = weights[-1] * scale
        weights.append(scale * bias + shift)
        new.set_weights([w.astype(layer.dtype if layer.dtype else "float32") for w in weights])
