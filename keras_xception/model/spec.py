"""The Xception architecture as data: block specifications, no Keras.

The network (Chollet, CVPR 2017, Fig. 5) is a stem of two plain convolutions
followed by a chain of *blocks*. Every block is a short chain of 3x3 depthwise
separable convolutions, each followed by BatchNormalization, with ReLU either
before each convolution ("pre", the entry/middle/exit blocks 2-13) or after it
("post", block 14). Most blocks add a residual: a strided 1x1 projection when
the block downsamples, the identity otherwise.

:func:`xception_spec` returns the official network (or a variant) as an
:class:`XceptionSpec`; :mod:`keras_xception.model.graph` turns a spec into
Keras layers and :func:`keras_xception.model.introspect.spec_of` recovers the
spec of a built model.

Variants (all off by default, see :func:`xception_spec`): no residual
connections (the paper's Fig. 9 ablation), an activation between the depthwise
and the pointwise part of every separable convolution (Fig. 10), another
number of middle-flow blocks, a channel width multiplier, and an output stride
of 16 or 8 with atrous (dilated) convolutions instead of striding
(DeepLab-style).
"""

from __future__ import annotations

import dataclasses

from keras_xception.checks import non_negative_int, one_of, positive_float

__all__ = [
    "BlockSpec",
    "XceptionSpec",
    "xception_spec",
    "scale_channels",
    "INTERMEDIATE_ACTIVATIONS",
    "OUTPUT_STRIDES",
    "MIN_INPUT_SIZE",
    "DEFAULT_INPUT_SIZE",
]

#: The smallest input side Xception accepts (the stem and the four downsamplings
#: need 71 pixels to leave a 3x3 map).
MIN_INPUT_SIZE = 71
#: The input side of the official model and its ImageNet weights.
DEFAULT_INPUT_SIZE = 299

