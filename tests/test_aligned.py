"""The aligned Xceptions (xception41/65/71/41p/65p): same function as timm, timm's parameter counts and
GMACs, timm checkpoints through the one loader, the registry's records, and everything else on them.

The fixtures in tests/fixtures/timm were written by timm itself (benchmarks/timm_fixtures.py): reduced
configurations of its XceptionAligned with random weights and BatchNorm statistics, and its logits.
"""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import rel_diff

import keras_xception as kx
from keras_xception.model.spec import ARCHITECTURES, xception_spec

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "timm")
with open(os.path.join(FIXTURES, "reference.json")) as f:
    REFERENCE = json.load(f)
SHAPE = tuple(REFERENCE["input_size"]) + (3,)


def _photo():
    from PIL import Image

    return np.asarray(Image.open(os.path.join(FIXTURES, "photo.png")), np.float32)[None] / 127.5 - 1.0


def _reduced(name, **kwargs):
    """The Keras model of fixture ``name``'s configuration, random weights, logits out."""
    from keras_xception.model.graph import build_model

    ref = REFERENCE["models"][name]
    options = dict(input_shape=SHAPE, classes=ref["classes"], classifier_activation=None, **kwargs)
    return build_model(xception_spec(**ref["spec"]), **options)


@pytest.mark.parametrize("name", sorted(REFERENCE["models"]))
def test_timm_checkpoint_gives_timms_logits_and_parameter_count(name):
    ref = REFERENCE["models"][name]
    model = _reduced(name)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == ref["trainable_params"]
    kx.load_pretrained(model, os.path.join(FIXTURES, f"{name}.safetensors"))
    assert rel_diff(model(_photo()), [ref["logits"]]) < 1e-4
    assert kx.spec_of(model).kind == ref["spec"]["kind"]  # the kind read back from the layers


# Published facts: timm's results table (trainable parameters) and xception65's 13.96 GMACs at 299 (timm's
# counter, fvcore, adds 2 operations per BatchNormalization output element and 1 per pooled input element to
# the convolutions' multiply-accumulates, which count_macs counts alone).
PUBLISHED = {"xception41": 26.97, "xception65": 39.92, "xception71": 42.34, "xception41p": 26.91, "xception65p": 39.82}


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_trainable_parameters_are_timms_published_counts(arch):
    model = kx.build(arch, weights=None, input_shape=(71, 71, 3))
    assert round(sum(int(np.prod(w.shape)) for w in model.trainable_weights) / 1e6, 2) == PUBLISHED[arch]
    assert kx.spec_of(model) == xception_spec(**ARCHITECTURES[arch]) and kx.spec_of(model).arch == arch


@pytest.mark.slow
def test_count_macs_of_xception65_at_299_and_timms_13_96_gmacs():
    import keras

    model = kx.xception65(weights=None)
    macs = kx.count_macs(model)
    assert round(macs / 1e9, 2) == 13.85
    bn = sum(
        int(np.prod(la.output.shape[1:])) for la in model.layers if isinstance(la, keras.layers.BatchNormalization)
    )
    assert round((macs + 2 * bn + int(np.prod(model.get_layer("avg_pool").input.shape[1:]))) / 1e9, 2) == 13.96


def test_registered_timm_weights_build_their_architecture_and_refuse_others():
    record = kx.weights.get_record("xception65.ra3_in1k")
    assert record.arch == "xception65" and record.file_hash is None
    assert record.urls == ("https://huggingface.co/timm/xception65.ra3_in1k/resolve/main/model.safetensors",)
    assert (record.crop_fraction, record.interpolation, record.preprocessing) == (0.94, "bicubic", "tf")
    assert kx.weights.get_record("xception71.tf_in1k").crop_fraction == 0.903
    with pytest.raises(ValueError, match="they are for xception65 .* this model is xception41"):
        kx.xception41(weights="xception65.ra3_in1k")
    with pytest.raises(ValueError, match="they are for xception65"):
        kx.Xception(weights="xception65.ra3_in1k")
    with pytest.raises(ValueError, match="Official .* weights only fit"):
        kx.xception65(weights="imagenet_notop", include_top=False)
    from keras_xception.pretrained.loading import resolve_weights

    assert resolve_weights("imagenet", "xception41")[0].name == "xception41.tf_in1k"  # timm's default tag
    assert resolve_weights("imagenet", "xception65p")[0].name == "xception65p.ra3_in1k"


def test_registered_timm_weights_download_verified_and_load(tmp_path, monkeypatch):
    """A record without a hash: the file must be a whole safetensors file; then the one loader converts it."""
    name = "aligned41"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(os.path.join(FIXTURES, f"{name}.safetensors"), mirror / "t_aligned41.safetensors")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(kx.weights.MIRROR_ENV, mirror.as_uri())
    rec = kx.weights.register("t_aligned41", url="http://127.0.0.1:9/x", file_hash=None, include_top=True,
                              file_name="t_aligned41.safetensors", classes=10, arch=None)  # fmt: skip  # None: a reduced spec's
    try:
        model = _reduced(name)
        kx.load_pretrained(model, rec)
        assert rel_diff(model(_photo()), [REFERENCE["models"][name]["logits"]]) < 1e-4
        cached = kx.weights.cached_path(rec)
        with open(cached, "r+b") as f:  # truncated in the cache: not whole, so downloaded again
            f.truncate(os.path.getsize(cached) - 100)
        assert not kx.weights.verify_file(cached, rec)
        with pytest.warns(UserWarning, match="does not match its safetensors header"):
            kx.weights.get_file(rec, progress=False)
        assert kx.weights.verify_file(cached, rec)
    finally:
        kx.weights.unregister("t_aligned41")


