"""keras_xception.deploy: the Predictor runtimes, export round trips with the parity check and the metadata
record, the CPU capability warning, and their errors. (`keras-xception export` and `predict --runtime` are in
test_cli.py.)"""

import json
import os
import types

import keras
import numpy as np
import pytest
from conftest import SMALL, randomize, rel_diff, run, small_xception

import keras_xception as kx
from keras_xception import cli
from keras_xception.data.metadata import read_record, record_path
from keras_xception.deploy import backends, runtimes
from keras_xception.deploy import export as exporting
from keras_xception.deploy import predictor as inference
from keras_xception.deploy.folding import fold_batchnorm, foldable_pairs
from keras_xception.deploy.predictor import Predictor
from keras_xception.deploy.runtimes import RuntimeNotInstalledError

SIZE = 96  # big enough for the exit flow to see a 3x3 map

pytestmark = pytest.mark.usefixtures("export_each_model_once")  # conftest.py: one OpenVINO/ONNX export per model


@pytest.fixture(scope="module")
def model():
    """The small Xception with the top at 96x96, random kernels and random BatchNormalization statistics
    (plumbing: every runtime and format must give Keras's outputs; the full width changes nothing here)."""
    keras.utils.set_random_seed(0)
    return randomize(small_xception(input_shape=(SIZE, SIZE, 3)))


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(2).uniform(-1, 1, (3, SIZE, SIZE, 3)).astype("float32")


@pytest.fixture(scope="module")
def expected(model, x):
    return model.predict(x, verbose=0)


def _installed(runtime):
    if runtime == "keras":
        return True
    try:
        runtimes.runtime_for(runtime)
    except RuntimeNotInstalledError:
        return False
    return True


# ----------------------------------------------------------------------------- folding (TensorFlow only)


def test_fold_batchnorm_removes_every_batchnorm_and_keeps_outputs(model, x, expected):
    folded = fold_batchnorm(model)
    kinds = [type(layer).__name__ for layer in folded.layers]
    assert "BatchNormalization" not in kinds
    bns = [type(layer).__name__ for layer in model.layers].count("BatchNormalization")
    assert bns > 10 and kinds.count("Identity") == bns  # every BN of Xception follows a convolution
    assert [layer.name for layer in folded.layers] == [layer.name for layer in model.layers]
    assert all(folded.get_layer(c).use_bias for c in foldable_pairs(model).values())
    assert rel_diff(run(folded, x), expected) < 1e-5  # (eager: predict would trace a graph of `folded` first)
    # the original is untouched
    assert "BatchNormalization" in [type(layer).__name__ for layer in model.layers]
    assert rel_diff(model.predict(x, verbose=0), expected) == 0


def test_fold_batchnorm_without_top_and_variable_size(images):
    m = randomize(small_xception(include_top=False, pooling=None, input_shape=None), seed=3)
    folded = fold_batchnorm(m, name="folded")
    assert folded.name == "folded"
    assert rel_diff(run(folded, images), run(m, images)) < 1e-5


def test_fold_batchnorm_keeps_a_batchnorm_whose_conv_output_is_shared():
    inp = keras.Input((8, 8, 3))
    c = keras.layers.Conv2D(4, 3, name="conv")(inp)
    b = keras.layers.BatchNormalization(name="bn")(c)
    out = keras.layers.Add()([b, c])  # conv output read twice: BN cannot be folded
    m = randomize(keras.Model(inp, out))
    assert foldable_pairs(m) == {}
    folded = fold_batchnorm(m)
    assert type(folded.get_layer("bn")).__name__ == "BatchNormalization"
    z = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    assert rel_diff(folded.predict(z, verbose=0), m.predict(z, verbose=0)) < 1e-6


def test_fold_batchnorm_rejects_a_non_model():
    with pytest.raises(ValueError, match="functional keras.Model"):
        fold_batchnorm(keras.layers.Dense(3))


