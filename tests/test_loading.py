"""Weight files written by the reference implementations load into our model and give their outputs."""

import h5py
import keras
import numpy as np
import pytest

import keras_xception as kx
from keras_xception.pretrained.formats import WeightsFileError
from conftest import SMALL, rel_diff


def ours(**kw):
    kw.setdefault("input_shape", (SMALL, SMALL, 3))
    kw.setdefault("classifier_activation", None)
    return kx.Xception(**kw)


def test_keras3_weights_h5_parity(keras_reference, images):
    ref, path, _ = keras_reference
    x = kx.preprocess_input(images)
    model = ours(weights=path)
    assert rel_diff(model.predict(x, verbose=0), ref.predict(x, verbose=0)) < 1e-4


def test_keras3_weights_h5_into_notop(keras_reference, images):
    ref, path, _ = keras_reference
    x = kx.preprocess_input(images)
    model = ours(weights=path, include_top=False)
    feat_ref = keras.Model(ref.input, ref.get_layer("block14_sepconv2_act").output)
    assert rel_diff(model.predict(x, verbose=0), feat_ref.predict(x, verbose=0)) < 1e-4


def test_tf_keras_legacy_h5_parity(tf_keras_reference, images):
    ref, path = tf_keras_reference
    with h5py.File(path, "r") as f:  # really the Keras 2 layout the official files use
        assert "layer_names" in f.attrs and "backend" in f.attrs
    x = kx.preprocess_input(images)
    model = ours(weights=path)
    assert rel_diff(model.predict(x, verbose=0), ref.predict(x, verbose=0)) < 1e-4


def test_legacy_h5_with_top_into_notop_model(tf_keras_reference, images):
    ref, path = tf_keras_reference
    import tf_keras

    x = kx.preprocess_input(images)
    model = ours(weights=path, include_top=False, pooling="avg")
    feat = tf_keras.Model(ref.input, ref.get_layer("avg_pool").output)
    assert rel_diff(model.predict(x, verbose=0), feat.predict(x, verbose=0)) < 1e-4


def test_notop_file_into_top_model_names_the_layer(tmp_path):
    notop = ours(weights=None, include_top=False)
    p = str(tmp_path / "notop.weights.h5")
    notop.save_weights(p)
    with pytest.raises(WeightsFileError, match="predictions"):
        ours(weights=p)


def test_wrong_shapes_name_layer_and_shapes(tmp_path):
    other = ours(weights=None, include_top=False, input_shape=(SMALL, SMALL, 4))
    p = str(tmp_path / "four.weights.h5")
    other.save_weights(p)
    with pytest.raises(WeightsFileError, match=r"block1_conv1.*\(3, 3, 3, 32\).*\(3, 3, 4, 32\)"):
        ours(weights=p, include_top=False)


def test_other_architecture_is_refused(tmp_path):
    m = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3))
    p = str(tmp_path / "mobilenet.weights.h5")
    m.save_weights(p)
    with pytest.raises(WeightsFileError, match="Cannot load weights"):
        ours(weights=p)


@pytest.mark.parametrize("suffix", [".h5", ".weights.h5", ".keras"])
def test_corrupt_file_gives_clear_error(tmp_path, suffix):
    p = tmp_path / f"garbage{suffix}"
    p.write_bytes(b"this is not a weights file" * 100)
    with pytest.raises(WeightsFileError, match="truncated or corrupt"):
        ours(weights=str(p))


def test_truncated_file_gives_clear_error(keras_reference, tmp_path):
    _, path, _ = keras_reference
    data = open(path, "rb").read()
    p = tmp_path / "cut.weights.h5"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFileError):
        ours(weights=str(p))


