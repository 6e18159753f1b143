"""The Keras ecosystem: the SavedModel's serving signature on encoded images (read by a process with TensorFlow
alone), KerasHub presets in and out (written and read by keras_hub itself), and LiteRT."""

import io
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import SMALL, jpeg_bytes, photo, randomize, rel_diff, small_xception

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


_CLIENT = """
import json, sys
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = serve(images=tf.constant([open(p, "rb").read() for p in sys.argv[2:]]))
assert "keras_xception" not in sys.modules
print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}, default=bytes.decode))
"""


@pytest.mark.slow
def test_serving_signature_on_encoded_images_in_a_process_without_the_package(
    tmp_path, classifier_file, encoded, capsys
):
    out = str(tmp_path / "served")
    assert cli.main(["export", "--format", "savedmodel", "--model", classifier_file, "--out", out]) == 0
    files = list(encoded.values())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", _CLIENT, out, *files], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    served = json.loads(run.stdout)
    from keras_xception.deploy.serving import UNREADABLE

    assert served["status"] == ["ok", "ok", "ok", UNREADABLE, UNREADABLE]
    assert served["classes"][3] == ["", "", ""] and served["scores"][4] == [0.0, 0.0, 0.0]
    good = files[:3]
    capsys.readouterr()
    assert cli.main(["predict", *good, "--model", classifier_file, "--top", "3", "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    for row, names, scores in zip(expected, served["classes"], served["scores"]):
        assert names == [p["name"] for p in row["predictions"]]  # top-1 and the order of the rest
        assert rel_diff(scores, [p["score"] for p in row["predictions"]]) < 1e-4
    from keras_xception.deploy.predictor import Predictor  # the second signature still serves Predictor

    assert Predictor(out).predict(np.zeros((1, SMALL, SMALL, 3))).shape == (1, 3)


def test_exif_orientation_in_graph_ops_agrees_with_pillow(encoded):
    import tensorflow as tf

    from keras_xception.data.transform import file_orientation
    from keras_xception.deploy.serving import exif_orientation

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
    assert rel_diff(ours(x), head.predict(x, verbose=0)) < 1e-4


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


_HUB_CLIENT = """
import json, sys
import numpy as np
import keras_hub
task = keras_hub.models.ImageClassifier.from_preset(sys.argv[1])
x = np.load(sys.argv[2])
meta = json.load(open(sys.argv[1] + "/metadata.json"))
assert "keras_xception" not in sys.modules
print(json.dumps({"probs": task.predict(x, verbose=0).tolist(), "class_names": meta["class_names"]}))
"""


@pytest.mark.slow
def test_kerashub_preset_out_loads_with_keras_hub_alone(tmp_path, classifier_file, capsys):
    pytest.importorskip("keras_hub")
    from keras_xception.tasks.classifier import load_classifier

    out = str(tmp_path / "preset")
    argv = ["export", "--format", "keras-hub", "--model", classifier_file, "--out", out]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "crop: KerasHub's image converter resizes the largest central region of aspect 71:71" in err
    assert "EXIF orientation" in err
    x = np.random.default_rng(2).uniform(0, 255, (3, 90, 90, 3)).astype("float32")  # square: equal crops
    np.save(tmp_path / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-c", _HUB_CLIENT, out, str(tmp_path / "x.npy")], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
    hub = json.loads(run.stdout)
    classifier = load_classifier(classifier_file)
    assert hub["class_names"] == list(classifier.class_names) == ["cat", "dog", "fox"]
    import tensorflow as tf

    resized = tf.image.resize(x, classifier.transform.target_size).numpy()  # crop_fraction 1 would do the same
    assert rel_diff(hub["probs"], classifier.model.predict(resized, verbose=0)) < 1e-4
    assert cli.main(argv) == 2 and "exists" in capsys.readouterr().err  # nothing overwritten


def test_kerashub_out_refuses_what_it_cannot_express(tmp_path):
    pytest.importorskip("keras_hub")
    from keras_xception import export

    for options in (dict(residual=False), dict(output_stride=16), dict(intermediate_activation="relu")):
        with pytest.raises(ValueError, match="KerasHub's XceptionBackbone has residual connections"):
            export(small_xception(**options), tmp_path / "p", format="keras-hub")
    with pytest.raises(ValueError, match="no 'predictions' top"):
        export(small_xception(include_top=False, pooling="avg"), tmp_path / "p", format="keras-hub")
    assert not os.path.exists(tmp_path / "p")
