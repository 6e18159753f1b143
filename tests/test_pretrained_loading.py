"""Architecture variants: they build, run, take official weights where the shapes allow, and refuse clearly."""

import keras
import numpy as np
import pytest
from conftest import SMALL, randomize, rel_diff

import keras_xception as kx
from keras_xception.model import layers
from keras_xception.model import spec as architecture
from keras_xception.pretrained import loading as variants
from keras_xception.pretrained.formats import WeightsFileError


def build(**kw):
    kw.setdefault("include_top", False)
    kw.setdefault("input_shape", (SMALL, SMALL, 3))
    kw.setdefault("weights", None)
    return kx.Xception(**kw)


def sub(model, layer):
    return keras.Model(model.input, model.get_layer(layer).output)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """The official model (no top) with random weights and random BN statistics, and its file."""
    model = randomize(build(), seed=7)
    path = str(tmp_path_factory.mktemp("variants") / "official.weights.h5")
    model.save_weights(path)
    return model, path


@pytest.fixture(scope="module")
def x(images):
    return kx.preprocess_input(images[:1])


def test_defaults_are_the_official_spec():
    spec = architecture.xception_spec()
    assert spec.is_official and spec.takes_official_weights
    assert spec == architecture.xception_spec(
        8, residual=True, intermediate_activation=None, width_multiplier=1.0, output_stride=32
    )
    assert spec.output_stride == 32
    assert all(b.dilation_rate == 1 and b.stride == 2 for b in spec.blocks)


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
def test_every_variant_builds_and_runs(kw, size, out):
    model = build(input_shape=(size, size, 3), **kw)
    assert model.output_shape[1:] == out
    y = model.predict(np.zeros((1, size, size, 3), "float32"), verbose=0)
    assert y.shape == (1,) + out and np.isfinite(y).all()


def test_residual_false_has_no_shortcuts():
    model = build(residual=False)
    names = [lyr.name for lyr in model.layers]
    assert not [n for n in names if "residual" in n or n.endswith("_add")]
    assert not [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Add)]
    # 4 projections (conv + BN) fewer than the official model
    assert len(model.layers) == len(build().layers) - 4 * 3 - 8


def test_intermediate_activation_splits_every_separable_conv():
    model = build(intermediate_activation="elu")
    assert not [lyr for lyr in model.layers if isinstance(lyr, keras.layers.SeparableConv2D)]
    dw = model.get_layer("block5_sepconv2_depthwise")
    act = model.get_layer("block5_sepconv2_depthwise_act")
    pw = model.get_layer("block5_sepconv2_pointwise")
    assert isinstance(dw, keras.layers.DepthwiseConv2D) and dw.kernel.shape == (3, 3, 728, 1)
    assert act.get_config()["activation"] == "elu"
    assert isinstance(pw, keras.layers.Conv2D) and pw.kernel.shape == (1, 1, 728, 728)
    n_split = len([lyr for lyr in model.layers if isinstance(lyr, keras.layers.DepthwiseConv2D)])
    assert n_split == 2 * 3 + 3 * 8 + 2 * 2  # entry, middle, exit separable convolutions


def test_output_stride_strides_and_dilations():
    for os_, stride1, dil2, dil4 in [
        (16, ["block13"], ["block14"], []),
        (8, ["block4", "block13"], [f"block{i}" for i in range(5, 14)], ["block14"]),
    ]:
        model = build(output_stride=os_)
        for b in ("block2", "block3", "block4", "block13"):
            s = 1 if b in stride1 else 2
            assert model.get_layer(f"{b}_pool").strides in ((s, s), s)
            assert model.get_layer(f"{b}_residual_conv").strides in ((s, s), s)
        for b in dil2 + dil4:
            d = 4 if b in dil4 else 2
            assert model.get_layer(f"{b}_sepconv1").dilation_rate in ((d, d), d)
        assert model.get_layer("block4_sepconv1").dilation_rate in ((1, 1), 1)


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


# ---------------------------------------------------------------------------- pretrained weights


def test_linear_split_equals_official_exactly_with_official_weights(official, x):
    ref, path = official
    model = build(weights=path, intermediate_activation="linear")
    sep = ref.get_layer("block7_sepconv3")
    assert np.array_equal(model.get_layer("block7_sepconv3_depthwise").get_weights()[0], sep.get_weights()[0])
    assert np.array_equal(model.get_layer("block7_sepconv3_pointwise").get_weights()[0], sep.get_weights()[1])
    assert rel_diff(model.predict(x, verbose=0), ref.predict(x, verbose=0)) < 1e-4


