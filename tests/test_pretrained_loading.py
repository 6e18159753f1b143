"""keras_xception.pretrained.loading: the one load step.

Official weights into architecture variants where the shapes allow (and refusals where they do
not); a file without the classifier, or with another class count, gives the backbone and a fresh
classifier, like a registered set; registered sets downloaded from a loopback server; conversion
between formats; a failed load changes nothing."""

import ast
import copy
import hashlib
import os
import re

import keras
import numpy as np
import pytest
from conftest import SMALL, SMALL_OPTIONS, built_once, randomize, rel_diff, run, small_xception
from conftest import notop71 as build

import keras_xception as kx
from keras_xception.pretrained import loading as variants
from keras_xception.pretrained.formats import WeightsFileError
from keras_xception.pretrained.loading import load_pretrained


def ours(**kw):
    kw.setdefault("input_shape", (SMALL, SMALL, 3))
    kw.setdefault("classifier_activation", None)
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
def loaded(official):
    """``loaded(**kw)``: ``build(weights=<official file>, **kw)``, built once per module (tests only read it)."""
    return built_once(lambda **kw: build(weights=official[1], **kw))


@pytest.fixture(scope="module")
def x(images):
    return kx.preprocess_input(images[:1])


# ---------------------------------------------------------------------------- official weights into variants


def test_linear_split_equals_official_exactly_with_official_weights(official, x):
    ref, path = official
    model = build(weights=path, intermediate_activation="linear")
    sep = ref.get_layer("block7_sepconv3")
    assert np.array_equal(model.get_layer("block7_sepconv3_depthwise").get_weights()[0], sep.get_weights()[0])
    assert np.array_equal(model.get_layer("block7_sepconv3_pointwise").get_weights()[0], sep.get_weights()[1])
    assert rel_diff(run(model, x), run(ref, x)) < 1e-4


def test_intermediate_none_is_the_official_model(official, x):
    ref, path = official
    model = build(weights=path, intermediate_activation=None)
    assert [lyr.name for lyr in model.layers] == [lyr.name for lyr in ref.layers]
    assert np.array_equal(run(model, x), run(ref, x))


def test_relu_split_holds_the_official_weights_and_changes_the_computation(official, loaded, x):
    ref, _ = official
    model = loaded(intermediate_activation="relu")
    for layer in ref.layers:
        if isinstance(layer, keras.layers.SeparableConv2D):
            dw, pw = layer.get_weights()
            assert np.array_equal(model.get_layer(f"{layer.name}_depthwise").get_weights()[0], dw)
            assert np.array_equal(model.get_layer(f"{layer.name}_pointwise").get_weights()[0], pw)
        elif layer.weights:
            for a, b in zip(model.get_layer(layer.name).get_weights(), layer.get_weights()):
                assert np.array_equal(a, b)
    # Same up to the first separable convolution, different after it (the ReLU acts).
    assert np.array_equal(run(sub(model, "block1_conv2_act"), x), run(sub(ref, "block1_conv2_act"), x))
    assert rel_diff(run(sub(model, "block2_sepconv1_bn"), x), run(sub(ref, "block2_sepconv1_bn"), x)) > 1e-3


@pytest.mark.parametrize(
    "output_stride,unchanged,changed",
    [(16, "block13_sepconv2_bn", "block13_pool"), (8, "block4_sepconv2_bn", "block4_pool")],
)
def test_output_stride_matches_official_up_to_the_first_changed_block(
    official, loaded, x, output_stride, unchanged, changed
):
    ref, _ = official
    model = loaded(output_stride=output_stride)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), ref.get_weights()))
    assert rel_diff(run(sub(model, unchanged), x), run(sub(ref, unchanged), x)) < 1e-5
    assert model.get_layer(changed).output.shape != ref.get_layer(changed).output.shape


@pytest.mark.parametrize("output_stride", [16, 8])
def test_atrous_model_is_the_official_model_sampled_densely(official, loaded, x, output_stride):
    """At odd map sizes (71 -> 33, 17, 9, 5, 3) every k-th output of the atrous model is the official output."""
    ref, _ = official
    model = loaded(output_stride=output_stride)
    k = 32 // output_stride
    dense, coarse = run(model, x), run(ref, x)
    assert dense.shape[1:3] == ((5, 5) if output_stride == 16 else (9, 9))
    assert rel_diff(dense[:, ::k, ::k], coarse) < 1e-5
    assert rel_diff(dense[:, 1::k, 1::k], coarse[:, :-1, :-1]) > 1e-3  # the in-between positions are new
    # Without dilation the features would differ: the dilated layers matter.
    config = copy.deepcopy(model.get_config())  # the shared model itself is left as it is
    for layer in config["layers"]:
        if layer["class_name"] in ("SeparableConv2D", "DepthwiseConv2D"):
            layer["config"]["dilation_rate"] = (1, 1)
    rebuilt = keras.Model.from_config(config)
    rebuilt.set_weights(model.get_weights())
    assert rel_diff(run(rebuilt, x)[:, ::k, ::k], coarse) > 1e-3