#: Allowed ``intermediate_activation`` values. ``"linear"`` splits the layers
#: like an activation would but applies none (numerically the official model).
INTERMEDIATE_ACTIVATIONS = (None, "linear", "relu", "elu")
#: Allowed ``output_stride`` values.
OUTPUT_STRIDES = (32, 16, 8)


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
        stride: Stride of the pooling and of the residual projection of a
            ``downsample`` block: 2, or 1 where an output stride below 32
            removes the downsampling (the 3x3 max pooling is kept, stride 1,
            dilated by ``dilation_rate``: :class:`DilatedMaxPooling2D`).
        dilation_rate: Dilation of the depthwise part of the block's separable
            convolutions (1, or 2/4 after removed downsamplings).
    """

    name: str
    filters: tuple[int, ...]
    residual: str | None = "identity"
    downsample: bool = False
    activation: str = "pre"
    skip_first_activation: bool = False
    stride: int = 2
    dilation_rate: int = 1


@dataclasses.dataclass(frozen=True)
class XceptionSpec:
    """A whole Xception network: the stem's filters, the blocks, and options.

    ``intermediate_activation`` is ``None`` (a ``SeparableConv2D`` layer per
    separable convolution, as in the official model) or an activation name:
    each separable convolution is then split into ``DepthwiseConv2D``
    (``<conv>_depthwise``), ``Activation`` (``<conv>_depthwise_act``) and a
    1x1 ``Conv2D`` (``<conv>_pointwise``).
    """

    stem_filters: tuple[int, int]
    blocks: tuple[BlockSpec, ...]
    intermediate_activation: str | None = None
    middle_flow_blocks: int = 8
    residual: bool = True
    width_multiplier: float = 1.0

    @property
    def options(self) -> dict:
        """The :func:`xception_spec` keyword arguments that rebuild this spec."""
        return dict(
            middle_flow_blocks=self.middle_flow_blocks,
            residual=self.residual,
            intermediate_activation=self.intermediate_activation,
            width_multiplier=self.width_multiplier,
            output_stride=self.output_stride,
        )

    @property
    def is_official(self) -> bool:
        """Whether this is the official Xception (the layer list of the weight files)."""
        return self == xception_spec()

    @property
    def takes_official_weights(self) -> bool:
        """Whether official weights fit: the official channels and blocks (names and filters).

        True for the official model and for ``residual=False``,
        ``intermediate_activation`` and ``output_stride`` variants.
        """
        official = xception_spec()
        return self.stem_filters == official.stem_filters and [(b.name, b.filters) for b in self.blocks] == [
            (b.name, b.filters) for b in official.blocks
        ]

    @property
    def output_channels(self) -> int:
        return self.blocks[-1].filters[-1]

    @property
    def output_stride(self) -> int:
        """Input size / feature-map size of the last block (32, 16 or 8)."""
        stride = 2  # block1_conv1
        for b in self.blocks:
            if b.downsample:
                stride *= b.stride
        return stride


def scale_channels(channels: int, width_multiplier: float) -> int:
    """Channels of a layer under ``width_multiplier``: ``channels * m`` rounded to a multiple of 8.

    The rule: round ``channels * m`` to the nearest multiple of 8 (halves up),
    at least 8, and add 8 if rounding lost more than 10% of ``channels * m``.
    Every official channel count (32, 64, 128, 256, 728, 1024, 1536, 2048) is a
    multiple of 8, so ``m = 1`` changes nothing; ``m = 0.5`` gives 16, 32, 64,
    128, 368, 512, 768, 1024.
    """
    target = channels * width_multiplier
    out = max(8, int(target + 4) // 8 * 8)
    if out < 0.9 * target:
        out += 8
    return out


def xception_spec(
    middle_flow_blocks: int = 8,
    *,
    residual: bool = True,
    intermediate_activation: str | None = None,
    width_multiplier: float = 1.0,
    output_stride: int = 32,
) -> XceptionSpec:
    """The Xception network: entry flow, ``middle_flow_blocks`` x middle, exit flow.

    The defaults give the official architecture; blocks are numbered from 2
    (block 1 is the stem), so with 8 middle blocks the exit flow is blocks 13
    and 14, as in Keras. ``residual=False`` removes every residual connection
    (the paper's Fig. 9); ``intermediate_activation`` ``"relu"``/``"elu"`` sits
    between the depthwise and the pointwise convolution (Fig. 10; ``"linear"``:
    split layers, no activation); ``width_multiplier`` scales every channel
    count (:func:`scale_channels`). ``output_stride`` 16 or 8 gives the last
    downsamplings (block 13's; blocks 4 and 13) stride 1 and dilates every
    later depthwise kernel (and block 13's pooling for 8) by the stride removed
    so far, as in DeepLab: weight shapes do not change, and where the maps have
    odd sizes (299x299, 71x71) the output sampled every 2 (16) or 4 (8) pixels
    is the official model's. ``ValueError`` for an argument outside the allowed values.
    """
    non_negative_int(middle_flow_blocks, "middle_flow_blocks")
    if not isinstance(residual, bool):
        raise ValueError(f"`residual` must be True or False; received residual={residual!r}.")
    one_of(intermediate_activation, "intermediate_activation", INTERMEDIATE_ACTIVATIONS)
    one_of(output_stride, "output_stride", OUTPUT_STRIDES)
    if positive_float(width_multiplier, "width_multiplier") == float("inf"):
        raise ValueError("`width_multiplier` must be finite (1.0 is the official width); received inf.")

    def c(*channels):
        return tuple(scale_channels(ch, width_multiplier) for ch in channels)

    proj, ident = ("conv", "identity") if residual else (None, None)
    n = 5 + middle_flow_blocks  # the first exit-flow block
    layout = [
        BlockSpec("block2", c(128, 128), proj, True, skip_first_activation=True),
        BlockSpec("block3", c(256, 256), proj, True),
        BlockSpec("block4", c(728, 728), proj, True),
        *(BlockSpec(f"block{i}", c(728, 728, 728), ident) for i in range(5, n)),
        BlockSpec(f"block{n}", c(728, 1024), proj, True),
        BlockSpec(f"block{n + 1}", c(1536, 2048), None, activation="post"),
    ]
    blocks, stride, dilation = [], 2, 1
    for b in layout:
        b = dataclasses.replace(b, dilation_rate=dilation)
        if b.downsample and stride * 2 <= output_stride:
            stride *= 2
        elif b.downsample:  # atrous: keep the resolution, dilate what follows
            b, dilation = dataclasses.replace(b, stride=1), dilation * 2
        blocks.append(b)
    return XceptionSpec(
        stem_filters=c(32, 64),
        blocks=tuple(blocks),
        intermediate_activation=intermediate_activation,
        middle_flow_blocks=middle_flow_blocks,
        residual=residual,
        width_multiplier=float(width_multiplier),
    )
