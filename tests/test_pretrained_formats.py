"""Weight files written by the reference implementations load into our model and give their outputs."""

import ast
import os
import re
import warnings

import h5py
import keras
import numpy as np
import pytest
from conftest import SMALL, randomize, rel_diff

import keras_xception as kx
from keras_xception.pretrained import formats
from keras_xception.pretrained.formats import WeightsFileError
from keras_xception.pretrained.loading import load_pretrained

#: A small variant, for tests that need no official layout.
TINY = dict(width_multiplier=0.25, middle_flow_blocks=1)


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


def test_strict_load_weights_needs_the_classifier(tmp_path):
    """formats.load_weights is strict: a model with a top needs the file's top (load_pretrained is not)."""
    notop = ours(weights=None, include_top=False, **TINY)
    p = str(tmp_path / "notop.weights.h5")
    notop.save_weights(p)
    model = ours(weights=None, **TINY)
    before = model.get_weights()
    with pytest.raises(
        WeightsFileError,
        match=re.escape(repr(p))
        + r".* classifier 'predictions' \(shapes \[\(512, 1000\), \(1000,\)\]\) but the file has none",
    ):
        formats.load_weights(model, p)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_wrong_shapes_name_file_layer_and_shapes(tmp_path):
    other = ours(weights=None, include_top=False, input_shape=(SMALL, SMALL, 4))
    p = str(tmp_path / "four.weights.h5")
    other.save_weights(p)
    with pytest.raises(
        WeightsFileError, match=re.escape(repr(p)) + r".*block1_conv1.*\(3, 3, 3, 32\).*\(3, 3, 4, 32\)"
    ):
        ours(weights=p, include_top=False)


def test_failed_load_pretrained_assigns_nothing(tmp_path):
    """A file that fits the first layers but not the last: the error names file, layer, shapes; nothing changes."""
    small = dict(weights=None, include_top=False, input_shape=(SMALL, SMALL, 3), width_multiplier=0.25)
    p = str(tmp_path / "two_middle_blocks.weights.h5")
    kx.Xception(middle_flow_blocks=2, **small).save_weights(p)
    model = kx.Xception(middle_flow_blocks=1, **small)
    before = model.get_weights()
    shapes = r"expects shapes \[\(3, 3, 184, 1\), \(1, 1, 184, 256\)\], but the file's .* has \[\(3, 3, 184, 1\), \(1, 1, 184, 184\)\]"
    with pytest.raises(WeightsFileError, match=re.escape(repr(p)) + r".*'block6_sepconv2' .*" + shapes):
        load_pretrained(model, p)  # layer #30: the 29 before it fit
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(WeightsFileError, match="truncated or corrupt"):
            ours(weights=str(p))
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
    model = ours(weights=None, **TINY)
    before = [w.copy() for w in model.get_weights()]
    other = ours(weights=None, classes=10, **TINY)
    p = str(tmp_path / "ten.weights.h5")
    other.save_weights(p)
    with pytest.raises(WeightsFileError, match=r"'predictions'.*\(512, 1000\).*\(512, 10\)"):
        formats.load_weights(model, p)
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


# ---------------------------------------------------------------------------- a file is like a registered set


def pooled(model, x):
    """The backbone's globally averaged features (the input of the classifier)."""
    if "avg_pool" in [layer.name for layer in model.layers]:
        return keras.Model(model.inputs, model.get_layer("avg_pool").output).predict(x, verbose=0)
    return model.predict(x, verbose=0).mean(axis=(1, 2))


def assert_fresh_head(model, classes, width=2048):
    kernel, bias = model.get_layer("predictions").get_weights()
    assert kernel.shape == (width, classes) and model.output_shape == (None, classes)
    assert not np.any(bias)  # Keras's initialisation: nothing was loaded into it