def test_residual_false_takes_the_shared_layers_and_drops_the_projections(official, loaded):
    ref, _ = official
    model = loaded(residual=False)
    for layer in model.layers:
        for a, b in zip(layer.get_weights(), ref.get_layer(layer.name).get_weights()):
            assert np.array_equal(a, b)
    unused = variants.transfer_weights(ref, model)  # (the same values again)
    assert sorted(unused) == sorted(f"block{b}_residual_{k}" for b in (2, 3, 4, 13) for k in ("conv", "bn"))


def test_combined_variant_with_top_from_keras_file(keras_reference, images):
    """A file with the classifier (written by keras.applications) into an atrous, split variant."""
    ref, path, _ = keras_reference
    x = kx.preprocess_input(images)
    model = kx.Xception(
        weights=path, input_shape=(SMALL, SMALL, 3), classifier_activation=None, intermediate_activation="linear"
    )
    assert rel_diff(run(model, x), run(ref, x)) < 1e-4
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
    assert rel_diff(run(sub(model, "block13_sepconv2_bn"), x), run(feat, x)) < 1e-4


@pytest.mark.parametrize(
    "kw",
    [
        dict(intermediate_activation="relu", residual=False, **SMALL_OPTIONS),
        dict(width_multiplier=0.5, middle_flow_blocks=1),
    ],
)
def test_variant_file_round_trips(tmp_path, x, kw):
    model = randomize(build(**kw), seed=4)
    path = str(tmp_path / "variant.weights.h5")
    model.save_weights(path)
    again = build(weights=path, **kw)
    assert np.array_equal(run(again, x), run(model, x))


def test_merge_split_weights_back_into_official(official, loaded):
    ref, _ = official
    split = loaded(intermediate_activation="relu")
    variants.transfer_weights(ref, split)  # (the values it was loaded with)
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


# ---------------------------------------------------------------------------- a failed load changes nothing


def test_failed_load_pretrained_assigns_nothing(tmp_path):
    """A file that fits the first layers but not the last: the error names file, layer, shapes; nothing changes."""
    p = str(tmp_path / "two_middle_blocks.weights.h5")
    small_xception(include_top=False, middle_flow_blocks=2).save_weights(p)
    model = small_xception(include_top=False, middle_flow_blocks=1)
    before = model.get_weights()
    shapes = r"expects shapes \[\(3, 3, 184, 1\), \(1, 1, 184, 256\)\], but the file's .* has \[\(3, 3, 184, 1\), \(1, 1, 184, 184\)\]"
    with pytest.raises(WeightsFileError, match=re.escape(repr(p)) + r".*'block6_sepconv2' .*" + shapes):
        load_pretrained(model, p)  # layer #30: the 29 before it fit
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


# ---------------------------------------------------------------------------- a file is like a registered set


def pooled(model, x):
    """The backbone's globally averaged features (the input of the classifier)."""
    if "avg_pool" in [layer.name for layer in model.layers]:
        return run(keras.Model(model.input, model.get_layer("avg_pool").output), x)
    return run(model, x).mean(axis=(1, 2))


def assert_fresh_head(model, classes, width=2048):
    kernel, bias = model.get_layer("predictions").get_weights()
    assert kernel.shape == (width, classes) and model.output_shape == (None, classes)
    assert not np.any(bias)  # Keras's initialisation: nothing was loaded into it


def test_keras_file_without_top_into_a_model_with_top(tmp_path, images):
    """Bug 8: Xception(weights=<.keras no-top backbone>, classes=10) was a layer-count error."""
    backbone = randomize(small_xception(include_top=False), seed=12)
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    with pytest.warns(UserWarning, match=r"has no classifier; .*new, randomly initialised 10-class 'predictions'"):
        model = ours(weights=path, classes=10, **SMALL_OPTIONS)
    x = kx.preprocess_input(images)
    assert rel_diff(pooled(model, x), pooled(backbone, x)) < 1e-4
    assert_fresh_head(model, 10, width=512)


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
    ref_pooled = run(ref_keras.Model(ref.input, ref.get_layer("avg_pool").output), x)
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
    ref = randomize(ours(weights=None, classes=7, **SMALL_OPTIONS), seed=13)
    path = str(tmp_path / "tiny7.weights.h5")
    ref.save_weights(path)
    x = kx.preprocess_input(images)
    same = ours(weights=path, classes=7, **SMALL_OPTIONS)
    assert np.array_equal(run(same, x), run(ref, x))
    with pytest.warns(UserWarning, match="has a 7-class top"):
        other = ours(weights=path, classes=3, **SMALL_OPTIONS)
    assert rel_diff(pooled(other, x), pooled(ref, x)) < 1e-5
    assert_fresh_head(other, 3, width=512)


