"""keras_xception.model.spec: the architecture as data (xception_spec, scale_channels) and its argument checks."""

import pytest
from conftest import notop71 as build

from keras_xception.model import spec as architecture


def test_middle_flow_is_eight_blocks_of_three_728_separable_convs():
    spec = architecture.xception_spec()
    middle = [b for b in spec.blocks if b.residual == "identity"]
    assert len(middle) == 8
    assert all(b.filters == (728, 728, 728) for b in middle)
    assert spec.output_channels == 2048


def test_defaults_are_the_official_spec():
    spec = architecture.xception_spec()
    assert spec.is_official and spec.takes_official_weights
    assert spec == architecture.xception_spec(
        8, residual=True, intermediate_activation=None, width_multiplier=1.0, output_stride=32
    )
    assert spec.output_stride == 32
    assert all(b.dilation_rate == 1 and b.stride == 2 for b in spec.blocks)


def test_width_multiplier_rounding():
    assert [architecture.scale_channels(c, 1.0) for c in (32, 64, 128, 256, 728, 1024, 1536, 2048)] == [
        32,
        64,
        128,
        256,
        728,
        1024,
        1536,
        2048,
    ]
    assert [architecture.scale_channels(c, 0.5) for c in (32, 728)] == [16, 368]  # 364 -> 368
    assert architecture.scale_channels(32, 0.1) == 8  # never below 8
    assert all(architecture.scale_channels(c, m) % 8 == 0 for c in (32, 728, 2048) for m in (0.3, 0.6, 1.3))
    model = build(width_multiplier=0.5)
    assert model.get_layer("block1_conv1").kernel.shape == (3, 3, 3, 16)
    assert model.get_layer("block5_sepconv1").pointwise_kernel.shape == (1, 1, 368, 368)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(residual="no"), "residual"),
        (dict(intermediate_activation="gelu"), r"intermediate_activation.*'relu', 'elu'"),
        (dict(output_stride=4), r"output_stride.*32, 16, 8"),
        (dict(output_stride=True), "output_stride"),
        (dict(width_multiplier=0), "width_multiplier"),
        (dict(width_multiplier=-1.0), "width_multiplier"),
        (dict(width_multiplier="wide"), "width_multiplier"),
        (dict(middle_flow_blocks=-1), "middle_flow_blocks"),
        (dict(middle_flow_blocks=2.5), "middle_flow_blocks"),
    ],
)
def test_bad_variant_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        build(**kw)
