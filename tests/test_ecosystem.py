"""The Keras ecosystem: the SavedModel's serving signature on encoded images (read by a process with TensorFlow
alone), KerasHub presets in and out (written and read by keras_hub itself), and LiteRT."""

import contextlib
import io
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import SMALL, jpeg_bytes, photo, randomize, rel_diff, run, small_xception

from keras_xception import cli


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    """A small 3-class classifier as `train` writes it (random weights and BatchNormalization statistics)."""
    from keras_xception.data.transform import resolve_transform
    from keras_xception.tasks.classifier import save_classifier
    from keras_xception.tasks.transfer import build_classifier

    model = randomize(build_classifier(3, backbone=small_xception(include_top=False)), seed=3)
    path = str(tmp_path_factory.mktemp("classifier") / "small.keras")
    transform = resolve_transform(None, model=model, exif_orientation=True)
    return save_classifier(model, path, ["cat", "dog", "fox"], transform)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """A JPEG, a JPEG stored sideways with EXIF orientation 6, a PNG, and two that do not decode."""
    from PIL import Image

    d, rng = tmp_path_factory.mktemp("encoded"), np.random.default_rng(5)
    exif = Image.Exif()
    exif[0x0112] = 6
    files = {
        "plain.jpg": jpeg_bytes(photo(rng, 90, 120)),
        "sideways.jpg": jpeg_bytes(photo(rng, 80, 130), exif=exif.tobytes()),
        "photo.png": None,
        "truncated.jpg": jpeg_bytes(photo(rng, 90, 90))[:500],
        "garbage.png": b"not an image at all",
    }
    png = io.BytesIO()
    photo(rng, 100, 75).save(png, "PNG")
    files["photo.png"] = png.getvalue()
    for name, data in files.items():
        (d / name).write_bytes(data)
    return {name: str(d / name) for name in files}


#: A client with TensorFlow and keras_hub alone: the SavedModel's serving_default on encoded files, and the
#: KerasHub preset's classifier on an array of images. One process for both (TensorFlow imports once).
_CLIENT = """
import json, sys
import numpy as np
import tensorflow as tf
import keras_hub
served, preset, images, *files = sys.argv[1:]
serve = tf.saved_model.load(served).signatures["serving_default"]
out = {k: v.numpy().tolist() for k, v in serve(images=tf.constant([open(p, "rb").read() for p in files])).items()}
task = keras_hub.models.ImageClassifier.from_preset(preset)
out["hub_probs"] = task.predict(np.load(images), verbose=0).tolist()
out["hub_class_names"] = json.load(open(preset + "/metadata.json"))["class_names"]
assert "keras_xception" not in sys.modules
print(json.dumps(out, default=bytes.decode))
"""


@pytest.fixture(scope="module")
def clients(tmp_path_factory, classifier_file, encoded):
    """The classifier exported by the CLI as a SavedModel and as a KerasHub preset, read by :data:`_CLIENT`
    in a process without this package; ``(client output, images given to KerasHub, the keras-hub export's stderr, the preset)``."""
    pytest.importorskip("keras_hub")
    d = tmp_path_factory.mktemp("clients")
    export = ["export", "--model", classifier_file, "--out"]
    # --no-check: Predictor reading a SavedModel back (its `serve`) is test_deploy.py's and test_cli.py's part
    assert cli.main([*export, str(d / "served"), "--format", "savedmodel", "--no-check"]) == 0
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert cli.main([*export, str(d / "preset"), "--format", "keras-hub"]) == 0
    x = np.random.default_rng(2).uniform(0, 255, (3, 90, 90, 3)).astype("float32")  # square: equal crops
    np.save(d / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    argv = [sys.executable, "-c", _CLIENT, str(d / "served"), str(d / "preset"), str(d / "x.npy"), *encoded.values()]
    run = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout), x, err.getvalue(), str(d / "preset")


