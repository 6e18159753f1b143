"""Multi-scale feature maps: layers, shapes and channels per stride, for the official model and variants."""

import keras
import numpy as np
import pytest
from conftest import SMALL, SMALL_OPTIONS

import keras_xception as kx

SIZE = 96  # 96 -> stem 45 -> 23 -> 12 -> 6 -> 3


def spatial(n, stride, output_stride=32):
    """Map size at ``stride`` for an n x n input: stem (valid 3x3/2, valid 3x3), then 'same' halvings."""
    size = (n - 3) // 2 + 1 - 2
    s = 2
    while s < min(stride, output_stride):
        size = -(-size // 2)
        s *= 2
    return size


@pytest.fixture(scope="module")
def model():
    return kx.Xception(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))


def test_official_layers_channels_and_shapes(model):
    assert kx.feature_layers(model) == {
        2: "block1_conv2_act",
        4: "block2_add",
        8: "block3_add",
        16: "block12_add",
        32: "block14_sepconv2_act",
    }
    fx = kx.feature_extractor(model, strides=(2, 4, 8, 16, 32))
    outs = fx.predict(np.zeros((1, SIZE, SIZE, 3), "float32"), verbose=0)
    shapes = [o.shape[1:] for o in outs]
    assert shapes == [(45, 45, 64), (23, 23, 128), (12, 12, 256), (6, 6, 728), (3, 3, 2048)]
    assert shapes == [(spatial(SIZE, s),) * 2 + (c,) for s, c in zip((2, 4, 8, 16, 32), (64, 128, 256, 728, 2048))]
    assert spatial(299, 32) == 10 and spatial(299, 2) == 147  # the documented 299x299 sizes


def test_features_are_the_models_own_activations(model, images):
    x = kx.preprocess_input(images[:1, :SMALL, :SMALL])
    x = np.pad(x, ((0, 0), (0, SIZE - SMALL), (0, SIZE - SMALL), (0, 0)))
    fx = kx.feature_extractor(model, strides=(32, 8))  # any order, kept
    s32, s8 = fx.predict(x, verbose=0)
    assert np.array_equal(s32, model.predict(x, verbose=0))
    block3 = keras.Model(model.input, model.get_layer("block3_add").output).predict(x, verbose=0)
    assert np.array_equal(s8, block3)
    assert fx.get_layer("block1_conv1") is model.get_layer("block1_conv1")  # shared weights


@pytest.mark.parametrize(
    "output_stride,expected",
    [
        (
            16,
            {
                2: ("block1_conv2_act", 64),
                4: ("block2_add", 128),
                8: ("block3_add", 256),
                16: ("block14_sepconv2_act", 2048),
            },
        ),
        (8, {2: ("block1_conv2_act", 64), 4: ("block2_add", 128), 8: ("block14_sepconv2_act", 2048)}),
    ],
)
def test_atrous_models_keep_later_maps_at_their_stride(output_stride, expected):
    m = kx.Xception(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3), output_stride=output_stride)
    layers = kx.feature_layers(m)
    assert {s: (n, m.get_layer(n).output.shape[-1]) for s, n in layers.items()} == expected
    fx = kx.feature_extractor(m, strides=tuple(expected))
    for s, out in zip(expected, fx.outputs):
        assert tuple(out.shape[1:3]) == (spatial(SIZE, s, output_stride),) * 2
    with pytest.raises(ValueError, match=rf"stride\(s\) \[(16, )?32\].*output stride is {output_stride}"):
        kx.feature_extractor(m)


def test_variants_layer_names():
    m = kx.Xception(weights=None, include_top=False, residual=False, middle_flow_blocks=2, width_multiplier=0.5)
    layers = kx.feature_layers(m)
    assert layers == {
        2: "block1_conv2_act",
        4: "block2_pool",
        8: "block3_pool",
        16: "block6_sepconv3_bn",
        32: "block8_sepconv2_act",
    }
    fx = kx.feature_extractor(m, strides=(4, 16, 32))
    assert [o.shape[-1] for o in fx.outputs] == [64, 368, 1024]


def test_unknown_input_size_and_keras_applications():
    m = kx.Xception(weights=None, include_top=False, **SMALL_OPTIONS)  # (None, None, 3)
    fx = kx.feature_extractor(m, strides=(4, 32))
    outs = fx.predict(np.zeros((1, 80, 80, 3), "float32"), verbose=0)
    assert [o.shape[1:3] for o in outs] == [(spatial(80, 4),) * 2, (spatial(80, 32),) * 2]
    ref = keras.applications.Xception(weights=None, include_top=False)
    names = kx.feature_layers(ref)
    assert names[2] == "block1_conv2_act" and names[32] == "block14_sepconv2_act"
    assert all(isinstance(ref.get_layer(names[s]), keras.layers.Add) for s in (4, 8, 16))  # Keras's unnamed adds


def test_nested_xception():
    backbone = kx.Xception(weights=None, include_top=False, input_shape=(SMALL, SMALL, 3))
    inp = keras.Input((SMALL, SMALL, 3))
    outer = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(backbone(inp)))
    fx = kx.feature_extractor(outer, strides=(16,))
    assert fx.outputs[0].shape[1:] == (5, 5, 728)


@pytest.mark.parametrize(
    "strides,match",
    [((3,), "strides"), ((4, 4), "repeat"), ((), "non-empty"), ("x", "strides"), ((True,), "strides"), (64, "strides")],
)
def test_bad_strides(model, strides, match):
    with pytest.raises(ValueError, match=match):
        kx.feature_extractor(model, strides=strides)


def test_not_an_xception():
    inp = keras.Input((8, 8, 3))
    other = keras.Model(inp, keras.layers.Conv2D(4, 3)(inp))
    with pytest.raises(ValueError, match="must be or contain an Xception"):
        kx.feature_extractor(other)
