"""Reduced-precision inference: Predictor(precision=...), calibration, quantize/agreement, int8 export, CLI."""

import json
import os
import re
import warnings

import numpy as np
import pytest
from conftest import SMALL, rel_diff, small_xception

from keras_xception import cli
from keras_xception.data.metadata import read_record
from keras_xception.data.transform import load_image, resolve_transform
from keras_xception.deploy import predictor as prec
from keras_xception.deploy import runtimes
from keras_xception.deploy.export import export
from keras_xception.deploy.predictor import Predictor
from keras_xception.deploy.quantization import agreement, outputs_are_classes, quantize
from keras_xception.tasks.transfer import build_classifier

# Every Predictor reuses the first Keras export of its model and the first NNCF quantization of the same model and
# calibration images (conftest.export_each_model_once, quantize_each_model_once).
pytestmark = pytest.mark.usefixtures("export_each_model_once", "quantize_each_model_once")

# What "within tolerance of fp32" means here, on the digits model (71 px, width 0.25, 1 middle
# block, far more sensitive to int8 than the full-size model; see benchmarks/quantization.py for that):
# top-1 agreement over the 397 held-out digits and mean cosine of the probability vectors.
# OpenVINO int8 measured 385 of 397 top-1 (0.9698), ONNX Runtime int8 0.9899 (Xeon with AVX512_VNNI); with 7-bit
# weights on an AVX2-only AMD EPYC 0.9874 (cosine 0.9967) and 0.9924 (0.9991); 8-bit gave 0.57 and 0.33 there.
# (All for the digits model of 3 epochs at 1e-3; the one of 2 epochs on a cosine schedule that replaced it, on that
# AMD EPYC: OpenVINO 0.9899 (cosine 0.9991), ONNX Runtime 0.9924 (0.9988).)
TOLERANCE = {"fp32": (1.0, 0.999999), "bf16": (0.99, 0.999), "int8": (0.965, 0.995)}
CASES = [("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"), ("onnxruntime", "int8")]


def quiet_predictor(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-calibration warnings (tested on their own below)
        return Predictor(*args, **kwargs)


@pytest.mark.parametrize("runtime,precision", CASES)
def test_each_precision_agrees_with_fp32_within_tolerance(digits, runtime, precision):
    model, x = digits["model"], digits["x_test"]
    calibration = digits["x_train"][:100] if precision == "int8" else None
    p = quiet_predictor(model, runtime, precision=precision, calibration=calibration)
    assert (p.runtime, p.precision) == (runtime, precision)
    assert p.calibration_count == (100 if precision == "int8" else None)
    got, ref = p.predict(x), digits["outputs"]
    found = agreement(ref, got)
    top1, cosine = TOLERANCE[precision]
    assert found["top1_agreement"] >= top1 and found["cosine_mean"] >= cosine, found
    if precision == "fp32":
        assert rel_diff(got, ref) < 1e-4
    else:
        assert found["max_abs_diff"] > 1e-6  # really reduced: not the fp32 model under another name
    # predictions of the true digits stay right
    assert np.mean(got.argmax(1) == digits["y_test"]) >= digits["accuracy"] - 0.02


def test_calibration_forms(digits, tmp_path):
    import tensorflow as tf

    model = digits["model"]
    shape = (SMALL, SMALL, 3)
    transform = resolve_transform(model=model)
    x = digits["x_train"][:24]
    assert prec.calibration_images(x, input_shape=shape).shape == (24,) + shape
    assert prec.calibration_images(x[0], input_shape=shape).shape == (1,) + shape  # one image
    batches = tf.data.Dataset.from_tensor_slices(x).batch(5)
    np.testing.assert_array_equal(prec.calibration_images(batches, input_shape=shape), x)
    pairs = tf.data.Dataset.from_tensor_slices((x, np.zeros(24))).batch(7)
    np.testing.assert_array_equal(prec.calibration_images(pairs, input_shape=shape, limit=10), x[:10])
    singles = tf.data.Dataset.from_tensor_slices(x)  # unbatched images
    assert len(prec.calibration_images(singles, input_shape=shape, limit=3)) == 3
    # a directory is read with the model's transform: the same arrays as load_image + preprocess
    from_dir = prec.calibration_images(digits["train_dir"], input_shape=shape, transform=transform)
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(digits["train_dir"]) for f in fs)
    expected = np.stack([transform.preprocess(load_image(f, transform)) for f in files])
    assert from_dir.shape == (60,) + shape
    np.testing.assert_allclose(np.sort(from_dir.ravel()), np.sort(expected.ravel()), atol=1e-5)
    # more files than the limit: a seeded random sample, from every class folder
    sample = prec.calibration_images(digits["train_dir"], input_shape=shape, transform=transform, limit=20)
    assert len(sample) == 20
    assert len(prec.calibration_images(files[:5], input_shape=shape, transform=transform)) == 5
    # one unreadable file among many: named with its reason, the rest used
    bad = tmp_path / "cal"
    bad.mkdir()
    for f in files[:4]:
        (bad / os.path.basename(f)).write_bytes(open(f, "rb").read())
    (bad / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="broken.png"):
        assert len(prec.calibration_images(str(bad), input_shape=shape, transform=transform)) == 4