def test_intermediate_none_is_the_official_model(official, x):
    ref, path = official
    model = build(weights=path, intermediate_activation=None)
    assert [lyr.name for lyr in model.layers] == [lyr.name for lyr in ref.layers]
    assert np.array_equal(model.predict(x, verbose=0), ref.predict(x, verbose=0))


def test_relu_split_holds_the_official_weights_and_changes_the_computation(official, x):
    ref, path = official
    model = build(weights=path, intermediate_activation="relu")
    for layer in ref.layers:
        if isinstance(layer, keras.layers.SeparableConv2D):
            dw, pw = layer.get_weights()
            assert np.array_equal(model.get_layer(f"{layer.name}_depthwise").get_weights()[0], dw)
            assert np.array_equal(model.get_layer(f"{layer.name}_pointwise").get_weights()[0], pw)
        elif layer.weights:
            for a, b in zip(model.get_layer(layer.name).get_weights(), layer.get_weights()):
                assert np.array_equal(a, b)
    # Same up to the first separable convolution, different after it (the ReLU acts).
    assert np.array_equal(
        sub(model, "block1_conv2_act").predict(x, verbose=0), sub(ref, "block1_conv2_act").predict(x, verbose=0)
    )
    assert (
        rel_diff(
            sub(model, "block2_sepconv1_bn").predict(x, verbose=0), sub(ref, "block2_sepconv1_bn").predict(x, verbose=0)
        )
        > 1e-3
    )


@pytest.mark.parametrize(
    "output_stride,unchanged,changed",
    [(16, "block13_sepconv2_bn", "block13_pool"), (8, "block4_sepconv2_bn", "block4_pool")],
)
def test_output_stride_matches_official_up_to_the_first_changed_block(official, x, output_stride, unchanged, changed):
    ref, path = official
    model = build(weights=path, output_stride=output_stride)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), ref.get_weights()))
    assert rel_diff(sub(model, unchanged).predict(x, verbose=0), sub(ref, unchanged).predict(x, verbose=0)) < 1e-5
    assert model.get_layer(changed).output.shape != ref.get_layer(changed).output.shape


@pytest.mark.parametrize("output_stride", [16, 8])
def test_atrous_model_is_the_official_model_sampled_densely(official, x, output_stride):
    """At odd map sizes (71 -> 33, 17, 9, 5, 3) every k-th output of the atrous model is the official output."""
    ref, path = official
    model = build(weights=path, output_stride=output_stride)
    k = 32 // output_stride
    dense, coarse = model.predict(x, verbose=0), ref.predict(x, verbose=0)
    assert dense.shape[1:3] == ((5, 5) if output_stride == 16 else (9, 9))
    assert rel_diff(dense[:, ::k, ::k], coarse) < 1e-5
    assert rel_diff(dense[:, 1::k, 1::k], coarse[:, :-1, :-1]) > 1e-3  # the in-between positions are new
    # Without dilation the features would differ: the dilated layers matter.
    plain = build(weights=path, output_stride=output_stride)
    for layer in plain.layers:
        if getattr(layer, "dilation_rate", 1) not in (1, (1, 1)) and hasattr(layer, "depthwise_kernel"):
            layer.dilation_rate = (1, 1)
    rebuilt = keras.Model.from_config(plain.get_config())
    rebuilt.set_weights(plain.get_weights())
    assert rel_diff(rebuilt.predict(x, verbose=0)[:, ::k, ::k], coarse) > 1e-3