def test_folding_only_where_it_wins(model, monkeypatch):
    """The TensorFlow backend folds; OpenVINO and ONNX Runtime fuse BatchNormalization themselves."""
    folded, sources = [], {}

    def backend(runtime):  # records what each runtime is given, exports nothing
        def build(source, threads, workers, precision, calibrate):
            sources[runtime] = source
            return types.SimpleNamespace(input_shape=model.input_shape[1:], precision=precision)

        return build

    monkeypatch.setattr(inference, "BACKENDS", {r: backend(r) for r in runtimes.RUNTIMES})
    for runtime in runtimes.available_runtimes():
        Predictor(model, runtime=runtime)
    assert all(source is model for source in sources.values())
    monkeypatch.setattr(backends, "fold_batchnorm", lambda m: folded.append(m) or m)
    backends.BACKENDS["tensorflow"](model, 1, 1, "fp32", None)
    assert folded == [model]


# ----------------------------------------------------------------------------- Predictor


@pytest.mark.parametrize("runtime", ("keras",) + runtimes.RUNTIMES)
def test_predictor_matches_keras(runtime, model, x, expected):
    if not _installed(runtime):
        pytest.skip(f"{runtime} is not installed")
    p = Predictor(model, runtime=runtime, batch_size=2)  # 3 images: a full and a remainder chunk
    assert p.runtime == runtime
    out = p.predict(x)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == expected.shape
    assert rel_diff(out, expected) < 1e-4
    assert rel_diff(p.predict(x[:1]), expected[:1]) < 1e-4  # batch size 1
    assert rel_diff(p(x.astype("float64")), expected) < 1e-4  # any numeric dtype
    assert p.predict(x[:0]).shape == (0,) + expected.shape[1:]


def test_predictor_auto_picks_the_first_installed_runtime():
    assert runtimes.runtime_for("auto") == runtimes.available_runtimes()[0]
    assert "tensorflow" in runtimes.available_runtimes()


def test_predictor_variable_size_model(images):
    m = randomize(small_xception(include_top=False, pooling="avg", input_shape=None), seed=4)
    p = Predictor(m, runtime="tensorflow")
    assert rel_diff(p.predict(images), run(m, images)) < 1e-4


def test_unknown_runtime_is_a_clear_error(model):
    with pytest.raises(ValueError, match=r"`runtime` must be .*received runtime='tensorrt'"):
        Predictor(model, runtime="tensorrt")


@pytest.mark.parametrize("runtime,extra", [("onnxruntime", "onnx"), ("openvino", "openvino"), ("litert", "litert")])
def test_uninstalled_runtime_names_the_extra(monkeypatch, model, runtime, extra):
    real = runtimes.is_installed
    blocked = {"onnxruntime", "openvino", "ai_edge_litert"}
    monkeypatch.setattr(runtimes, "is_installed", lambda m: m not in blocked and real(m))
    with pytest.raises(RuntimeNotInstalledError, match=rf'pip install "keras-xception\[{extra}\]"'):
        Predictor(model, runtime=runtime)
    assert runtimes.available_runtimes() == ["tensorflow"]
    assert Predictor(model).runtime == "tensorflow"  # auto falls back


def test_bad_predictor_arguments(model):
    with pytest.raises(ValueError, match="batch_size"):
        Predictor(model, runtime="tensorflow", batch_size=0)
    with pytest.raises(ValueError, match="threads"):
        Predictor(model, runtime="tensorflow", threads=-1)
    with pytest.raises(ValueError, match="one input and one output"):
        inp = keras.Input((4,))
        Predictor(keras.Model(inp, [inp, inp]), runtime="tensorflow")
    with pytest.raises(ValueError, match="must be a Transform"):
        Predictor(model, runtime="tensorflow", transform="tf")
    with pytest.raises(ValueError, match="runtime='keras' Predictor cannot be saved"):
        Predictor(model, runtime="keras").save("m.xml")


def test_predict_rejects_a_wrong_shape(model, x):
    p = Predictor(model, runtime="tensorflow")
    with pytest.raises(ValueError, match=r"x\[None\]"):
        p.predict(x[0])
    with pytest.raises(ValueError, match=r"\(2, 71, 71, 3\)"):
        p.predict(np.zeros((2, SMALL, SMALL, 3), "float32"))


# ----------------------------------------------------------------------------- export


