"""keras_xception.pretrained.formats: weight files of every format (legacy .h5, .weights.h5, .keras, nested
models), written by the reference implementations, load into our model and give their outputs; bad files
are clear errors that change nothing."""

import re
import warnings

import h5py
import keras
import numpy as np
import pytest
from conftest import SMALL, SMALL_OPTIONS, randomize, rel_diff, run, small_xception

import keras_xception as kx
from keras_xception.pretrained import formats
from keras_xception.pretrained.formats import WeightsFileError
from keras_xception.pretrained.loading import load_pretrained


def ours(**kw):
    kw.setdefault("input_shape", (SMALL, SMALL, 3))
    kw.setdefault("classifier_activation", None)
    return kx.Xception(**kw)


def test_keras3_weights_h5_parity(keras_reference, images):
    ref, path, _ = keras_reference
    x = kx.preprocess_input(images)
    model = ours(weights=path)
    assert rel_diff(run(model, x), run(ref, x)) < 1e-4


def test_keras3_weights_h5_into_notop(keras_reference, images):
    ref, path, _ = keras_reference
    x = kx.preprocess_input(images)
    model = ours(weights=path, include_top=False)
    feat_ref = keras.Model(ref.input, ref.get_layer("block14_sepconv2_act").output)
    assert rel_diff(run(model, x), run(feat_ref, x)) < 1e-4


def test_tf_keras_legacy_h5_parity(tf_keras_reference, images):
    ref, path = tf_keras_reference
    with h5py.File(path, "r") as f:  # really the Keras 2 layout the official files use
        assert "layer_names" in f.attrs and "backend" in f.attrs
    x = kx.preprocess_input(images)
    model = ours(weights=path)
    assert rel_diff(run(model, x), run(ref, x)) < 1e-4


def test_legacy_h5_with_top_into_notop_model(tf_keras_reference, images):
    ref, path = tf_keras_reference
    import tf_keras

    x = kx.preprocess_input(images)
    model = ours(weights=path, include_top=False, pooling="avg")
    feat = tf_keras.Model(ref.input, ref.get_layer("avg_pool").output)
    assert rel_diff(run(model, x), run(feat, x)) < 1e-4


def test_strict_load_needs_the_classifier(tmp_path):
    """load_pretrained(strict=True): a model with a top needs the file's top (by default it gets a fresh one)."""
    notop = ours(weights=None, include_top=False, **SMALL_OPTIONS)
    p = str(tmp_path / "notop.weights.h5")
    notop.save_weights(p)
    model = ours(weights=None, **SMALL_OPTIONS)
    before = model.get_weights()
    with pytest.raises(
        WeightsFileError,
        match=re.escape(repr(p))
        + r".* classifier 'predictions' \(shapes \[\(512, 1000\), \(1000,\)\]\) but the file has none",
    ):
        load_pretrained(model, p, strict=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_wrong_shapes_name_file_layer_and_shapes(tmp_path):
    other = ours(weights=None, include_top=False, input_shape=(SMALL, SMALL, 4), **SMALL_OPTIONS)  # 8 stem filters
    p = str(tmp_path / "four.weights.h5")
    other.save_weights(p)
    with pytest.raises(
        WeightsFileError,
        match=re.escape(repr(p)) + r".*block1_conv1.*\(3, 3, 3, 8\).*\(3, 3, 4, 8\).*first misfit: 'kernel'",
    ):
        ours(weights=p, include_top=False, **SMALL_OPTIONS)


def test_other_architecture_is_refused(tmp_path):
    m = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3))
    p = str(tmp_path / "mobilenet.weights.h5")
    m.save_weights(p)
    with pytest.raises(WeightsFileError, match="Cannot load weights"):
        ours(weights=p, **SMALL_OPTIONS)


@pytest.mark.parametrize("suffix", [".h5", ".weights.h5", ".keras"])
def test_corrupt_file_gives_clear_error(tmp_path, suffix):
    p = tmp_path / f"garbage{suffix}"
    p.write_bytes(b"this is not a weights file" * 100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(WeightsFileError, match="truncated or corrupt"):
            ours(weights=str(p), **SMALL_OPTIONS)
    assert not [c for c in caught if "classifier" in str(c.message)]  # no fresh-head notice for a failed load


def test_truncated_file_gives_clear_error(keras_reference, tmp_path):
    _, path, _ = keras_reference
    data = open(path, "rb").read()
    p = tmp_path / "cut.weights.h5"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFileError):
        ours(weights=str(p))


def test_failed_load_assigns_nothing(tmp_path):
    """Shapes are checked before any weight is assigned: a bad file leaves the model as it was."""
    model = ours(weights=None, **SMALL_OPTIONS)
    before = [w.copy() for w in model.get_weights()]
    other = ours(weights=None, classes=10, **SMALL_OPTIONS)
    p = str(tmp_path / "ten.weights.h5")
    other.save_weights(p)
    with pytest.raises(WeightsFileError, match=r"'predictions'.*\(512, 1000\).*\(512, 10\)"):
        load_pretrained(model, p, strict=True)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_keras_model_file_from_keras_applications(keras_reference, images):
    ref, _, keras_path = keras_reference
    x = kx.preprocess_input(images)
    model = ours(weights=keras_path)
    assert rel_diff(run(model, x), run(ref, x)) < 1e-4