def test_atrous_model_saves_and_loads_as_keras_file(tmp_path, x):
    model = randomize(build(output_stride=8), seed=5)
    assert isinstance(model.get_layer("block13_pool"), layers.DilatedMaxPooling2D)
    path = str(tmp_path / "os8.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    assert np.array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_dilated_pool_channels_first_matches_channels_last():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(1, 9, 9, 4)).astype("float32")
    last = layers.DilatedMaxPooling2D(3, 2, data_format="channels_last")(v)
    first = layers.DilatedMaxPooling2D(3, 2, data_format="channels_first")(np.transpose(v, (0, 3, 1, 2)))
    assert np.array_equal(
        np.transpose(keras.ops.convert_to_numpy(first), (0, 2, 3, 1)), keras.ops.convert_to_numpy(last)
    )
    # by hand at one position: max over rows/cols {2, 4, 6} around (4, 4), and the padded corner
    assert keras.ops.convert_to_numpy(last)[0, 4, 4, 0] == v[0, 2:7:2, 2:7:2, 0].max()
    assert keras.ops.convert_to_numpy(last)[0, 0, 0, 1] == v[0, 0:3:2, 0:3:2, 1].max()


def test_residual_false_takes_the_shared_layers_and_drops_the_projections(official):
    ref, path = official
    model = build(weights=path, residual=False)
    for layer in model.layers:
        for a, b in zip(layer.get_weights(), ref.get_layer(layer.name).get_weights()):
            assert np.array_equal(a, b)
    unused = variants.transfer_weights(ref, build(residual=False))
    assert sorted(unused) == sorted(f"block{b}_residual_{k}" for b in (2, 3, 4, 13) for k in ("conv", "bn"))


def test_combined_variant_with_top_from_keras_file(keras_reference, images):
    """A file with the classifier (written by keras.applications) into an atrous, split variant."""
    ref, path, _ = keras_reference
    x = kx.preprocess_input(images)
    model = kx.Xception(
        weights=path, input_shape=(SMALL, SMALL, 3), classifier_activation=None, intermediate_activation="linear"
    )
    assert rel_diff(model.predict(x, verbose=0), ref.predict(x, verbose=0)) < 1e-4
    atrous = kx.Xception(weights=path, input_shape=(SMALL, SMALL, 3), classifier_activation=None, output_stride=16)
    assert np.array_equal(
        atrous.get_layer("predictions").get_weights()[0], ref.get_layer("predictions").get_weights()[0]
    )


def test_legacy_h5_into_variant(tf_keras_reference, images):
    ref, path = tf_keras_reference
    import tf_keras

    x = kx.preprocess_input(images)
    model = build(weights=path, output_stride=16)
    feat = tf_keras.Model(ref.input, ref.get_layer("block13_sepconv2_bn").output)
    assert rel_diff(sub(model, "block13_sepconv2_bn").predict(x, verbose=0), feat.predict(x, verbose=0)) < 1e-4


@pytest.mark.parametrize(
    "kw", [dict(intermediate_activation="relu", residual=False), dict(width_multiplier=0.5, middle_flow_blocks=1)]
)
def test_variant_file_round_trips(tmp_path, x, kw):
    model = randomize(build(**kw), seed=4)
    path = str(tmp_path / "variant.weights.h5")
    model.save_weights(path)
    again = build(weights=path, **kw)
    assert np.array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_merge_split_weights_back_into_official(official):
    ref, _ = official
    split = build(intermediate_activation="relu")
    variants.transfer_weights(ref, split)
    back = build()
    assert variants.transfer_weights(split, back) == []
    assert all(np.array_equal(a, b) for a, b in zip(back.get_weights(), ref.get_weights()))


# ---------------------------------------------------------------------------- refusals and bad arguments


@pytest.mark.parametrize("kw", [dict(width_multiplier=0.5), dict(middle_flow_blocks=4)])
def test_registered_weights_refused_for_other_shapes(kw):
    with pytest.raises(ValueError, match="width_multiplier=1.0 and middle_flow_blocks=8"):
        build(weights="imagenet", **kw)  # refused before any download


def test_official_file_refused_for_other_shapes(official):
    _, path = official
    with pytest.raises(WeightsFileError, match="middle_flow_blocks=8"):
        build(weights=path, middle_flow_blocks=4)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(residual="no"), "residual"),
        (dict(intermediate_activation="gelu"), r"intermediate_activation.*'relu', 'elu'"),
        (dict(output_stride=4), r"output_stride.*\(32, 16, 8\)"),
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


def test_channels_first_variant_matches_channels_last(x):
    kw = dict(output_stride=8, intermediate_activation="elu", residual=False)
    last = randomize(build(**kw), seed=6)
    keras.config.set_image_data_format("channels_first")
    try:
        first = build(input_shape=(3, SMALL, SMALL), **kw)
        assert first.get_layer("block13_pool").data_format == "channels_first"
        first.set_weights(last.get_weights())
        out_first = first.predict(np.transpose(x, (0, 3, 1, 2)), verbose=0)
    finally:
        keras.config.set_image_data_format("channels_last")
    assert out_first.shape == (1, 2048, 9, 9)
    assert rel_diff(np.transpose(out_first, (0, 2, 3, 1)), last.predict(x, verbose=0)) < 1e-4


@pytest.mark.parametrize("kw", [dict(residual=False), dict(output_stride=16)])
def test_variant_with_top_from_a_notop_file_gets_a_fresh_head(official, kw):
    """Like the official model: a no-top file gives the variant its backbone and a fresh classifier."""
    ref, path = official
    with pytest.warns(UserWarning, match=r"has no classifier; .*10-class 'predictions'"):
        model = build(weights=path, include_top=True, classes=10, **kw)
    backbone = [layer for layer in model.layers if layer.weights and layer.name != "predictions"]
    for layer in backbone:
        assert all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), ref.get_layer(layer.name).get_weights()))
    kernel, bias = model.get_layer("predictions").get_weights()
    assert kernel.shape == (2048, 10) and not np.any(bias)  # Keras's initialisation, nothing loaded
