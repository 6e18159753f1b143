"""Registry, verified download and cache, against a loopback HTTP server with generated files."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import SMALL, rel_diff
from weights_server import FileServer

import keras_xception as kx
from keras_xception import pretrained as w

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(w.MIRROR_ENV, raising=False)
    yield tmp_path / "keras_home"


@pytest.fixture
def registered():
    """register() for one test: the sets it registers are unregistered afterwards (last first)."""
    names = []

    def reg(name, **kw):
        if name not in names:
            names.append(name)
        return w.register(name, overwrite=True, **kw)

    yield reg
    for n in reversed(names):
        if w.is_registered(n):  # a test may have unregistered it itself
            w.unregister(n)


@pytest.fixture
def replaced():
    """Replace a registered (built-in) record for one test; the original comes back afterwards."""
    originals = []

    def replace(name, **kw):
        originals.append(w.get_record(name))
        return w.register(name, overwrite=True, **kw)

    yield replace
    for rec in reversed(originals):
        fields = rec.to_dict()
        del fields["name"]
        w.register(rec.name, url=fields.pop("urls"), overwrite=True, **fields)
        assert w.get_record(rec.name) == rec


PAYLOAD = os.urandom(200_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def cache_files(keras_home):
    """Everything in the weights cache folder ($KERAS_HOME/models)."""
    d = keras_home / "models"
    return sorted(os.listdir(d)) if d.is_dir() else []


def test_official_records():
    top, notop = w.get_record("imagenet"), w.get_record("imagenet_notop")
    assert top.urls == (
        "https://storage.googleapis.com/tensorflow/keras-applications/xception/"
        "xception_weights_tf_dim_ordering_tf_kernels.h5",
    )
    assert top.file_hash == "0a58e3b7378bc2990ea3b43d5981f1f6" and top.hash_algorithm == "md5"
    assert notop.file_hash == "b0042744bf5b25fce3cb969f33bebb97"
    assert notop.file_name == "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert top.include_top and not notop.include_top and top.notop == "imagenet_notop"
    assert (top.top1, top.top5, top.crop_fraction, top.input_size) == (0.79, 0.945, 0.875, (299, 299))


def test_repository_registry_is_the_packaged_one():
    with open(os.path.join(REPO, "weights", "registry.json")) as f:
        records = json.load(f)["records"]
    assert {r["name"] for r in records} <= {r.name for r in w.list_records()}


def test_cache_is_keras_own_models_dir(keras_home):
    assert w.cached_path("imagenet") == str(keras_home / "models" / "xception_weights_tf_dim_ordering_tf_kernels.h5")


def test_download_verify_and_cache_hit_with_server_down(server, registered, capsys):
    server.files["/a.bin"] = PAYLOAD
    rec = registered("t_a", url=server.url + "/a.bin", file_hash=SHA, include_top=False)
    path = w.get_file(rec)
    assert open(path, "rb").read() == PAYLOAD
    assert "Downloading" in capsys.readouterr().out
    server.stop()
    assert w.get_file(rec) == path  # no network needed
    assert server.requests == ["/a.bin"]
    assert os.listdir(os.path.dirname(path)) == [rec.file_name]


def test_file_placed_by_hand_is_used_without_network(registered, keras_home):
    rec = registered("t_hand", url="http://127.0.0.1:9/never", file_hash=SHA, include_top=False)
    os.makedirs(keras_home / "models")
    (keras_home / "models" / rec.file_name).write_bytes(PAYLOAD)
    assert w.get_file(rec) == str(keras_home / "models" / rec.file_name)


def test_md5_records_work(server, registered):
    server.files["/m.bin"] = PAYLOAD
    rec = registered("t_md5", url=server.url + "/m.bin", file_hash=hashlib.md5(PAYLOAD).hexdigest(), include_top=False)
    assert w.verify_file(w.get_file(rec), rec)


def test_wrong_hash_leaves_nothing_and_explains(server, registered, keras_home):
    server.files["/bad.bin"] = PAYLOAD
    rec = registered("t_bad", url=server.url + "/bad.bin", file_hash="0" * 64, include_top=False)
    with pytest.raises(w.WeightsDownloadError) as e:
        w.get_file(rec)
    msg = str(e.value)
    assert server.url + "/bad.bin" in msg and "bad.bin" in msg and "0" * 64 in msg
    assert "place it at" in msg and w.MIRROR_ENV in msg
    assert cache_files(keras_home) == []


def test_404_and_unreachable_host(server, registered):
    rec = registered("t_404", url=server.url + "/missing.bin", file_hash=SHA, include_top=False)
    with pytest.raises(w.WeightsDownloadError, match="Not Found|404"):
        w.get_file(rec)
    port = server.port
    server.stop()
    rec = registered("t_down", url=f"http://127.0.0.1:{port}/x.bin", file_hash=SHA, include_top=False)
    with pytest.raises(w.WeightsDownloadError, match="refused|x.bin"):
        w.get_file(rec, timeout=5)
    assert not os.path.exists(w.cached_path(rec))


def test_truncated_transfer(server, registered, keras_home):
    server.files["/cut.bin"] = PAYLOAD
    server.mode["/cut.bin"] = "truncate"
    rec = registered("t_cut", url=server.url + "/cut.bin", file_hash=SHA, include_top=False)
    with pytest.raises(w.WeightsDownloadError, match="cut.bin"):
        w.get_file(rec, timeout=10)
    assert cache_files(keras_home) == []


@pytest.mark.parametrize("failure", ["404", "unreachable port", "wrong hash", "truncated"])
def test_failed_download_leaves_nothing_in_the_cache(server, registered, keras_home, failure):
    """Bug 7: a failed download left a 0-byte '<file>.lock' in the Keras cache."""
    server.files["/w.bin"] = PAYLOAD
    url, file_hash = server.url + "/w.bin", SHA
    if failure == "404":
        url = server.url + "/missing.bin"
    elif failure == "unreachable port":
        server.stop()
    elif failure == "wrong hash":
        file_hash = "0" * 64
    else:
        server.mode["/w.bin"] = "truncate"
    rec = registered("t_fail", url=url, file_hash=file_hash, include_top=False)
    with pytest.raises(w.WeightsDownloadError):
        w.get_file(rec, progress=False, timeout=5)
    assert cache_files(keras_home) == []  # no weight file, no .part, no .lock


def test_successful_download_leaves_only_the_weight_file(server, registered, keras_home):
    server.files["/w.bin"] = PAYLOAD
    rec = registered("t_ok", url=server.url + "/w.bin", file_hash=SHA, include_top=False)
    w.get_file(rec, progress=False)
    assert cache_files(keras_home) == [rec.file_name]
    w.get_file(rec, progress=False)  # a cache hit
    assert cache_files(keras_home) == [rec.file_name]


def test_second_url_is_tried(server, registered):
    server.files["/ok.bin"] = PAYLOAD
    rec = registered("t_two", url=[server.url + "/gone.bin", server.url + "/ok.bin"], file_hash=SHA, include_top=False)
    assert open(w.get_file(rec), "rb").read() == PAYLOAD
    assert server.requests == ["/gone.bin", "/ok.bin"]


def test_corrupt_cached_file_is_redownloaded(server, registered, keras_home):
    server.files["/c.bin"] = PAYLOAD
    rec = registered("t_corrupt", url=server.url + "/c.bin", file_hash=SHA, include_top=False)
    os.makedirs(keras_home / "models")
    (keras_home / "models" / rec.file_name).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="does not match"):
        path = w.get_file(rec)
    assert open(path, "rb").read() == PAYLOAD


def test_corrupt_cached_file_with_server_down_is_a_clear_error(registered, keras_home):
    rec = registered("t_corrupt2", url="http://127.0.0.1:9/c.bin", file_hash=SHA, include_top=False)
    os.makedirs(keras_home / "models")
    (keras_home / "models" / rec.file_name).write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(w.WeightsDownloadError, match="fails verification"):
        w.get_file(rec, timeout=5)
    assert cache_files(keras_home) == [rec.file_name]  # the user's file is kept; no lock file


def test_mirror_variable(server, registered, monkeypatch):
    monkeypatch.setenv(w.MIRROR_ENV, server.url + "/mirror/")
    server.files["/mirror/m.bin"] = PAYLOAD
    rec = registered("t_mirror", url="https://example.invalid/m.bin", file_hash=SHA, include_top=False)
    assert open(w.get_file(rec), "rb").read() == PAYLOAD
    assert server.requests == ["/mirror/m.bin"]
    # The built-in records too: the official file is asked for at <mirror>/<its file name>, only there.
    official = "/mirror/xception_weights_tf_dim_ordering_tf_kernels.h5"
    server.files[official] = b"not the official file"
    with pytest.raises(w.WeightsDownloadError) as e:
        w.get_file("imagenet", progress=False)
    assert server.requests[1:] == [official]
    assert server.url + official in str(e.value) and "googleapis" not in str(e.value)


def test_mirror_may_be_a_local_directory(registered, monkeypatch, tmp_path, keras_home):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "m.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv(w.MIRROR_ENV, mirror.as_uri())
    rec = registered("t_dir", url="https://example.invalid/m.bin", file_hash=SHA, include_top=False)
    assert open(w.get_file(rec, progress=False), "rb").read() == PAYLOAD
    assert cache_files(keras_home) == [rec.file_name]


@pytest.mark.slow
def test_concurrent_downloads_from_two_processes(server, registered, keras_home):
    server.files["/big.bin"] = PAYLOAD
    server.mode["/big.bin"] = "slow"  # ~1 s per download, so the two overlap
    code = (
        "import sys; from keras_xception import pretrained as w; "
        f"r = w.register('t_conc', url='{server.url}/big.bin', file_hash='{SHA}', include_top=False); "
        "print(w.get_file(r, progress=False))"
    )
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    paths = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(paths) == 1
    assert open(paths.pop(), "rb").read() == PAYLOAD
    assert server.requests.count("/big.bin") == 1  # the second process waited and reused the file
    assert cache_files(keras_home) == ["big.bin"]


def test_register_validates():
    with pytest.raises(ValueError, match="file_hash"):
        w.register("t_x", url="http://127.0.0.1/x", file_hash="abc", include_top=False)
    with pytest.raises(ValueError, match="already registered"):
        w.register("imagenet", url="http://127.0.0.1/x", file_hash="0" * 64, include_top=True)
    with pytest.raises(ValueError, match="Unknown weight set"):
        w.get_record("nope")
    with pytest.raises(ValueError, match=r"`notop` must name a registered weight set without the top.*'nope'"):
        w.register("t_x", url="http://127.0.0.1/x", file_hash="0" * 64, include_top=True, notop="nope")
    with pytest.raises(ValueError, match="`notop`.*'imagenet'"):  # has the top itself
        w.register("t_x", url="http://127.0.0.1/x", file_hash="0" * 64, include_top=True, notop="imagenet")
    assert not w.is_registered("t_x")


def test_unregister(registered):
    rec = registered("t_un", url="http://127.0.0.1/x.h5", file_hash="0" * 64, include_top=False)
    registered("t_un_top", url="http://127.0.0.1/y.h5", file_hash="1" * 64, include_top=True, notop="t_un")
    with pytest.raises(ValueError, match=r"Cannot unregister 't_un'.*no-top file.*\['t_un_top'\]"):
        w.unregister("t_un")  # t_un_top would be left pointing at nothing
    with pytest.raises(ValueError, match=r"'t_un' is the no-top file.*include_top=False"):
        w.register("t_un", url="http://127.0.0.1/x.h5", file_hash="0" * 64, include_top=True, overwrite=True)
    assert w.unregister("t_un_top").name == "t_un_top"
    assert w.unregister("t_un") == rec
    assert not w.is_registered("t_un") and rec not in w.list_records()
    with pytest.raises(
        ValueError, match=r"`name` must be a registered weight set \[.*'imagenet'.*\]; received name='t_un'"
    ):
        w.unregister("t_un")


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


def test_registered_name_end_to_end_with_reference_outputs(serve_reference, keras_reference, images):
    """register() a file written by keras.applications; Xception(weights=name) downloads and loads it."""
    ref = keras_reference[0]
    serve_reference("t_ref")
    model = kx.Xception(weights="t_ref", classifier_activation=None)
    x = kx.preprocess_input(images)
    ref_logits = ref.predict(x, verbose=0)
    np.testing.assert_array_less(rel_diff(model.predict(x, verbose=0), ref_logits), 1e-4)
    with pytest.raises(ValueError, match=r"\(71, 71\)"):
        kx.Xception(weights="t_ref", input_shape=(96, 96, 3))


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

    feats = keras.Model(model.input, model.get_layer("avg_pool").output).predict(x, verbose=0)
    ref_feats = keras.Model(ref.input, ref.get_layer("avg_pool").output).predict(x, verbose=0)
    assert rel_diff(feats, ref_feats) < 1e-4


def test_input_channel_adaptation(keras_reference, images):
    import keras

    ref, path, _ = keras_reference
    feat = lambda m: keras.Model(m.input, m.get_layer("block14_sepconv2_act").output)
    rgb = feat(kx.Xception(weights=path, include_top=False, input_shape=(SMALL, SMALL, 3)))
    with pytest.warns(UserWarning, match="Adapting"):
        grey = feat(kx.Xception(weights=path, include_top=False, input_shape=(SMALL, SMALL, 1)))
    with pytest.warns(UserWarning, match="Adapting"):
        six = feat(kx.Xception(weights=path, include_top=False, input_shape=(SMALL, SMALL, 6)))
    g = kx.preprocess_input(images[..., :1])
    # Summed kernel on a grey image == RGB kernel on the grey image replicated in R, G, B.
    assert rel_diff(grey.predict(g, verbose=0), rgb.predict(np.repeat(g, 3, -1), verbose=0)) < 1e-4
    # Repeated, rescaled kernel on [RGB, RGB] == RGB kernel on RGB.
    x = kx.preprocess_input(images)
    assert rel_diff(six.predict(np.concatenate([x, x], -1), verbose=0), rgb.predict(x, verbose=0)) < 1e-4


@pytest.fixture
def serve_notop(server, notop_reference):
    """Serve the no-top reference file (official layout) at /notop.h5; returns its sha256."""
    data = open(notop_reference[1], "rb").read()
    server.files["/notop.h5"] = data
    return hashlib.sha256(data).hexdigest()


def pooled(model, x):
    """The backbone's globally averaged features."""
    import keras

    if "avg_pool" in [layer.name for layer in model.layers]:
        model = keras.Model(model.inputs, model.get_layer("avg_pool").output)
        return model.predict(x, verbose=0)
    return model.predict(x, verbose=0).mean(axis=(1, 2))


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