def test_calibration_errors(digits, tmp_path):
    model, shape = digits["model"], (SMALL, SMALL, 3)
    with pytest.raises(ValueError, match="`calibration` is required"):
        Predictor(model, "openvino", precision="int8")
    with pytest.raises(ValueError, match=r"shape \(n,\) \+ \(71, 71, 3\)"):
        Predictor(model, "openvino", precision="int8", calibration=np.zeros((4, 96, 96, 3), np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        prec.calibration_images(np.full((2,) + shape, np.nan, np.float32), input_shape=shape)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable image"):
        prec.calibration_images(str(tmp_path / "empty"), input_shape=shape, transform=resolve_transform(model=model))
    with pytest.raises(ValueError, match="existing directory"):
        prec.calibration_images(str(tmp_path / "missing"), input_shape=shape, transform=resolve_transform())
    with pytest.raises(ValueError, match="received dict"):
        prec.calibration_images({"x": 1}, input_shape=shape)
    for precision in ("bf16", None):  # calibration is never silently ignored
        with pytest.raises(ValueError, match="only used with precision='int8'"):
            Predictor(model, "openvino", precision=precision, calibration=digits["x_train"][:2])
    # (the warning is Predictor's, for any int8 runtime: ONNX Runtime quantizes in a third of NNCF's time)
    with pytest.warns(UserWarning, match=r"calibration used 3 image\(s\); NNCF recommends about 300.*quantize"):
        Predictor(model, "onnxruntime", precision="int8", calibration=digits["x_train"][:3])


def test_precision_and_runtime_errors(digits):
    model = digits["model"]
    with pytest.raises(ValueError, match=r"`precision` must be one of \('fp32', 'bf16', 'int8'\)"):
        Predictor(model, precision="fp16")
    with pytest.raises(ValueError, match="runtime='tensorflow' does not run precision='int8'"):
        Predictor(model, "tensorflow", precision="int8", calibration=digits["x_train"][:2])
    with pytest.raises(ValueError, match="runtime='onnxruntime' does not run precision='bf16'.*'openvino'"):
        Predictor(model, "onnxruntime", precision="bf16")
    with pytest.raises(ValueError, match="runtime='keras' runs in float32 only"):
        Predictor(model, "keras", precision="int8", calibration=digits["x_train"][:2])


def test_bf16_warning_asks_openvino(digits, monkeypatch):
    """The hardware warning is OpenVINO's OPTIMIZATION_CAPABILITIES query (monkeypatched: any CPU)."""
    monkeypatch.setattr(runtimes, "cpu_capabilities", lambda: ("FP32", "INT8", "BIN"))
    message = runtimes.hardware_warning("bf16")
    assert "does not list BF16" in message and "(FP32, INT8, BIN)" in message
    assert runtimes.hardware_warning("int8") is None and runtimes.hardware_warning("fp32") is None
    with pytest.warns(UserWarning, match="does not list BF16"):
        p = Predictor(digits["model"], precision="bf16")  # auto: the runtime that runs it
    assert (p.runtime, p.precision) == ("openvino", "bf16")
    monkeypatch.setattr(runtimes, "cpu_capabilities", lambda: ("FP32", "BF16", "INT8"))
    assert runtimes.hardware_warning("bf16") is None
    monkeypatch.setattr(runtimes, "cpu_capabilities", lambda: None)  # no OpenVINO: nothing is known
    assert runtimes.hardware_warning("bf16") is None
    monkeypatch.undo()
    assert "FP32" in runtimes.cpu_capabilities()  # the real query answers


def test_quantize_writes_only_what_agrees(digits, tmp_path):
    model, x = digits["model"], digits["x_test"]
    out, report = tmp_path / "good.xml", tmp_path / "good.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        good = quantize(model, digits["x_train"][:100], x, out=str(out), min_agreement=0.965, report=str(report))
    assert good["passed"] and good["written"] == str(out) and out.exists()
    assert good["gate"] == "top1_agreement" and good["holdout_images"] == len(x)
    assert json.loads(report.read_text())["top1_agreement"] == good["top1_agreement"]
    reloaded = Predictor(str(out))  # build once, reuse: int8 from the file, no calibration needed
    assert reloaded.precision == "int8" and reloaded.transform == resolve_transform(model=model)
    np.testing.assert_allclose(reloaded.predict(x[:8]), Predictor(str(out)).predict(x[:8]), atol=1e-6)
    assert agreement(digits["outputs"], reloaded.predict(x))["top1_agreement"] == good["top1_agreement"]
    # A broken quantization (calibrated on constant images) is caught, and nothing is written.
    out_bad, report_bad = tmp_path / "bad.xml", tmp_path / "bad.json"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bad = quantize(model, np.zeros((8, SMALL, SMALL, 3), np.float32), x, out=str(out_bad), report=str(report_bad))
    messages = [str(w.message) for w in caught]
    assert any(re.search("does not agree with float32.*nothing was written", m) for m in messages), messages
    # The small-calibration warning fits its context: quantize is measuring the agreement already.
    few = [m for m in messages if "calibration used 8 image(s)" in m]
    assert len(few) == 1 and "holdout images in this run" in few[0] and "keras-xception quantize" not in few[0], few
    assert not bad["passed"] and bad["written"] is None and bad["top1_agreement"] < 0.9
    assert not out_bad.exists() and not (tmp_path / "bad.bin").exists()
    assert json.loads(report_bad.read_text())["passed"] is False  # reported either way
    with pytest.raises(ValueError, match="`out` must end with .xml"):
        quantize(model, digits["x_train"][:2], x, out=str(tmp_path / "m.pb"))
    with pytest.raises(ValueError, match="'int8' or 'bf16'"):
        quantize(model, None, x, precision="fp32")


def test_agreement_figures():
    ref = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    got = np.array([[0.6, 0.3, 0.1], [0.5, 0.1, 0.4]])
    a = agreement(ref, got, k=2)
    assert a["top1_agreement"] == 0.5 and a["top2_overlap"] == 0.75
    assert a["max_abs_diff"] == pytest.approx(0.4) and a["count"] == 2
    assert agreement(ref, ref)["cosine_min"] == pytest.approx(1.0)
    assert "top1_agreement" not in agreement(ref, got, classes=False)
    with pytest.raises(ValueError, match="same shape"):
        agreement(ref, got[:1])


def test_nested_classifier_and_feature_model_other_size(tmp_path):
    """A transfer-learned classifier (nested backbone + head) at 96 px, and a pooled feature model.

    On ONNX Runtime: its export and quantization cost a third of OpenVINO's and NNCF's (the other tests here run
    OpenVINO); what is checked (nested model, input size, which figure gates) is the runtime's neither."""
    import keras

    backbone = small_xception(include_top=False, input_shape=(96, 96, 3), pooling=None)
    clf = build_classifier(5, backbone=backbone)
    assert outputs_are_classes(clf)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (6, 96, 96, 3)).astype(np.float32)
    p = quiet_predictor(clf, "onnxruntime", precision="int8", calibration=x)
    assert p.predict(x).shape == (6, 5) and p.input_shape == (96, 96, 3) and p.precision == "int8"
    features = small_xception(include_top=False, input_shape=(96, 96, 3), pooling="avg")
    assert not outputs_are_classes(features)
    assert isinstance(features, keras.Model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = quantize(features, x, x, runtime="onnxruntime", min_agreement=0.9)
    assert report["gate"] == "cosine_mean" and "top1_agreement" not in report and report["cosine_mean"] > 0.9


def largest_int8_weight(path):
    """The largest magnitude among the int8 weights of the matrix products and ungrouped convolutions of an
    int8 ``.onnx`` or ``.xml`` file (the depthwise ones of OpenVINO, 5-D, may use all 8 bits)."""
    if path.endswith(".onnx"):
        import onnx
        from onnx import numpy_helper

        arrays = [numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer]
    else:
        import openvino as ov

        constants = [op for op in ov.Core().read_model(path).get_ops() if op.get_type_name() == "Constant"]
        arrays = [op.get_data() for op in constants]
    weights = [a for a in arrays if a.dtype == np.int8 and a.ndim in (2, 4)]
    return max(int(np.abs(a.astype(np.int32)).max()) for a in weights) if weights else 0


def test_export_int8_and_file_errors(digits, tmp_path):
    model, x = digits["model"], digits["x_test"][:4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fmt, name in (("openvino", "m.xml"), ("onnx", "m.onnx")):  # (the int8 tests' 100 images: one NNCF run)
            path = export(model, tmp_path / name, fmt, precision="int8", calibration=digits["x_train"][:100])
            p = Predictor(path)
            assert p.precision == "int8" and p.runtime == {"onnx": "onnxruntime"}.get(fmt, fmt)
            assert agreement(digits["outputs"][:4], p.predict(x))["cosine_mean"] > 0.99
            assert read_record(path).transform == resolve_transform(model=model)
            assert 0 < largest_int8_weight(path) <= 64  # 7-bit weights: no int16 saturation without VNNI
    with pytest.raises(ValueError, match="compile"):
        export(model, tmp_path / "b.xml", "openvino", precision="bf16")
    with pytest.raises(ValueError, match="format='onnx', 'openvino' or 'litert'"):
        export(model, tmp_path / "sm", "savedmodel", precision="int8", calibration=x)
    with pytest.raises(ValueError, match="holds an int8 model; it cannot run in precision='fp32'"):
        Predictor(str(tmp_path / "m.xml"), precision="fp32")
    with pytest.raises(ValueError, match="is a openvino model, run by runtime='openvino'"):
        Predictor(str(tmp_path / "m.xml"), runtime="onnxruntime")
    with pytest.raises(ValueError, match="does not exist"):
        Predictor(str(tmp_path / "none.xml"))
    with pytest.warns(UserWarning, match="already quantized to int8; `calibration` was not used"):
        Predictor(str(tmp_path / "m.xml"), precision="int8", calibration=x)
    bf16 = quiet_predictor(export(model, tmp_path / "f.xml", "openvino"), precision="bf16")  # bf16 at load time
    assert bf16.precision == "bf16"


def test_cli_quantize_and_precision_flags(digits, tmp_path, capsys):
    model_path = str(tmp_path / "digits.keras")
    digits["model"].save(model_path)
    out, report = str(tmp_path / "q.xml"), str(tmp_path / "r.json")
    common = ["--calibration", digits["train_dir"], "--holdout", digits["test_dir"], "--report", report]
    assert cli.main(["quantize", "--model", model_path, *common, "--out", out, "--min-agreement", "0.9"]) == 0
    stdout = capsys.readouterr().out
    assert "int8 on openvino vs fp32 over 40 held-out images" in stdout and "written to" in stdout
    assert os.path.exists(out) and json.load(open(report))["calibration_images"] == 60
    # a broken quantization (calibrated on black images): exit 1, reported, nothing written
    from PIL import Image

    black = tmp_path / "black"
    black.mkdir()
    for i in range(4):
        Image.new("RGB", (81, 81)).save(black / f"{i}.png")
    out2 = str(tmp_path / "q2.onnx")  # ONNX Runtime, a third of NNCF's time (agreement about 0.2, OpenVINO 0.05)
    argv = ["quantize", "--model", model_path, "--calibration", str(black), "--holdout", digits["test_dir"]]
    assert cli.main([*argv, "--out", out2, "--report", report]) == 1
    assert not os.path.exists(out2) and json.load(open(report))["passed"] is False
    assert "top1_agreement" in capsys.readouterr().err
    assert cli.main(["quantize", "--model", model_path, "--holdout", digits["test_dir"]]) == 2  # int8 needs data
    # --precision on predict/extract: clear usage errors, then a real int8 extract
    base = ["extract", digits["test_dir"], "--weights", "none", "--image-size", "71", "--out", str(tmp_path / "f")]
    assert cli.main([*base, "--precision", "int8"]) == 2
    assert cli.main([*base, "--precision", "bf16", "--runtime", "keras"]) == 2
    assert cli.main([*base, "--precision", "bf16", "--calibration", digits["train_dir"]]) == 2
    err = capsys.readouterr().err
    assert "--precision int8 needs --calibration DIR" in err and "--runtime keras runs fp32 only" in err
    # the real int8 extract on the small digits classifier (--model): the full-width model changes nothing here,
    # and ONNX Runtime exports and quantizes its feature model in a third of OpenVINO's time
    real = ["extract", digits["test_dir"], "--model", model_path, "--runtime", "onnxruntime"]
    real += ["--out", str(tmp_path / "f.npz")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a plain model.save file: classes named by index
        assert cli.main([*real, "--precision", "int8", "--calibration", digits["train_dir"]]) == 0
    width = digits["model"].get_layer("avg_pool").output.shape[-1]
    assert np.load(str(tmp_path / "f.npz"))["features"].shape == (40, width)


def test_evaluate_in_reduced_precision(digits):
    """evaluate(precision="int8", calibration=DIR): the top-1 of the int8 model next to fp32's."""
    from keras_xception.data.files import Records
    from keras_xception.tasks.evaluation import evaluate

    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(digits["test_dir"]) for f in fs)
    labels = [int(os.path.basename(os.path.dirname(f)).split("_")[1]) for f in files]
    records = Records.from_files(files, labels)
    model = digits["model"]
    fp32 = evaluate(model, records, batch_size=8, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = evaluate(
            model, records, batch_size=8, verbose=0, runtime="auto", precision="int8", calibration=digits["train_dir"]
        )
    assert fp32["count"] == int8["count"] == 40 and fp32["top1"] >= 0.7
    assert abs(int8["top1"] - fp32["top1"]) <= 0.05
    with pytest.raises(ValueError, match="runtime='keras' runs in float32 only"):
        evaluate(model, records, batch_size=8, verbose=0, precision="bf16")