def test_export_savedmodel_round_trip(tmp_path, model, x, expected):
    import tensorflow as tf

    path = exporting.export(model, tmp_path / "sm", format="savedmodel")
    loaded = tf.saved_model.load(path)
    assert rel_diff(loaded.serve(tf.constant(x)).numpy(), expected) < 1e-4
    with pytest.raises(ValueError, match="copy that directory"):  # a SavedModel read back is not written again
        Predictor(path).save(tmp_path / "again")
    # The input transform travels with the artifact: the model's size, the ImageNet crop and scaling.
    assert read_record(path).transform.to_dict() == dict(
        target_size=[SIZE, SIZE],
        crop_fraction=0.875,
        resize_mode="central",
        interpolation="bilinear",
        preprocessing="tf",
        exif_orientation=False,
    )


def test_export_onnx_round_trip(tmp_path, model, x, expected):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    transform = kx.resolve_transform(model=model, crop_fraction=1.0, interpolation="bicubic")
    path = exporting.export(model, str(tmp_path / "m.onnx"), format="onnx", transform=transform, class_names="abc")
    assert record_path(path) == str(tmp_path / "m.keras_xception.json")
    with open(record_path(path)) as f:
        written = json.load(f)
    assert written["transform"] == transform.to_dict() and written["class_names"] == ["a", "b", "c"]
    p = Predictor(path)  # the record travels with the file
    assert p.transform == transform and p.class_names == ("a", "b", "c") and p.runtime == "onnxruntime"
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert rel_diff(out, expected) < 1e-4


def test_export_openvino_round_trip(tmp_path, model, x, expected):
    ov = pytest.importorskip("openvino")
    path = exporting.export(model, str(tmp_path / "m.xml"), format="openvino")
    assert os.path.isfile(tmp_path / "m.bin")
    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert rel_diff(compiled(x)[0], expected) < 1e-4
    # A file exported by 0.2 carries its transform in a sidecar instead of the record: still read.
    transform = kx.resolve_transform(model=model, crop_fraction=1.0)
    os.remove(record_path(path))
    with open(tmp_path / "m.transform.json", "w") as f:
        json.dump(transform.to_dict(), f)
    p = Predictor(path)
    assert p.transform == transform and p.class_names is None
    assert rel_diff(p.predict(x), expected) < 1e-4


def test_export_parity_check_can_fail(tmp_path, model, monkeypatch):
    class Off(Predictor):  # the file read back gives outputs 1% off
        def predict(self, x, batch_size=None):
            return super().predict(x, batch_size) * 1.01

    monkeypatch.setattr(exporting, "Predictor", Off)
    with pytest.raises(exporting.ParityError, match="disagrees"):
        exporting.export(model, tmp_path / "sm", format="savedmodel")
    assert not (tmp_path / "sm").exists()  # the failed artifact is removed
    with pytest.raises(exporting.ParityError):
        exporting.export(model, tmp_path / "m.onnx", format="onnx")
    assert os.listdir(tmp_path) == []  # the .onnx and its record


def test_export_bad_arguments(tmp_path, model, monkeypatch):
    with pytest.raises(ValueError, match=r"`format` must be one of .*received format='tflite'"):
        exporting.export(model, tmp_path / "m", format="tflite")
    with pytest.raises(ValueError, match=r"must end with '\.onnx'"):
        exporting.export(model, tmp_path / "m.xml", format="onnx")
    monkeypatch.setattr(runtimes, "is_installed", lambda m: m != "tf2onnx")
    with pytest.raises(RuntimeNotInstalledError, match=r"keras-xception\[onnx\]"):
        exporting.export(model, tmp_path / "m.onnx", format="onnx")


# ----------------------------------------------------------------------------- Predictor, --runtime


def test_add_runtime_argument_and_predictor(model, x, expected):
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_runtime_argument(parser, default="auto")
    assert parser.parse_args([]).runtime == "auto"
    args = parser.parse_args(["--runtime", "tensorflow"])
    assert rel_diff(inference.Predictor(model, args.runtime).predict(x), expected) < 1e-4
    assert rel_diff(inference.Predictor(model, "keras").predict(x), expected) == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["--runtime", "tensorrt"])