def test_failed_load_assigns_nothing(tmp_path):
    """Shapes are checked before any weight is assigned: a bad file leaves the model as it was."""
    from keras_xception.pretrained.formats import load_weights

    model = ours(weights=None)
    before = [w.copy() for w in model.get_weights()]
    other = ours(weights=None, classes=10)
    p = str(tmp_path / "ten.weights.h5")
    other.save_weights(p)
    with pytest.raises(WeightsFileError, match="predictions"):
        load_weights(model, p)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_keras_model_file_from_keras_applications(keras_reference, images):
    ref, _, keras_path = keras_reference
    x = kx.preprocess_input(images)
    model = ours(weights=keras_path)
    assert rel_diff(model.predict(x, verbose=0), ref.predict(x, verbose=0)) < 1e-4


@pytest.mark.parametrize("builder", ["keras_xception", "keras.applications"])
def test_backbone_nested_in_a_fine_tuned_keras_model(tmp_path, images, builder):
    """The usual result of fine-tuning: Model(inputs, head(xception(inputs))) saved as .keras."""
    from conftest import randomize

    if builder == "keras_xception":
        backbone = kx.Xception(weights=None, include_top=False, input_shape=(SMALL, SMALL, 3), pooling="avg")
    else:
        backbone = keras.applications.Xception(weights=None, include_top=False, input_shape=(SMALL, SMALL, 3), pooling="avg")
    randomize(backbone, seed=7)
    inputs = keras.Input((SMALL, SMALL, 3))
    feats = backbone(inputs, training=False)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(keras.layers.Dropout(0.2)(feats))
    fine_tuned = keras.Model(inputs, outputs)
    path = str(tmp_path / "fine_tuned.keras")
    fine_tuned.save(path)

    x = kx.preprocess_input(images)
    model = ours(weights=path, include_top=False, pooling="avg")
    assert rel_diff(model.predict(x, verbose=0), backbone.predict(x, verbose=0)) < 1e-4
    # The fine-tuned head is not Xception's 1000-class top: like weights="imagenet_notop", the
    # file gives the pretrained backbone and a fresh classifier (bug: it was a layer-count error).
    with pytest.warns(UserWarning, match="has no classifier"):
        with_top = ours(weights=path, include_top=True, classes=10)
    with_top_backbone = keras.Model(with_top.inputs, with_top.get_layer("avg_pool").output)
    assert rel_diff(with_top_backbone.predict(x, verbose=0), backbone.predict(x, verbose=0)) < 1e-4


def test_nested_weights_h5(tmp_path, images):
    backbone = kx.Xception(weights=None, include_top=False, input_shape=(SMALL, SMALL, 3), pooling="avg")
    from conftest import randomize

    randomize(backbone, seed=8)
    inputs = keras.Input((SMALL, SMALL, 3))
    outer = keras.Model(inputs, keras.layers.Dense(2)(backbone(inputs)))
    path = str(tmp_path / "outer.weights.h5")
    outer.save_weights(path)
    x = kx.preprocess_input(images)
    model = ours(weights=path, include_top=False, pooling="avg")
    assert rel_diff(model.predict(x, verbose=0), backbone.predict(x, verbose=0)) < 1e-4


def test_keras_file_without_xception(tmp_path):
    m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    p = str(tmp_path / "small.keras")
    m.save(p)
    with pytest.raises(WeightsFileError, match="holds no Xception"):
        ours(weights=p)


@pytest.mark.parametrize("fmt,suffix", [("weights.h5", ".weights.h5"), ("legacy-h5", ".h5")])
def test_convert_round_trip_loads_in_keras_applications(tf_keras_reference, tmp_path, images, fmt, suffix):
    """convert_weights writes files that keras.applications.Xception itself loads."""
    from keras_xception.pretrained.loading import convert_weights

    ref, path = tf_keras_reference
    out = str(tmp_path / f"converted{suffix}")
    _, top = convert_weights(path, out, format=fmt)
    assert top
    k = keras.applications.Xception(weights=None, input_shape=(SMALL, SMALL, 3), classifier_activation=None)
    k.load_weights(out)
    x = kx.preprocess_input(images)
    assert rel_diff(k.predict(x, verbose=0), ref.predict(x, verbose=0)) < 1e-4