def _weights_of(model):
    return [w.copy() for w in model.get_weights()]


def test_wrong_truncated_or_misfit_checkpoints_are_clear_errors_and_assign_nothing(tmp_path):
    from safetensors.numpy import load_file, save_file

    model = _reduced("aligned41")
    before = _weights_of(model)
    tensors = load_file(os.path.join(FIXTURES, "aligned41.safetensors"))
    cases = {}
    cases["preact"] = (
        os.path.join(FIXTURES, "preact41.safetensors"),
        r"no timm tensor stem.1.conv.\* for layer 'block1_conv2'",
    )
    cases["other"] = (  # the reduced 71's second block has no projection
        os.path.join(FIXTURES, "aligned71.safetensors"),
        r"no timm tensor blocks.1.shortcut.conv.\* for layer 'block3_residual_conv'",
    )
    bad = dict(tensors, **{"blocks.3.stack.conv2.conv_dw.weight": np.zeros((24, 1, 5, 5), np.float32)})
    del bad["blocks.5.stack.conv1.conv_dw.weight"]  # missing later: the earlier misfit is named
    save_file(bad, str(tmp_path / "kernel.safetensors"))
    cases["kernel"] = (tmp_path / "kernel.safetensors", "'block5_sepconv2_depthwise' .* 'blocks.3.stack.conv2.conv_dw'")
    save_file(dict(tensors, extra=np.zeros(3, np.float32)), str(tmp_path / "extra.safetensors"))
    cases["extra"] = (tmp_path / "extra.safetensors", "1 tensors this model has no layer for, the first 'extra'")
    data = open(os.path.join(FIXTURES, "aligned41.safetensors"), "rb").read()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    cases["truncated"] = (tmp_path / "cut.safetensors", "not a readable safetensors file")
    for path, message in cases.values():
        with pytest.raises(ValueError, match=message) as err:
            kx.load_pretrained(model, path)
        assert str(err.value).count("Cannot load weights from") == 1
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights_of(model)))


def test_builders_share_xceptions_path_and_options():
    with pytest.raises(ValueError, match="`output_stride` must be one of"):
        kx.xception65(weights=None, output_stride=4)
    model = kx.xception41p(weights=None, include_top=False, input_shape=(71, 71, 3), pooling="avg", output_stride=8)
    assert model.name == "xception41p" and model.output_shape == (None, 2048)
    assert kx.spec_of(model).output_stride == 8 and kx.spec_of(model).arch == "xception41p"
    with pytest.raises(ValueError, match="`arch` must be one of"):
        kx.build("xception99", weights=None)
    with pytest.raises(ValueError, match="kind='aligned' has its own residuals"):
        xception_spec(kind="aligned", residual=False)


@pytest.mark.parametrize("name", ["aligned41", "preact41"])
def test_feature_extractor_strides_and_output_stride_keep_the_features(name):
    """Strides 4..32 read from the strided depthwise convolutions; output_stride 8 (dilated) loads the same file."""
    path = os.path.join(FIXTURES, f"{name}.safetensors")
    model = _reduced(name, include_top=False)
    kx.load_pretrained(model, path)
    maps = kx.feature_extractor(model, (2, 4, 8, 16, 32))(_photo())
    assert [m.shape[1:3] for m in maps] == [(36, 42), (18, 21), (9, 11), (5, 6), (3, 3)]
    spec = xception_spec(**dict(REFERENCE["models"][name]["spec"], output_stride=8))
    from keras_xception.model.graph import build_model

    atrous = build_model(spec, include_top=False, input_shape=SHAPE)
    kx.load_pretrained(atrous, path)
    assert kx.spec_of(atrous).output_stride == 8 and atrous.output_shape[1:3] == (9, 11)
    assert kx.feature_extractor(atrous, (4,))(_photo()).shape == maps[1].shape


def test_command_line_arch(tmp_path, capsys):
    from PIL import Image

    from keras_xception import cli

    assert cli.main(["summary", "--arch", "xception41p", "--size", "71", "--no-top", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["name"] == "xception41p" and round(row["trainable_params"] / 1e6, 2) == 24.86  # 26.91 less the top
    (tmp_path / "images").mkdir()
    Image.fromarray(np.full((80, 90, 3), 120, np.uint8)).save(tmp_path / "images" / "a.png")
    out = tmp_path / "f.npz"
    argv = ["extract", str(tmp_path / "images"), "--arch", "xception41", "--weights", "none", "--image-size", "71"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert np.load(out)["features"].shape == (1, 2048)
    assert cli.main(["predict", "--arch", "xception41", "--weights", "xception65.ra3_in1k"]) == 2  # before any download
    assert "they are for xception65" in capsys.readouterr().err
    assert cli.main(["summary", "--arch", "xception65", "--middle-flow-blocks", "4"]) == 2


@pytest.mark.parametrize("name", ["aligned41", "preact41"])
def test_grad_cam_defaults_to_the_last_feature_map(name):
    model = _reduced(name)
    kx.load_pretrained(model, os.path.join(FIXTURES, f"{name}.safetensors"))
    heatmap, index = kx.grad_cam(model, _photo())
    assert heatmap.shape == (3, 3) and index == int(np.argmax(REFERENCE["models"][name]["logits"]))
    assert heatmap.max() == pytest.approx(1.0)
