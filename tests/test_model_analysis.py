"""Parameter and MAC counts, checked against counts written out by hand from the paper's Fig. 5."""

import keras
import pytest
from conftest import official_macs_by_hand, sep

import keras_xception as kx
from keras_xception.model import analysis


@pytest.fixture(scope="module")
def official():
    return kx.Xception(weights=None)  # 299x299, with the classifier


@pytest.mark.slow
def test_one_layer_by_hand(official):
    costs = {c.name: c for c in analysis.layer_costs(official)}
    # block4_sepconv2: 728 -> 728 at 37x37 (299 / 8, rounded up): 3x3 depthwise + 1x1 pointwise
    assert costs["block4_sepconv2"].macs == 37 * 37 * (3 * 3 * 728 + 728 * 728) == 734_517_784
    assert costs["block4_sepconv2"].params == 3 * 3 * 728 + 728 * 728
    assert costs["block1_conv1"].macs == 149 * 149 * 3 * 3 * 3 * 32
    assert costs["predictions"].macs == 2048 * 1000
    assert costs["block4_sepconv2_bn"].macs == costs["block4_pool"].macs == costs["block4_add"].macs == 0


@pytest.mark.slow
def test_official_total_is_the_quoted_8_36_gmacs(official):
    macs = kx.count_macs(official)
    assert macs == official_macs_by_hand()
    assert round(macs / 1e9, 2) == 8.36
    s = analysis.summary(official)
    assert s["params"] == 22_910_480 and s["trainable_params"] == 22_855_952  # paper, Table 3
    assert s["macs"] == macs and s["input_shape"] == (None, 299, 299, 3)
    assert sum(c.params for c in analysis.layer_costs(official)) == s["params"]


@pytest.mark.slow
@pytest.mark.parametrize("output_stride", [16, 8])
def test_atrous_counts_by_hand(output_stride):
    m = kx.Xception(weights=None, include_top=False, input_shape=(299, 299, 3), output_stride=output_stride)
    assert kx.count_macs(m) == official_macs_by_hand(output_stride=output_stride, top=False)


@pytest.mark.slow
def test_variant_counts_relate_to_the_official(official):
    base = kx.count_macs(official)
    split = kx.Xception(weights=None, intermediate_activation="relu")
    assert kx.count_macs(split) == base and split.count_params() == official.count_params()
    plain = kx.Xception(weights=None, residual=False)
    projections = 74**2 * 64 * 128 + 37**2 * 128 * 256 + 19**2 * 256 * 728 + 10**2 * 728 * 1024
    assert kx.count_macs(plain) == base - projections
    short = kx.Xception(weights=None, middle_flow_blocks=4)
    assert kx.count_macs(short) == base - 4 * 3 * sep(19, 728, 728)
    half = kx.Xception(weights=None, width_multiplier=0.5)
    assert 0.2 * base < kx.count_macs(half) < 0.3 * base  # channels^2 -> about a quarter


@pytest.mark.slow
def test_nested_and_preprocessing_models_count_the_same(official):
    pre = kx.Xception(weights=None, include_preprocessing=True)
    assert kx.count_macs(pre) == kx.count_macs(official)
    inp = keras.Input((299, 299, 3))
    outer = keras.Model(inp, official(inp))
    assert kx.count_macs(outer) == kx.count_macs(official)


def test_unknown_input_size_is_a_clear_error():
    m = kx.Xception(weights=None, include_top=False)
    with pytest.raises(ValueError, match="unknown spatial sizes.*input_shape"):
        kx.count_macs(m)


@pytest.mark.slow
def test_format_summary(official):
    text = analysis.format_summary([analysis.summary(official)])
    assert "xception" in text and "299x299x3" in text and "8.357" in text and "22.910" in text