def test_keras_file_without_top_into_a_model_with_top(tmp_path, images):
    """Bug 8: Xception(weights=<.keras no-top backbone>, classes=10) was a layer-count error."""
    backbone = randomize(kx.Xception(weights=None, include_top=False, input_shape=(SMALL, SMALL, 3)), seed=12)
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    with pytest.warns(UserWarning, match=r"has no classifier; .*new, randomly initialised 10-class 'predictions'"):
        model = ours(weights=path, classes=10)
    x = kx.preprocess_input(images)
    assert rel_diff(pooled(model, x), pooled(backbone, x)) < 1e-4
    assert_fresh_head(model, 10)


@pytest.mark.parametrize("kind", ["weights.h5", "keras", "legacy h5"])
def test_file_with_another_class_count_gives_a_fresh_head(request, images, kind):
    if kind == "legacy h5":
        import tf_keras as ref_keras

        ref, path = request.getfixturevalue("tf_keras_reference")
    else:
        ref_keras = keras
        ref, weights_path, keras_path = request.getfixturevalue("keras_reference")
        path = weights_path if kind == "weights.h5" else keras_path
    with pytest.warns(UserWarning, match=r"has a 1000-class top; .*new, randomly initialised 10-class"):
        model = ours(weights=path, classes=10)
    x = kx.preprocess_input(images)
    ref_pooled = ref_keras.Model(ref.inputs, ref.get_layer("avg_pool").output).predict(x, verbose=0)
    assert rel_diff(pooled(model, x), ref_pooled) < 1e-4
    assert_fresh_head(model, 10)


def test_weights_h5_without_top_into_a_model_with_top(notop_reference, images):
    ref, path = notop_reference
    with pytest.warns(UserWarning, match="has no classifier"):
        model = ours(weights=path, classes=10)
    x = kx.preprocess_input(images)
    assert rel_diff(pooled(model, x), pooled(ref, x)) < 1e-4
    assert_fresh_head(model, 10)


def test_width_variant_file_with_top(tmp_path, images):
    """A variant's own file with its top: the top loads when the class count agrees, else a fresh one."""
    ref = randomize(ours(weights=None, classes=7, **TINY), seed=13)
    path = str(tmp_path / "tiny7.weights.h5")
    ref.save_weights(path)
    x = kx.preprocess_input(images)
    same = ours(weights=path, classes=7, **TINY)
    assert np.array_equal(same.predict(x, verbose=0), ref.predict(x, verbose=0))
    with pytest.warns(UserWarning, match="has a 7-class top"):
        other = ours(weights=path, classes=3, **TINY)
    assert rel_diff(pooled(other, x), pooled(ref, x)) < 1e-5
    assert_fresh_head(other, 3, width=512)


def test_top_classes_of_every_format_and_width(tmp_path):
    """The classifier's class count is read from the last Dense kernel: any width, any format."""
    small = dict(weights=None, input_shape=(SMALL, SMALL, 3), **TINY)
    files = {}
    for name, model in [("top", kx.Xception(classes=7, **small)), ("notop", kx.Xception(include_top=False, **small))]:
        for suffix, save in [(".weights.h5", model.save_weights), (".keras", model.save), (".h5", None)]:
            p = str(tmp_path / f"{name}{suffix}")
            save(p) if save else formats.save_legacy_h5(model, p)
            files[name + suffix] = p
    # A fine-tuned model around a no-top backbone: its Dense head is not the Xception's top.
    backbone = kx.Xception(include_top=False, pooling="avg", **small)
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


def test_pretrained_imports_only_lower_layers():
    """The load step goes down the layers only: keras_xception.pretrained imports model/ and itself, nothing above."""
    allowed = ("keras_xception.model", "keras_xception.pretrained")
    package = os.path.join(os.path.dirname(kx.__file__), "pretrained")
    bad = []
    for name in sorted(os.listdir(package)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(package, name)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):  # module level and inside functions alike
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    bad.append(f"{name}: relative import")
                    continue
                if node.module == "keras_xception":
                    modules = [f"keras_xception.{a.name}" for a in node.names]
                else:
                    modules = [node.module]
            else:
                continue
            bad += [
                f"{name}: {m}" for m in modules if m.split(".")[0] == "keras_xception" and not m.startswith(allowed)
            ]
    assert bad == []
