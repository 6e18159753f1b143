"""keras_xception.model.graph: every architecture variant builds and runs, with the layers its spec asks for."""

import keras
import numpy as np
import pytest
from conftest import CHANNELS_FIRST, SMALL, SMALL_OPTIONS, built_once, rel_diff, run
from conftest import notop71 as build


@pytest.fixture(scope="module")
def variant():
    """``variant(size, **kw)``: ``build(input_shape=(size, size, 3), **kw)``, each built once per module (several
    tests read the same variants' layers and shapes)."""
    return built_once(lambda size, **kw: build(input_shape=(size, size, 3), **kw))


@pytest.mark.parametrize(
    "kw,size,out",
    [
        (dict(residual=False), SMALL, (3, 3, 2048)),
        (dict(intermediate_activation="relu"), SMALL, (3, 3, 2048)),
        (dict(intermediate_activation="elu"), 96, (3, 3, 2048)),
        (dict(middle_flow_blocks=0), SMALL, (3, 3, 2048)),
        (dict(middle_flow_blocks=2), 80, (3, 3, 2048)),
        (dict(width_multiplier=0.5), SMALL, (3, 3, 1024)),
        (dict(width_multiplier=0.75, middle_flow_blocks=1), SMALL, (3, 3, 1536)),
        (dict(output_stride=16), SMALL, (5, 5, 2048)),
        (dict(output_stride=8), SMALL, (9, 9, 2048)),
        (dict(output_stride=16), 96, (6, 6, 2048)),
        (
            dict(output_stride=8, residual=False, intermediate_activation="elu", width_multiplier=0.25),
            80,
            (10, 10, 512),
        ),
    ],
)
def test_every_variant_builds_and_runs(variant, kw, size, out):
    model = variant(size, **kw)
    assert model.output_shape[1:] == out
    y = run(model, np.zeros((1, size, size, 3), "float32"))
    assert y.shape == (1,) + out and np.isfinite(y).all()


def test_residual_false_has_no_shortcuts(variant):
    model = variant(SMALL, residual=False)
    names = [lyr.name for lyr in model.layers]
    assert not [n for n in names if "residual" in n or n.endswith("_add")]
    assert not [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Add)]
    # 4 projections (conv + BN) fewer than the official model
    assert len(model.layers) == len(build().layers) - 4 * 3 - 8


def test_intermediate_activation_splits_every_separable_conv(variant):
    model = variant(96, intermediate_activation="elu")  # (its kernels do not depend on the input size)
    assert not [lyr for lyr in model.layers if isinstance(lyr, keras.layers.SeparableConv2D)]
    dw = model.get_layer("block5_sepconv2_depthwise")
    act = model.get_layer("block5_sepconv2_depthwise_act")
    pw = model.get_layer("block5_sepconv2_pointwise")
    assert isinstance(dw, keras.layers.DepthwiseConv2D) and dw.kernel.shape == (3, 3, 728, 1)
    assert act.get_config()["activation"] == "elu"
    assert isinstance(pw, keras.layers.Conv2D) and pw.kernel.shape == (1, 1, 728, 728)
    n_split = len([lyr for lyr in model.layers if isinstance(lyr, keras.layers.DepthwiseConv2D)])
    assert n_split == 2 * 3 + 3 * 8 + 2 * 2  # entry, middle, exit separable convolutions


def test_output_stride_strides_and_dilations(variant):
    for os_, stride1, dil2, dil4 in [
        (16, ["block13"], ["block14"], []),
        (8, ["block4", "block13"], [f"block{i}" for i in range(5, 14)], ["block14"]),
    ]:
        model = variant(SMALL, output_stride=os_)
        for b in ("block2", "block3", "block4", "block13"):
            s = 1 if b in stride1 else 2
            assert model.get_layer(f"{b}_pool").strides in ((s, s), s)
            assert model.get_layer(f"{b}_residual_conv").strides in ((s, s), s)
        for b in dil2 + dil4:
            d = 4 if b in dil4 else 2
            assert model.get_layer(f"{b}_sepconv1").dilation_rate in ((d, d), d)
        assert model.get_layer("block4_sepconv1").dilation_rate in ((1, 1), 1)


def test_channels_first_variant_matches_channels_last(channels_first):
    keras.config.set_image_data_format("channels_first")
    try:
        first = build(input_shape=(3, SMALL, SMALL), **CHANNELS_FIRST["variant"][0], **SMALL_OPTIONS)
    finally:
        keras.config.set_image_data_format("channels_last")
    assert first.get_layer("block6_pool").data_format == "channels_first"
    out_first, out_last = channels_first["variant"]  # the same random weights and BN statistics
    assert out_first.shape == (2, 9, 9, 512)
    assert rel_diff(out_first, out_last) < 1e-4
