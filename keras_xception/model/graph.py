"""Building an Xception ``keras.Model`` from an :class:`~keras_xception.model.spec.XceptionSpec`, without weights.

Layer names and order are ``keras.applications.Xception``'s (so order-keyed weight files fit); the
residual layers it leaves unnamed are ``blockN_residual_conv``, ``blockN_residual_bn``, ``blockN_add``.
"""

from __future__ import annotations

import warnings

import keras

from keras_xception.checks import boolean, one_of, positive_int
from keras_xception.model.layers import DilatedMaxPooling2D
from keras_xception.model.preprocessing import preprocessing_layer
from keras_xception.model.spec import DEFAULT_INPUT_SIZE, MIN_INPUT_SIZE, BlockSpec, XceptionSpec, xception_spec

__all__ = ["build_features", "build_model", "check_input_shape", "POOLINGS"]

#: Allowed ``pooling`` values.
POOLINGS = (None, "avg", "max")


def _conv_bn_relu(x, filters, strides, name, channel_axis, spec):
    """A 3x3 convolution + BatchNormalization + ReLU: unpadded (original), or padded by 1 on each side (aligned)."""
    padding = "valid" if spec.kind == "original" else "same"
    if padding == "same" and strides > 1:
        x, padding = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x), "valid"
    x = keras.layers.Conv2D(filters, 3, strides=strides, padding=padding, use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(axis=channel_axis, epsilon=spec.bn_epsilon, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_act")(x)


def _aligned_block(x, block: BlockSpec, channel_axis: int, spec: XceptionSpec):
    """An aligned block: three depthwise (+ BN) and pointwise (+ BN) pairs, the last depthwise one strided and padded
    by 1 on each side (PyTorch's, so timm's, alignment); ``aligned_preact``: BN + ReLU before each pair but the first
    (block 2's is the stem's ``block1_conv2_bn``/``_act``), no BN after, the residual taken after the block's BN."""
    name, pre = block.name, spec.kind == "aligned_preact"

    def bn(t, bn_name):
        return keras.layers.BatchNormalization(axis=channel_axis, epsilon=spec.bn_epsilon, name=bn_name)(t)

    def relu(t, act_name):
        return keras.layers.Activation("relu", name=act_name)(t)

    if pre and name != "block2":
        x = relu(bn(x, f"{name}_norm"), f"{name}_norm_act")
    shortcut, strides = x, block.stride if block.downsample else 1
    if block.residual == "conv":
        shortcut = keras.layers.Conv2D(
            block.filters[-1], 1, strides=strides, use_bias=False, name=f"{name}_residual_conv"
        )(x)
        shortcut = shortcut if pre else bn(shortcut, f"{name}_residual_bn")
    for i, filters in enumerate(block.filters, start=1):
        conv, s = f"{name}_sepconv{i}", strides if i == len(block.filters) else 1
        if pre and i > 1:
            x = relu(bn(x, f"{conv}_bn"), f"{conv}_act")
        elif not pre and block.activation == "pre":
            x = relu(x, f"{conv}_act")
        x = keras.layers.ZeroPadding2D(1, name=f"{conv}_pad")(x) if s > 1 else x
        x = keras.layers.DepthwiseConv2D(
            3, strides=s, padding="valid" if s > 1 else "same", dilation_rate=block.dilation_rate, use_bias=False,
            name=f"{conv}_depthwise",
        )(x)  # fmt: skip
        x = x if pre else bn(x, f"{conv}_depthwise_bn")
        x = relu(x, f"{conv}_depthwise_act") if not pre and block.activation == "post" else x
        x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{conv}_pointwise")(x)
        if not pre:
            x = bn(x, f"{conv}_bn")
            x = relu(x, f"{conv}_act") if block.activation == "post" else x
    if block.residual is not None:
        x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return x


def _separable(x, filters, name, dilation_rate, intermediate_activation):
    """A 3x3 depthwise separable convolution: one layer, or split in two."""
    if intermediate_activation is None:
        return keras.layers.SeparableConv2D(
            filters, 3, padding="same", dilation_rate=dilation_rate, use_bias=False, name=name
        )(x)
    x = keras.layers.DepthwiseConv2D(
        3, padding="same", dilation_rate=dilation_rate, use_bias=False, name=f"{name}_depthwise"
    )(x)
    x = keras.layers.Activation(intermediate_activation, name=f"{name}_depthwise_act")(x)
    return keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pointwise")(x)


def _block(x, block: BlockSpec, channel_axis: int, intermediate_activation=None):
    name = block.name
    shortcut = x
    if block.residual == "conv":
        shortcut = keras.layers.Conv2D(
            block.filters[-1],
            1,
            strides=block.stride if block.downsample else 1,
            padding="same",
            use_bias=False,
            name=f"{name}_residual_conv",
        )(x)
        shortcut = keras.layers.BatchNormalization(axis=channel_axis, name=f"{name}_residual_bn")(shortcut)
    for i, filters in enumerate(block.filters, start=1):
        conv = f"{name}_sepconv{i}"
        pre = block.activation == "pre"
        if pre and not (i == 1 and block.skip_first_activation):
            x = keras.layers.Activation("relu", name=f"{conv}_act")(x)
        x = _separable(x, filters, conv, block.dilation_rate, intermediate_activation)
        x = keras.layers.BatchNormalization(axis=channel_axis, name=f"{conv}_bn")(x)
        if not pre:
            x = keras.layers.Activation("relu", name=f"{conv}_act")(x)
    if block.downsample and block.stride == 1 and block.dilation_rate > 1:
        data_format = "channels_first" if channel_axis == 1 else "channels_last"
        x = DilatedMaxPooling2D(3, block.dilation_rate, data_format=data_format, name=f"{name}_pool")(x)
    elif block.downsample:
        x = keras.layers.MaxPooling2D(3, strides=block.stride, padding="same", name=f"{name}_pool")(x)
    if block.residual is not None:
        x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return x


def build_features(x, spec: XceptionSpec | None = None, channel_axis: int = -1):
    """Apply the Xception layers to the Keras tensor ``x``.

    Returns the last feature map (``block14_sepconv2_act`` for the official
    spec: 2048 channels at 1/32 of the input resolution, rounded up).
    """
    spec = spec or xception_spec()
    x = _conv_bn_relu(x, spec.stem_filters[0], 2, "block1_conv1", channel_axis, spec)
    x = _conv_bn_relu(x, spec.stem_filters[1], 1, "block1_conv2", channel_axis, spec)
    for block in spec.blocks:
        if spec.kind == "original":
            x = _block(x, block, channel_axis, spec.intermediate_activation)
        else:
            x = _aligned_block(x, block, channel_axis, spec)
    if spec.kind == "aligned_preact":  # the last block ends with a convolution
        x = keras.layers.Activation("relu", name=f"{spec.blocks[-1].name}_act")(x)
    return x


def check_input_shape(input_shape, input_tensor=None, include_top=True, default_size=None):
    """The model's input shape (no batch axis), checked; ``ValueError`` naming what is wrong.

    ``input_tensor``'s shape wins; with neither, ``default_size`` (299x299) with the top,
    ``(None, None)`` without, and 3 channels.
    """
    channels_first = keras.config.image_data_format() == "channels_first"
    if input_tensor is not None:
        if not keras.backend.is_keras_tensor(input_tensor):
            raise ValueError(
                "`input_tensor` must be a symbolic Keras tensor (e.g. `keras.Input(...)` or "
                f"another model's output); received {type(input_tensor).__name__}."
            )
        tensor_shape = tuple(input_tensor.shape[1:])
        if input_shape is not None and tuple(input_shape) != tensor_shape:
            raise ValueError(
                f"`input_shape`={tuple(input_shape)} does not match the shape of "
                f"`input_tensor` {tensor_shape}; pass one of them."
            )
        input_shape = tensor_shape
    if input_shape is None:
        size = tuple(default_size or (DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE)) if include_top else (None, None)
        input_shape = (3,) + size if channels_first else size + (3,)
    try:
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"`input_shape` must be a tuple of 3 integers; received {input_shape!r}.") from None
    layout = "(channels, height, width)" if channels_first else "(height, width, channels)"
    if len(input_shape) != 3:
        raise ValueError(f"`input_shape` must have 3 entries {layout}; received {input_shape}.")
    channels = input_shape[0] if channels_first else input_shape[2]
    spatial = input_shape[1:] if channels_first else input_shape[:2]
    if channels is None or channels < 1:
        raise ValueError(f"`input_shape` {layout} needs a known, positive channel count; received {input_shape}.")
    for d in spatial:
        if d is not None and d < MIN_INPUT_SIZE:
            raise ValueError(
                f"Xception needs inputs of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels; received "
                f"input_shape={input_shape} {layout}. Resize the images or pass a larger input_shape."
            )
    return input_shape


def build_model(
    spec: XceptionSpec | None = None,
    *,
    input_tensor=None,
    input_shape=None,
    default_size=None,
    include_preprocessing=False,
    include_top=True,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="xception",
):
    """A ``keras.Model`` of ``spec`` (default: the official network) with random weights.

    The arguments are :func:`keras_xception.Xception`'s; ``default_size`` is the ``(height, width)``
    used with the top when no shape is given. ``ValueError`` for an invalid one.
    """
    boolean(include_top, "include_top")
    one_of(pooling, "pooling", POOLINGS)
    positive_int(classes, "classes")
    if include_top and pooling is not None:
        warnings.warn(
            f"`pooling={pooling!r}` is ignored when include_top=True (the top always uses global average pooling).",
            stacklevel=3,
        )
    spec = spec or xception_spec()
    input_shape = check_input_shape(input_shape, input_tensor, include_top, default_size)
    channel_axis = 1 if keras.config.image_data_format() == "channels_first" else -1
    x = keras.Input(shape=input_shape, name="input_layer") if input_tensor is None else input_tensor
    inputs = x if input_tensor is None else keras.utils.get_source_inputs(input_tensor)
    if include_preprocessing:
        x = preprocessing_layer()(x)
    x = build_features(x, spec, channel_axis)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name=name)