@pytest.mark.parametrize("builder", ["keras_xception", "keras.applications"])
def test_backbone_nested_in_a_fine_tuned_keras_model(tmp_path, images, builder):
    """The usual result of fine-tuning: Model(inputs, head(xception(inputs))) saved as .keras."""
    options = SMALL_OPTIONS if builder == "keras_xception" else {}  # keras.applications: full size only
    if builder == "keras_xception":
        backbone = kx.Xception(
            weights=None, include_top=False, input_shape=(SMALL, SMALL, 3), pooling="avg", **SMALL_OPTIONS
        )
    else:
        backbone = keras.applications.Xception(
            weights=None, include_top=False, input_shape=(SMALL, SMALL, 3), pooling="avg"
        )
    randomize(backbone, seed=7)
    inputs = keras.Input((SMALL, SMALL, 3))
    feats = backbone(inputs, training=False)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(keras.layers.Dropout(0.2)(feats))
    fine_tuned = keras.Model(inputs, outputs)
    path = str(tmp_path / "fine_tuned.keras")
    fine_tuned.save(path)

    x = kx.preprocess_input(images)
    model = ours(weights=path, include_top=False, pooling="avg", **options)
    assert rel_diff(run(model, x), run(backbone, x)) < 1e-4
    # The fine-tuned head is not Xception's 1000-class top: like weights="imagenet_notop", the
    # file gives the pretrained backbone and a fresh classifier (bug: it was a layer-count error).
    with pytest.warns(UserWarning, match="has no classifier"):
        with_top = ours(weights=path, include_top=True, classes=10, **options)
    with_top_backbone = keras.Model(with_top.input, with_top.get_layer("avg_pool").output)
    assert rel_diff(run(with_top_backbone, x), run(backbone, x)) < 1e-4


def test_nested_weights_h5(tmp_path, images):
    backbone = small_xception(include_top=False, pooling="avg")
    randomize(backbone, seed=8)
    inputs = keras.Input((SMALL, SMALL, 3))
    outer = keras.Model(inputs, keras.layers.Dense(2)(backbone(inputs)))
    path = str(tmp_path / "outer.weights.h5")
    outer.save_weights(path)
    x = kx.preprocess_input(images)
    model = ours(weights=path, include_top=False, pooling="avg", **SMALL_OPTIONS)
    assert rel_diff(run(model, x), run(backbone, x)) < 1e-4


def test_keras_file_without_xception(tmp_path):
    m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    p = str(tmp_path / "small.keras")
    m.save(p)
    with pytest.raises(WeightsFileError, match="holds no Xception"):
        ours(weights=p)


def test_top_classes_of_every_format_and_width(tmp_path):
    """The classifier's class count is read from the last Dense kernel: any width, any format."""
    files = {}
    for name, model in [("top", small_xception(classes=7)), ("notop", small_xception(include_top=False))]:
        for suffix, save in [(".weights.h5", model.save_weights), (".keras", model.save), (".h5", None)]:
            p = str(tmp_path / f"{name}{suffix}")
            save(p) if save else formats.save_legacy_h5(model, p)
            files[name + suffix] = p
    # A fine-tuned model around a no-top backbone: its Dense head is not the Xception's top.
    backbone = small_xception(include_top=False, pooling="avg")
    inputs = keras.Input((SMALL, SMALL, 3))
    files["nested.weights.h5"] = str(tmp_path / "nested.weights.h5")
    keras.Model(inputs, keras.layers.Dense(3)(backbone(inputs))).save_weights(files["nested.weights.h5"])
    files["garbage.h5"] = str(tmp_path / "garbage.h5")
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5" * 100)
    got = {name: formats.top_classes(p) for name, p in files.items()}
    assert got == {
        "top.weights.h5": 7,
        "top.keras": 7,
        "top.h5": 7,
        "notop.weights.h5": None,
        "notop.keras": None,
        "notop.h5": None,
        "nested.weights.h5": None,
        "garbage.h5": None,
    }


def test_input_channel_adaptation(tmp_path, images):
    import keras

    path = str(tmp_path / "rgb.weights.h5")  # the first kernel's adaptation does not depend on the width
    randomize(small_xception(include_top=False), seed=9).save_weights(path)
    feat = lambda m: keras.Model(m.input, m.get_layer("block7_sepconv2_act").output)  # (the last feature map)
    rgb = feat(kx.Xception(weights=path, include_top=False, input_shape=(SMALL, SMALL, 3), **SMALL_OPTIONS))
    with pytest.warns(UserWarning, match="Adapting"):
        grey = feat(kx.Xception(weights=path, include_top=False, input_shape=(SMALL, SMALL, 1), **SMALL_OPTIONS))
    with pytest.warns(UserWarning, match="Adapting"):
        six = feat(kx.Xception(weights=path, include_top=False, input_shape=(SMALL, SMALL, 6), **SMALL_OPTIONS))
    g = kx.preprocess_input(images[..., :1])
    # Summed kernel on a grey image == RGB kernel on the grey image replicated in R, G, B.
    assert rel_diff(run(grey, g), run(rgb, np.repeat(g, 3, -1))) < 1e-4
    # Repeated, rescaled kernel on [RGB, RGB] == RGB kernel on RGB.
    x = kx.preprocess_input(images)
    assert rel_diff(run(six, np.concatenate([x, x], -1)), run(rgb, x)) < 1e-4
