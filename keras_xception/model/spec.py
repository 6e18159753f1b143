"""The Xception architecture as data (no Keras): :class:`BlockSpec`, :class:`XceptionSpec`, :func:`xception_spec`.

A stem of two convolutions, then blocks of 3x3 separable convolutions + BatchNormalization with a
residual; the variants (docs/variants.md) change the residuals, split the separable convolutions,
the middle flow's depth, the width, or the output stride. ``kind="aligned"`` is DeepLabV3+'s aligned
Xception (three separable convolutions per block, each depthwise one followed by BatchNormalization,
a strided last convolution instead of max pooling); ``"aligned_preact"`` timm's pre-activation form.
"""

from __future__ import annotations

import dataclasses

from keras_xception.checks import boolean, non_negative_int, one_of, positive_float

__all__ = [
    "BlockSpec",
    "XceptionSpec",
    "xception_spec",
    "scale_channels",
    "INTERMEDIATE_ACTIVATIONS",
    "OUTPUT_STRIDES",
    "MIN_INPUT_SIZE",
    "DEFAULT_INPUT_SIZE",
    "KINDS",
    "ARCHITECTURES",
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
#: Block kinds: the 2017 network's, DeepLabV3+'s aligned one, and timm's pre-activation aligned one.
KINDS = ("original", "aligned", "aligned_preact")
#: The named architectures (timm's names for the aligned ones): their :func:`xception_spec` arguments.
ARCHITECTURES = {
    "xception": {},
    "xception41": dict(kind="aligned", middle_flow_blocks=8),
    "xception65": dict(kind="aligned", middle_flow_blocks=16),
    "xception71": dict(kind="aligned", middle_flow_blocks=16, entry_flow_blocks=5),
    "xception41p": dict(kind="aligned_preact", middle_flow_blocks=8, bn_epsilon=1e-5),
    "xception65p": dict(kind="aligned_preact", middle_flow_blocks=16),
}


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One Xception block.

    Attributes:
        name: Layer-name prefix, e.g. ``"block5"``.
        filters: Output channels of each separable convolution, in order.
        residual: ``"conv"`` (1x1 projection + BatchNormalization), ``"identity"``, or ``None``.
        downsample: Whether the block ends with a 3x3 max pooling (stride ``stride``; aligned kinds: its
            last depthwise convolution has stride ``stride``).
        activation: ``"pre"`` (ReLU before each convolution) or ``"post"`` (after its BatchNormalization).
        skip_first_activation: No ReLU before the first convolution (block 2, after the stem's ReLU).
        stride: 2, or 1 where an output stride below 32 removes the downsampling (the pooling is
            then dilated by ``dilation_rate``: :class:`DilatedMaxPooling2D`).
        dilation_rate: Dilation of the block's depthwise kernels (1, or 2/4 after removed downsamplings).
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
    """A whole Xception network: the stem's filters, the blocks, and the options that made them.

    With an ``intermediate_activation`` each separable convolution ``<conv>`` is split into
    ``<conv>_depthwise``, ``<conv>_depthwise_act`` and a 1x1 ``<conv>_pointwise``.
    """

    stem_filters: tuple[int, int]
    blocks: tuple[BlockSpec, ...]
    intermediate_activation: str | None = None
    middle_flow_blocks: int = 8
    residual: bool = True
    width_multiplier: float = 1.0
    kind: str = "original"
    entry_flow_blocks: int = 3
    bn_epsilon: float = 1e-3

    @property
    def options(self) -> dict:
        """The :func:`xception_spec` keyword arguments that rebuild this spec (the aligned ones where not default)."""
        extra = dict(kind=self.kind, entry_flow_blocks=self.entry_flow_blocks, bn_epsilon=self.bn_epsilon)
        return dict(
            middle_flow_blocks=self.middle_flow_blocks,
            residual=self.residual,
            intermediate_activation=self.intermediate_activation,
            width_multiplier=self.width_multiplier,
            output_stride=self.output_stride,
            **{k: v for k, v in extra.items() if v != XceptionSpec.__dataclass_fields__[k].default},
        )

    @property
    def is_official(self) -> bool:
        """Whether this is the official Xception (the layer list of the weight files)."""
        return self == xception_spec()

    @property
    def arch(self) -> str | None:
        """The name in :data:`ARCHITECTURES` whose weights fit this spec (its kind, blocks and channels), or None."""
        for name, options in ARCHITECTURES.items():
            ref = xception_spec(**options)
            if (self.kind, self.stem_filters, [(b.name, b.filters) for b in self.blocks]) == (
                ref.kind, ref.stem_filters, [(b.name, b.filters) for b in ref.blocks]
            ):  # fmt: skip
                return name
        return None

    @property
    def takes_official_weights(self) -> bool:
        """Whether official weights fit (the official channels and blocks: not the width or depth variants)."""
        return self.arch == "xception"

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
    """``channels * width_multiplier`` rounded to the nearest multiple of 8 (halves up, at least 8),
    plus 8 if rounding lost more than 10%. The official counts are multiples of 8, so 1.0 changes nothing.
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
    kind: str = "original",
    entry_flow_blocks: int = 3,
    bn_epsilon: float = 1e-3,
) -> XceptionSpec:
    """The Xception network: entry flow, ``middle_flow_blocks`` x middle, exit flow (blocks numbered from 2).

    The defaults are the official architecture. ``residual=False`` removes the residual connections
    (the paper's Fig. 9); ``intermediate_activation`` sits between the depthwise and the pointwise
    convolution (Fig. 10; ``"linear"``: split layers, no activation); ``width_multiplier`` scales every
    channel count (:func:`scale_channels`); ``output_stride`` 16 or 8 turns the last downsamplings into
    dilations (DeepLab), weight shapes unchanged. ``kind`` (:data:`KINDS`): the aligned kinds have 3
    convolutions per block, ``entry_flow_blocks`` 3 or 5 (Xception-71) and their own residuals and
    activations; ``bn_epsilon``: of every BatchNormalization. ``ValueError`` for an argument outside the allowed values.
    """
    non_negative_int(middle_flow_blocks, "middle_flow_blocks")
    boolean(residual, "residual")
    one_of(intermediate_activation, "intermediate_activation", INTERMEDIATE_ACTIVATIONS)
    one_of(output_stride, "output_stride", OUTPUT_STRIDES)
    if positive_float(width_multiplier, "width_multiplier") == float("inf"):
        raise ValueError("`width_multiplier` must be finite (1.0 is the official width); received inf.")
    _check_kind(kind, entry_flow_blocks, bn_epsilon, residual and intermediate_activation is None)

    def c(*channels):
        return tuple(scale_channels(ch, width_multiplier) for ch in channels)

    n = 2 + entry_flow_blocks + middle_flow_blocks  # the first exit-flow block
    layout = _original_layout(n, c, residual) if kind == "original" else _aligned_layout(entry_flow_blocks, n, c)
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
        kind=kind,
        entry_flow_blocks=entry_flow_blocks,
        bn_epsilon=float(bn_epsilon),
    )


def _check_kind(kind, entry_flow_blocks, bn_epsilon, plain):
    """``ValueError`` for a ``kind`` or its options outside the allowed values (``plain``: residual, no split)."""
    one_of(kind, "kind", KINDS)
    one_of(entry_flow_blocks, "entry_flow_blocks", (3, 5) if kind != "original" else (3,))
    positive_float(bn_epsilon, "bn_epsilon")
    if kind != "original" and not plain:
        raise ValueError(
            f"kind={kind!r} has its own residuals and activations: pass residual=True and no intermediate_activation."
        )


def _original_layout(n, c, residual):
    """The 2017 network's blocks before the strides are set, ``n`` the first exit-flow block."""
    proj, ident = ("conv", "identity") if residual else (None, None)
    return [
        BlockSpec("block2", c(128, 128), proj, True, skip_first_activation=True),
        BlockSpec("block3", c(256, 256), proj, True),
        BlockSpec("block4", c(728, 728), proj, True),
        *(BlockSpec(f"block{i}", c(728, 728, 728), ident) for i in range(5, n)),
        BlockSpec(f"block{n}", c(728, 1024), proj, True),
        BlockSpec(f"block{n + 1}", c(1536, 2048), None, activation="post"),
    ]


def _aligned_layout(entry_flow_blocks, n, c):
    """DeepLabV3+'s blocks (timm's lists; Xception-71: two more stride-1 entry blocks), ``n`` the first exit block."""
    entry = (
        [(128, 1), (256, 0), (256, 1), (728, 0), (728, 1)] if entry_flow_blocks == 5 else [(128, 1), (256, 1), (728, 1)]
    )
    layout, before = [], c(64)[0]
    for i, (ch, down) in enumerate(entry, 2):  # a projection where the channels or the resolution change
        residual = "conv" if down or c(ch)[0] != before else "identity"
        layout.append(BlockSpec(f"block{i}", c(ch, ch, ch), residual, bool(down)))
        before = c(ch)[0]
    return layout + [
        *(BlockSpec(f"block{i}", c(728, 728, 728), "identity") for i in range(2 + len(entry), n)),
        BlockSpec(f"block{n}", c(728, 1024, 1024), "conv", True),
        BlockSpec(f"block{n + 1}", c(1536, 1536, 2048), None, activation="post"),
    ]
