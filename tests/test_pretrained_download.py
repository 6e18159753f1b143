"""keras_xception.pretrained.download: verified download and cache, against a loopback HTTP server with generated files."""

import hashlib
import os
import subprocess
import sys

import pytest

from keras_xception import pretrained as w

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def empty_cache(keras_home):
    """Every test here: an empty $KERAS_HOME (so an empty weights cache) and no mirror (conftest.keras_home)."""
    return keras_home


PAYLOAD = os.urandom(200_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def cache_files(keras_home):
    """Everything in the weights cache folder ($KERAS_HOME/models)."""
    d = keras_home / "models"
    return sorted(os.listdir(d)) if d.is_dir() else []


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
    # The download goes through keras.utils.get_file, on any backend: numpy's spares each child importing TensorFlow.
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="numpy")
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


# Why download.py wraps keras.utils.get_file instead of calling it on the cache file (Keras 3.15).
# When one of these starts failing, Keras has fixed it: the wrapper in download.py can shrink.


def _keras_get_file(name, url, keras_home, **kw):
    import keras

    os.makedirs(keras_home / "models", exist_ok=True)  # else get_file silently writes to /tmp/.keras instead
    return keras.utils.get_file(name, url, cache_dir=str(keras_home), cache_subdir="models", **kw)


def test_keras_get_file_alone_leaves_a_bad_download_in_the_cache(server, keras_home):
    server.files["/k.bin"] = PAYLOAD
    with pytest.raises(ValueError, match="hash does not match"):
        _keras_get_file("k.bin", server.url + "/k.bin", keras_home, file_hash="0" * 64)
    assert cache_files(keras_home) == ["k.bin"]  # ours: test_wrong_hash_leaves_nothing_and_explains


def test_keras_get_file_alone_deletes_the_cached_file_when_a_redownload_fails(keras_home):
    os.makedirs(keras_home / "models")
    (keras_home / "models" / "h.bin").write_bytes(b"placed by hand")
    with pytest.raises(Exception, match="URL fetch failure"):
        _keras_get_file("h.bin", "http://127.0.0.1:9/h.bin", keras_home, file_hash=SHA)
    assert cache_files(keras_home) == []  # ours keeps it: test_corrupt_cached_file_with_server_down_...


def test_keras_get_file_alone_exposes_a_partial_file(server, keras_home):
    import threading
    import time

    server.files["/p.bin"] = PAYLOAD
    server.mode["/p.bin"] = "slow"  # ~1 s
    thread = threading.Thread(target=_keras_get_file, args=("p.bin", server.url + "/p.bin", keras_home))
    thread.start()
    target = keras_home / "models" / "p.bin"
    deadline = time.monotonic() + 10
    while not (target.exists() and target.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    seen = target.stat().st_size  # what another process would find in the cache (and use, without a hash)
    thread.join()
    assert 0 < seen < len(PAYLOAD) == target.stat().st_size