@pytest.mark.slow
def test_serving_signature_on_encoded_images_in_a_process_without_the_package(
    clients, classifier_file, encoded, capsys
):
    from keras_xception.deploy.serving import UNREADABLE

    served = clients[0]
    assert served["status"] == ["ok", "ok", "ok", UNREADABLE, UNREADABLE]
    assert served["classes"][3] == ["", "", ""] and served["scores"][4] == [0.0, 0.0, 0.0]
    capsys.readouterr()
    good = list(encoded.values())[:3]  # a JPEG, a sideways JPEG (EXIF 6), a PNG
    assert cli.main(["predict", *good, "--model", classifier_file, "--top", "3", "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    for row, names, scores in zip(expected, served["classes"], served["scores"]):
        assert names == [p["name"] for p in row["predictions"]]  # top-1 and the order of the rest
        assert rel_diff(scores, [p["score"] for p in row["predictions"]]) < 1e-4


def test_exif_orientation_in_graph_ops_agrees_with_pillow(encoded):
    import tensorflow as tf
    from PIL import Image

    from keras_xception.data.transform import jpeg_orientation

    exif_orientation = tf.function(jpeg_orientation)  # traced once

    def file_orientation(source):  # Pillow's reading; 1 where it cannot read the file
        try:
            with Image.open(source) as image:
                return image.getexif().get(0x0112, 1)
        except OSError:
            return 1

    for tag in (1, 3, 6, 8):
        for order, mark in (("<", b"II"), (">", b"MM")):  # both TIFF byte orders; a Make tag before it
            ifd = struct.pack(order + "H2HII2HIHH", 2, 0x010F, 2, 4, 0x41424300, 0x0112, 3, 1, tag, 0)
            exif = b"Exif\0\0" + mark + struct.pack(order + "HI", 42, 8) + ifd + b"\0\0\0\0"
            data = jpeg_bytes(photo(np.random.default_rng(tag), 40, 30), exif=exif)
            assert int(exif_orientation(tf.constant(data))) == tag == file_orientation(io.BytesIO(data))
    for path in encoded.values():
        with open(path, "rb") as f:
            assert int(exif_orientation(tf.constant(f.read()))) == file_orientation(path)


# ------------------------------------------------------------------------------------ KerasHub presets

#: The small Xception's layout as XceptionBackbone arguments (hub_layout of the small spec, written out).
HUB_SMALL = dict(
    stackwise_conv_filters=[[8, 16], [32, 32], [64, 64], [184, 184], [184, 184, 184], [184, 256], [384, 512]],
    stackwise_pooling=[False, True, True, True, False, True, False],
)


@pytest.fixture(scope="module")
def hub_presets(tmp_path_factory):
    """A small XceptionBackbone preset and an XceptionImageClassifier preset (3 classes), saved by keras_hub."""
    keras_hub = pytest.importorskip("keras_hub")
    d = tmp_path_factory.mktemp("hub")
    backbone = keras_hub.models.XceptionBackbone(**HUB_SMALL, image_shape=(SMALL, SMALL, 3))
    randomize(backbone, seed=7)
    backbone.save_to_preset(str(d / "backbone"))
    head = keras_hub.models.XceptionImageClassifier(backbone=backbone, num_classes=3, activation="softmax")
    randomize(head, seed=8)  # the Dense bias
    head.save_to_preset(str(d / "classifier"))
    return backbone, head, str(d / "backbone"), str(d / "classifier")


def test_kerashub_preset_in(hub_presets, images):
    from keras_xception import preprocess_input
    from keras_xception.model.introspect import spec_of
    from keras_xception.pretrained.formats import hub_layout

    backbone, head, backbone_dir, classifier_dir = hub_presets
    assert hub_layout(spec_of(small_xception())) == HUB_SMALL
    x = preprocess_input(images)
    ours = small_xception(include_top=False, weights=backbone_dir)
    assert rel_diff(ours(x), backbone(x)) < 1e-4
    ours = small_xception(classes=3, weights=classifier_dir)
    assert rel_diff(ours(x), run(head, x)) < 1e-4  # (no preprocessor: predict would call it on x alone)


def test_kerashub_preset_that_cannot_be_mapped(hub_presets, tmp_path):
    import shutil

    from keras_xception.pretrained.formats import WeightsFileError

    _, _, backbone_dir, classifier_dir = hub_presets
    with pytest.raises(WeightsFileError, match="its backbone is .* the model's is"):
        small_xception(include_top=False, weights=backbone_dir, middle_flow_blocks=2)
    other = shutil.copytree(classifier_dir, tmp_path / "other")
    (other / "config.json").write_text(json.dumps({"registered_name": "keras_hub>ResNetBackbone", "config": {}}))
    with pytest.raises(WeightsFileError, match="names 'keras_hub>ResNetBackbone', not 'keras_hub>XceptionBackbone'"):
        small_xception(include_top=False, weights=str(other))
    shutil.copy(classifier_dir + "/config.json", other / "config.json")
    (other / "model.weights.h5").write_bytes(b"truncated")
    with pytest.raises(WeightsFileError, match="cannot be read"):
        small_xception(include_top=False, weights=str(other))


def test_cli_weights_takes_a_preset_directory(hub_presets, tmp_path, capsys):
    """--weights DIR reaches the loader: the small preset does not fit the official Xception, said in words."""
    argv = ["export", "--format", "savedmodel", "--out", str(tmp_path / "m"), "--no-top", "--image-size", "71"]
    assert cli.main([*argv, "--weights", hub_presets[2]]) == 2
    assert "its backbone is {'stackwise_conv_filters': [[8, 16]" in capsys.readouterr().err


@pytest.mark.slow
def test_kerashub_preset_out_loads_with_keras_hub_alone(clients, classifier_file, capsys):
    import tensorflow as tf

    from keras_xception.tasks.classifier import load_classifier

    out, x, err, preset = clients
    assert "keras-xception export: warning: KerasHub preset" in err
    assert "crop: KerasHub's image converter resizes the largest central region of aspect 71:71" in err
    assert "this model's transform resizes the central 0.875 of each side" in err
    assert "EXIF orientation: KerasHub takes decoded pixels" in err
    classifier = load_classifier(classifier_file)
    assert out["hub_class_names"] == list(classifier.class_names) == ["cat", "dog", "fox"]
    resized = tf.image.resize(x, classifier.transform.target_size).numpy()  # crop_fraction 1 would do the same
    assert rel_diff(out["hub_probs"], run(classifier.model, resized)) < 1e-4
    back = small_xception(classes=3, weights=preset)  # and back in: the preset as weights
    assert rel_diff(run(back, resized / 127.5 - 1), out["hub_probs"]) < 1e-4
    argv = ["export", "--format", "keras-hub", "--model", classifier_file, "--out", preset]
    assert cli.main(argv) == 2 and "exists" in capsys.readouterr().err  # nothing overwritten


def test_kerashub_out_refuses_what_it_cannot_express(tmp_path):
    pytest.importorskip("keras_hub")
    from keras_xception import export

    for options in (dict(residual=False), dict(output_stride=16), dict(intermediate_activation="relu")):
        with pytest.raises(
            ValueError, match="KerasHub.s XceptionBackbone has residual connections, no intermediate activation"
        ):
            export(small_xception(**options), tmp_path / "p", format="keras-hub")
    with pytest.raises(ValueError, match="no 'predictions' top"):
        export(small_xception(include_top=False, pooling="avg"), tmp_path / "p", format="keras-hub")
    assert not os.path.exists(tmp_path / "p")


# ------------------------------------------------------------------------------------------------ LiteRT


@pytest.fixture(scope="module")
def photo_dirs(tmp_path_factory):
    """Two folders of 8 JPEG photos each: calibration and held-out images."""
    rng, dirs = np.random.default_rng(9), []
    for name in ("calibration", "holdout"):
        d = tmp_path_factory.mktemp(name)
        for i in range(8):
            (d / f"{i}.jpg").write_bytes(jpeg_bytes(photo(rng, 80, 90)))
        dirs.append(str(d))
    return dirs


def test_litert_fp32_export_equals_keras(tmp_path, classifier_file, capsys):
    pytest.importorskip("ai_edge_litert")
    from keras_xception.deploy.predictor import Predictor
    from keras_xception.tasks.classifier import load_classifier

    out = str(tmp_path / "m.tflite")
    assert cli.main(["export", "--format", "litert", "--model", classifier_file, "--out", out]) == 0
    assert capsys.readouterr().err.count("\n") == 1  # the "exporting ..." line, no LiteRT or TensorFlow notice
    predictor, classifier = Predictor(out), load_classifier(classifier_file)
    assert (predictor.runtime, predictor.precision, predictor.class_names) == ("litert", "fp32", ("cat", "dog", "fox"))
    x = np.random.default_rng(4).uniform(0, 255, (5, SMALL, SMALL, 3)).astype("float32")
    assert rel_diff(predictor.predict(x, batch_size=2), run(classifier.model, x)) < 1e-4


def test_litert_int8_is_gated_by_quantize(tmp_path, photo_dirs):
    pytest.importorskip("ai_edge_litert")
    from keras_xception import quantize
    from keras_xception.deploy.predictor import Predictor

    model = randomize(small_xception(classes=4), seed=11)
    calibration, holdout = photo_dirs
    out = str(tmp_path / "int8.tflite")
    with pytest.warns(UserWarning, match="calibration used 8 image"):  # the gate itself: test_deploy_precision.py
        report = quantize(model, calibration, holdout, out=out, min_agreement=0.5)
    assert report["runtime"] == "litert" and report["passed"] and report["written"] == out
    assert report["calibration_images"] == 8 and report["holdout_images"] == 8
    predictor = Predictor(out)
    assert (predictor.runtime, predictor.precision) == ("litert", "int8")
    assert report["top1_agreement"] >= 0.5 and report["cosine_mean"] > 0.9
