"""keras_xception.model.introspect: find_xception, spec_of, tap.

Expected values are independent of the code under test: the model a test
built (found by identity), the spec the model was built from (spec_of must
give it back) with its block count written out, and activations computed by
running the inner model itself.
"""

import numpy as np
import pytest
from conftest import SMALL, SMALL_OPTIONS, randomize, small_xception

keras = pytest.importorskip("keras")

import keras_xception as kx  # noqa: E402
from keras_xception import preprocess_input  # noqa: E402
from keras_xception.model.introspect import find_xception, spec_of, tap  # noqa: E402
from keras_xception.model.spec import xception_spec  # noqa: E402

SHAPE = (SMALL, SMALL, 3)


def _small(**kwargs):
    return small_xception(include_top=False, **kwargs)


# ---------------------------------------------------------------- find_xception


def test_find_xception_itself_and_nested_two_levels_deep():
    xception = _small()
    assert find_xception(xception) is xception
    inputs = keras.Input(SHAPE)
    middle = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(xception(inputs)), name="middle")
    outer_in = keras.Input(SHAPE)
    outer = keras.Model(outer_in, keras.layers.Dense(3)(middle(outer_in)), name="outer")
    assert find_xception(middle) is xception
    assert find_xception(outer) is xception


def test_find_xception_built_inline_with_input_tensor():
    inputs = keras.Input(SHAPE)
    inline = small_xception(include_top=False, input_tensor=keras.layers.Rescaling(1 / 255)(inputs), input_shape=None)
    pooled = keras.layers.GlobalAveragePooling2D()(inline.output)
    model = keras.Model(inputs, keras.layers.Dense(3)(pooled), name="flat")
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert find_xception(model) is model


def test_find_xception_of_keras_applications(keras_applications):
    assert find_xception(keras_applications) is keras_applications
    inputs = keras.Input(SHAPE)
    wrapper = keras.Model(inputs, keras_applications(inputs), name="wrapper")
    assert find_xception(wrapper) is keras_applications


def test_find_xception_error_names_what_is_missing():
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(4, 3, name="block1_conv1")(inputs)  # a decoy: the first stem layer only
    x = keras.layers.Conv2D(4, 3, name="conv2")(x)
    model = keras.Model(inputs, x, name="not_xception")
    with pytest.raises(ValueError, match="must be or contain an Xception") as err:
        find_xception(model)
    message = str(err.value)
    assert "'not_xception'" in message
    assert "(missing: 'block1_conv2_act', 'block2_sepconv1')" in message  # block1_conv1 is there
    with pytest.raises(ValueError, match="missing: 'block1_conv1', 'block1_conv2_act', 'block2_sepconv1'"):
        find_xception(keras.Model(inputs, keras.Model(inputs, keras.layers.Flatten()(inputs))(inputs)))


# ---------------------------------------------------------------- spec_of


@pytest.mark.parametrize(
    "options, blocks",
    [
        ({}, 6),
        ({"middle_flow_blocks": 0}, 5),
        ({"middle_flow_blocks": 3}, 8),
        ({"residual": False}, 6),
        ({"intermediate_activation": "relu"}, 6),
        ({"intermediate_activation": "elu"}, 6),
        ({"intermediate_activation": "linear"}, 6),
        ({"width_multiplier": 0.5}, 6),
        ({"width_multiplier": 0.35}, 6),  # 2048 * 0.35 = 716.8 channels, rounded to 720
        ({"output_stride": 16}, 6),
        ({"output_stride": 8}, 6),
        ({"residual": False, "intermediate_activation": "relu", "output_stride": 8, "width_multiplier": 0.5}, 6),
    ],
)
def test_spec_of_gives_back_the_spec_a_variant_was_built_from(options, blocks):
    built_from = xception_spec(**{**SMALL_OPTIONS, **options})
    spec = spec_of(_small(**options))
    assert spec == built_from
    assert len(spec.blocks) == blocks
    assert spec.options == {
        "middle_flow_blocks": 1,
        "residual": True,
        "intermediate_activation": None,
        "width_multiplier": 0.25,
        "output_stride": 32,
        **options,
    }


def test_spec_of_keras_applications_is_the_official_spec(keras_applications):
    spec = spec_of(keras_applications)
    assert spec == xception_spec() and spec.is_official
    assert [b.name for b in spec.blocks] == [f"block{n}" for n in range(2, 15)]


def test_spec_of_a_model_without_xception_is_an_error():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)], name="plain")
    with pytest.raises(ValueError, match="'plain'"):
        spec_of(model)


# ---------------------------------------------------------------- tap


@pytest.fixture(scope="module")
def nested():
    """raw images -> Rescaling -> small Xception (nested) -> avg_pool -> head (nested: Dense 'predictions')."""
    keras.utils.set_random_seed(3)
    backbone = randomize(_small(), seed=3)
    return kx.build_classifier(3, backbone=backbone, input_shape=SHAPE, dropout=0.0), backbone


def test_tap_a_layer_inside_a_nested_model_equals_running_that_model(nested, images):
    model, backbone = nested
    probe = tap(model, outputs=["block5_add", "block7_sepconv2_act"], inputs=["predictions"])
    add, last, dense_in, out = (np.asarray(t) for t in probe(images))
    x = preprocess_input(images)  # what the classifier's own Rescaling layer computes
    inner = keras.Model(backbone.input, [backbone.get_layer("block5_add").output, backbone.output])
    want_add, want_last = (np.asarray(t) for t in inner(x))
    np.testing.assert_allclose(add, want_add, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(last, want_last, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dense_in, want_last.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, np.asarray(model(images)), rtol=1e-5, atol=1e-7)
    assert {id(w) for w in tap(model, outputs=["block5_add"]).weights} == {id(w) for w in model.weights}  # shared


def test_tap_unknown_name_is_an_error(nested):
    model, _ = nested
    with pytest.raises(ValueError, match="nope"):
        tap(model, outputs=["nope"])


@pytest.fixture(scope="module")
def keras_applications():
    return keras.applications.Xception(include_top=False, weights=None, input_shape=SHAPE)
