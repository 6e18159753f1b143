"""keras_xception.xception: the builder. Its arguments and their errors, the parameter counts of the paper,
and the same layers (classes, shapes, order, names) as keras.applications.Xception."""

import keras
import numpy as np
import pytest
from conftest import SMALL, rel_diff, small_xception

import keras_xception as kx


@pytest.fixture(scope="module")
def model():
    return kx.Xception(weights=None)


@pytest.fixture(scope="module")
def keras_app():
    return keras.applications.Xception(weights=None)


def trainable(m):
    return sum(int(np.prod(w.shape)) for w in m.trainable_weights)


@pytest.mark.slow
def test_parameter_counts_match_paper_and_keras(model):
    assert model.count_params() == 22_910_480
    assert trainable(model) == 22_855_952  # Chollet 2017, Table 3
    notop = kx.Xception(weights=None, include_top=False)
    assert notop.count_params() == 20_861_480


@pytest.mark.slow
def test_weighted_layers_same_classes_shapes_order_as_keras(model, keras_app):
    ref = keras_app
    sig = lambda m: [(type(lyr).__name__, [tuple(w.shape) for w in lyr.weights]) for lyr in m.layers if lyr.weights]
    assert sig(model) == sig(ref)
    # The .weights.h5 format keys layers by class and position among all layers.
    assert [type(lyr).__name__ for lyr in model.layers] == [type(lyr).__name__ for lyr in ref.layers]


@pytest.mark.slow
def test_keras_explicit_names_kept_and_residual_layers_named(model, keras_app):
    ref = keras_app
    ours = {lyr.name for lyr in model.layers}
    keras_named = {
        lyr.name for lyr in ref.layers if lyr.name.startswith("block") or lyr.name in ("avg_pool", "predictions")
    }
    assert keras_named <= ours
    for b in (2, 3, 4, 13):
        assert {f"block{b}_residual_conv", f"block{b}_residual_bn", f"block{b}_add"} <= ours
    for b in range(5, 13):
        assert f"block{b}_add" in ours
    assert not [lyr.name for lyr in model.layers if lyr.name.startswith(("conv2d", "batch_normalization", "add"))]


def test_minimum_input_and_feature_map_shape():
    m = kx.Xception(weights=None, include_top=False, input_shape=(SMALL, SMALL, 3))
    assert m.output_shape == (None, 3, 3, 2048)
    assert m.get_layer("block14_sepconv2_act").output.shape[1:] == (3, 3, 2048)


@pytest.mark.parametrize(
    "pooling,shape", [(None, (None, None, None, 2048)), ("avg", (None, 2048)), ("max", (None, 2048))]
)
def test_pooling(pooling, shape):
    m = kx.Xception(weights=None, include_top=False, pooling=pooling)
    assert m.output_shape == shape


@pytest.mark.parametrize("channels", [1, 5])
def test_any_channel_count_without_weights(channels):
    m = kx.Xception(weights=None, include_top=False, input_shape=(SMALL, SMALL, channels), pooling="avg")
    out = m.predict(np.zeros((1, SMALL, SMALL, channels), "float32"), verbose=0)
    assert out.shape == (1, 2048)
    assert m.get_layer("block1_conv1").kernel.shape == (3, 3, channels, 32)


def test_input_tensor_from_another_model():
    inp = keras.Input((96, 96, 3))
    t = keras.layers.Resizing(SMALL, SMALL)(inp)
    m = kx.Xception(weights=None, include_top=False, input_tensor=t, pooling="avg")
    assert m.inputs[0] is inp
    assert m.predict(np.zeros((1, 96, 96, 3), "float32"), verbose=0).shape == (1, 2048)


def test_input_tensor_must_be_symbolic():
    with pytest.raises(ValueError, match="input_tensor"):
        kx.Xception(weights=None, input_tensor=np.zeros((1, 80, 80, 3)))


def test_channels_first_matches_channels_last(channels_first):
    keras.config.set_image_data_format("channels_first")
    try:
        first = small_xception(include_top=False, input_shape=(3, SMALL, SMALL))
    finally:
        keras.config.set_image_data_format("channels_last")
    assert first.get_layer("block1_conv1_bn").axis in (1, [1])
    out_first, out_last = channels_first["small"]  # the same weights (conftest.CHANNELS_FIRST)
    assert out_first.shape == (2, 3, 3, 512)
    assert rel_diff(out_first, out_last) < 1e-4


def test_include_preprocessing_takes_raw_pixels(images):
    raw = small_xception(include_top=False, pooling="avg", include_preprocessing=True)
    plain = small_xception(include_top=False, pooling="avg")
    plain.set_weights(raw.get_weights())
    a = raw.predict(images, verbose=0)
    b = plain.predict(kx.preprocess_input(images), verbose=0)
    assert rel_diff(a, b) < 1e-5


def test_classes_and_activation_without_weights():
    m = small_xception(classes=7, classifier_activation=None)
    assert m.output_shape == (None, 7)
    assert m.get_layer("predictions").activation.__name__ == "linear"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(weights=None, input_shape=(70, 299, 3), include_top=False), "at least 71"),
        (dict(weights=None, input_shape=(299, 299), include_top=False), "3 entries"),
        (dict(weights=None, include_top=False, pooling="mean"), "pooling"),
        (dict(weights="imagenett"), "weights"),
        (dict(weights="/no/such/file.h5"), "no such file"),
        (dict(weights="imagenet", input_shape=(224, 224, 3)), "include_top=True"),
        (dict(weights="imagenet", classifier_activation="sigmoid"), "classifier_activation"),
        (dict(weights=None, classes=0), "classes"),
        (dict(weights=None, include_top="yes"), "include_top"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kx.Xception(**kwargs)


def test_pooling_with_top_warns():
    with pytest.warns(UserWarning, match="pooling"):
        small_xception(include_top=True, pooling="avg")


def test_xception_module_mirrors_keras_applications():
    from keras_xception import xception

    for name in ("Xception", "preprocess_input", "decode_predictions"):
        assert hasattr(xception, name) and hasattr(keras.applications.xception, name)