# ---------------------------------------------------------------------------- registered sets, from a loopback server


@pytest.fixture
def serve_reference(server, registered, keras_reference):
    """Serve keras.applications' reference weights file and register it under ``name``."""

    def serve(name):
        data = open(keras_reference[1], "rb").read()
        server.files["/ref.weights.h5"] = data
        return registered(
            name,
            url=server.url + "/ref.weights.h5",
            file_hash=hashlib.sha256(data).hexdigest(),
            include_top=True,
            input_size=(SMALL, SMALL),
            file_name=f"{name}.weights.h5",
        )

    return serve


@pytest.mark.usefixtures("keras_home")
def test_registered_name_end_to_end_with_reference_outputs(serve_reference, keras_reference, images):
    """register() a file written by keras.applications; Xception(weights=name) downloads and loads it."""
    ref = keras_reference[0]
    serve_reference("t_ref")
    model = kx.Xception(weights="t_ref", classifier_activation=None)
    x = kx.preprocess_input(images)
    ref_logits = run(ref, x)
    np.testing.assert_array_less(rel_diff(run(model, x), ref_logits), 1e-4)
    with pytest.raises(ValueError, match=r"\(71, 71\)"):
        kx.Xception(weights="t_ref", input_shape=(96, 96, 3))


@pytest.mark.usefixtures("keras_home")
def test_classes_other_than_the_weights_give_a_fresh_head(serve_reference, keras_reference, images):
    ref = keras_reference[0]
    serve_reference("t_head")
    with pytest.warns(UserWarning, match="new, randomly initialised 5-class"):
        model = kx.Xception(weights="t_head", classes=5)
    assert model.output_shape == (None, 5)
    np.testing.assert_array_equal(
        model.get_layer("block14_sepconv2_bn").get_weights()[2], ref.get_layer("block14_sepconv2_bn").get_weights()[2]
    )
    x = kx.preprocess_input(images)
    import keras

    feats = run(keras.Model(model.input, model.get_layer("avg_pool").output), x)
    ref_feats = run(keras.Model(ref.input, ref.get_layer("avg_pool").output), x)
    assert rel_diff(feats, ref_feats) < 1e-4


@pytest.fixture
def serve_notop(server, notop_reference):
    """Serve the no-top reference file (official layout) at /notop.h5; returns its sha256."""
    data = open(notop_reference[1], "rb").read()
    server.files["/notop.h5"] = data
    return hashlib.sha256(data).hexdigest()


@pytest.mark.usefixtures("keras_home")
def test_imagenet_notop_into_a_model_with_top_gives_a_fresh_head(
    server, serve_notop, replaced, notop_reference, images
):
    """The registered no-top set follows the same rule as a no-top file: a fresh classifier, not an error."""
    replaced(
        "imagenet_notop",
        url=server.url + "/notop.h5",
        file_hash=serve_notop,
        include_top=False,
        file_name="t_imagenet_notop.h5",
        input_size=(SMALL, SMALL),
    )
    with pytest.warns(UserWarning, match=r"weights='imagenet_notop' has no classifier.*1000-class 'predictions'"):
        model = kx.Xception(weights="imagenet_notop", include_top=True, input_shape=(SMALL, SMALL, 3))
    assert server.requests == ["/notop.h5"]
    x = kx.preprocess_input(images)
    assert rel_diff(pooled(model, x), pooled(notop_reference[0], x)) < 1e-4
    head = model.get_layer("predictions")
    assert head.kernel.shape == (2048, 1000) and not np.any(head.get_weights()[1])  # Keras's initialisation


@pytest.mark.usefixtures("keras_home")
def test_registered_set_with_another_class_count_downloads_only_its_notop_file(
    server, serve_notop, registered, notop_reference, images
):
    registered(
        "t_backbone", url=server.url + "/notop.h5", file_hash=serve_notop, include_top=False, file_name="t_backbone.h5"
    )
    registered(
        "t_top",
        url=server.url + "/top.h5",
        file_hash="0" * 64,
        include_top=True,
        notop="t_backbone",
        input_size=(SMALL, SMALL),
    )
    with pytest.warns(UserWarning, match=r"weights='t_top' has a 1000-class top.*10-class"):
        model = kx.Xception(weights="t_top", classes=10)
    assert server.requests == ["/notop.h5"]  # the file with the 1000-class top is never fetched
    x = kx.preprocess_input(images)
    assert rel_diff(pooled(model, x), pooled(notop_reference[0], x)) < 1e-4
    assert model.output_shape == (None, 10)


# ---------------------------------------------------------------------------- conversion and layering


@pytest.mark.slow
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
    assert rel_diff(run(k, x), run(ref, x)) < 1e-4


def test_pretrained_imports_only_lower_layers():
    """The load step goes down the layers only: keras_xception.pretrained imports model/, checks and itself."""
    allowed = ("keras_xception.model", "keras_xception.pretrained", "keras_xception.checks")
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
