"""The Xception architecture as data: block specifications and the layer builder.

The network (Chollet, CVPR 2017, Fig. 5) is a stem of two plain convolutions
followed by a chain of *blocks*. Every block is a short chain of 3x3 depthwise
separable convolutions, each followed by BatchNormalization, with ReLU either
before each convolution ("pre", the entry/middle/exit blocks 2-13) or after it
("post", block 14). Most blocks add a residual: a strided 1x1 projection when
the block downsamples, the identity otherwise.

:func:`xception_spec` returns the official network as a :class:`XceptionSpec`;
:func:`build_features` turns a spec into Keras layers. Layer names follow
``keras.applications.Xception`` (``block1_conv1``, ``block4_sepconv2_bn``,
``block14_sepconv2_act``, ...); the residual-branch layers, which Keras leaves
unnamed, are called ``blockN_residual_conv``, ``blockN_residual_bn`` and
``blockN_add``.

The layer graph is the same as Keras's, so the weighted layers come out in the
same order, which is what the official (order-keyed) weight files rely on.
Only ``keras.layers`` is used, so the model runs on every Keras backend.
"""

from __future__ import annotations

import dataclasses

import keras

__all__ = ["BlockSpec", "XceptionSpec", "xception_spec", "build_features"]


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One Xception block.

    Attributes:
        name: Layer-name prefix, e.g. ``"block5"``.
        filters: Output channels of each separable convolution, in order.
        residual: ``"conv"`` (1x1 projection + BatchNormalization),
            ``"identity"``, or ``None`` (no residual connection).
        downsample: Whether the block ends with a 3x3/2 max pooling (the
            residual projection then has stride 2).
        activation: ``"pre"`` (ReLU before each separable convolution) or
            ``"post"`` (ReLU after each convolution's BatchNormalization).
        skip_first_activation: Omit the ReLU before the first convolution
            (block 2, whose input has just been through the stem's ReLU).
    """

    name: str
    filters: tuple[int, ...]
    residual: str | None = "identity"
    downsample: bool = False
    activation: str = "pre"
    skip_first_activation: bool = False


@dataclasses.dataclass(frozen=True)
class XceptionSpec:
    """A whole Xception network: the stem's filters and the blocks."""

    stem_filters: tuple[int, int]
    blocks: tuple[BlockSpec, ...]

    @property
    def output_channels(self) -> int:
        return self.blocks[-1].filters[-1]


def xception_spec(middle_flow_blocks: int = 8) -> XceptionSpec:
    """The official Xception: entry flow, ``middle_flow_blocks`` x middle, exit flow.

    Blocks are numbered from 2 (block 1 is the stem), so with the default 8
    middle blocks the exit flow is blocks 13 and 14, as in Keras.
    """
    if not isinstance(middle_flow_blocks, int) or middle_flow_blocks < 0:
        raise ValueError(
            "`middle_flow_blocks` must be a non-negative integer; "
            f"received middle_flow_blocks={middle_flow_blocks!r}."
        )
    entry = [
        BlockSpec("block2", (128, 128), "conv", True, skip_first_activation=True),
        BlockSpec("block3", (256, 256), "conv", True),
        BlockSpec("block4", (728, 728), "conv", True),
    ]
    middle = [
        BlockSpec(f"block{5 + i}", (728, 728, 728), "identity")
        for i in range(middle_flow_blocks)
    ]
    n = 5 + middle_flow_blocks
    exit_ = [
        BlockSpec(f"block{n}", (728, 1024), "conv", True),
        BlockSpec(f"block{n + 1}", (1536, 2048), None, activation="post"),
    ]
    return XceptionSpec(stem_filters=(32, 64), blocks=tuple(entry + middle + exit_))


def _conv_bn_relu(x, filters, strides, name, channel_axis):
    x = keras.layers.Conv2D(
        filters, 3, strides=strides, use_bias=False, name=name
    )(x)
    x = keras.layers.BatchNormalization(axis=channel_axis, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_act")(x)


def _block(x, block: BlockSpec, channel_axis: int):
    name = block.name
    shortcut = x
    if block.residual == "conv":
        shortcut = keras.layers.Conv2D(
            block.filters[-1],
            1,
            strides=2 if block.downsample else 1,
            padding="same",
            use_bias=False,
            name=f"{name}_residual_conv",
        )(x)
        shortcut = keras.layers.BatchNormalization(
            axis=channel_axis, name=f"{name}_residual_bn"
        )(shortcut)
    for i, filters in enumerate(block.filters, start=1):
        conv = f"{name}_sepconv{i}"
        pre = block.activation == "pre"
        if pre and not (i == 1 and block.skip_first_activation):
            x = keras.layers.Activation("relu", name=f"{conv}_act")(x)
        x = keras.layers.SeparableConv2D(
            filters, 3, padding="same", use_bias=False, name=conv
        )(x)
        x = keras.layers.BatchNormalization(axis=channel_axis, name=f"{conv}_bn")(x)
        if not pre:
            x = keras.layers.Activation("relu", name=f"{conv}_act")(x)
    if block.downsample:
        x = keras.layers.MaxPooling2D(
            3, strides=2, padding="same", name=f"{name}_pool"
        )(x)
    if block.residual is not None:
        x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return x


def build_features(x, spec: XceptionSpec | None = None, channel_axis: int = -1):
    """Apply the Xception layers to the Keras tensor ``x``.

    Returns the last feature map (``block14_sepconv2_act`` for the official
    spec: 2048 channels at 1/32 of the input resolution, rounded up).
    """
    spec = spec or xception_spec()
    x = _conv_bn_relu(x, spec.stem_filters[0], 2, "block1_conv1", channel_axis)
    x = _conv_bn_relu(x, spec.stem_filters[1], 1, "block1_conv2", channel_axis)
    for block in spec.blocks:
        x = _block(x, block, channel_axis)
    return x
