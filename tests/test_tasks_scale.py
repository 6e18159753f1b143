"""Feature extraction at scale (keras_xception.tasks.scale): Parquet shards equal to the .npz route, resume
after SIGKILL, refusal of other settings, path lists and TFRecords with bad entries, and the Ray engine
surviving a killed actor. A tiny Xception (SMALL_OPTIONS, pooled) keeps it fast."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import SMALL, rel_diff, small_xception
from synthetic import write_synthetic_tree

from keras_xception import folders
from keras_xception.data.shards import MANIFEST
from keras_xception.tasks.extraction import extract_features

RUN = dict(image_size=SMALL, batch_size=2, verbose=0)


@pytest.fixture(scope="module")
def tiny():
    return small_xception(include_top=False, pooling="avg")


def _table(out):
    """``{path: features}`` of a folder of shards, read as one table; asserts no path appears twice."""
    import pyarrow.dataset as pads

    table = pads.dataset(out).to_table()
    paths = table["path"].to_pylist()
    assert len(paths) == len(set(paths)), "an image written twice"
    return dict(zip(paths, np.array(table["features"].to_pylist(), np.float32)))


def _assert_equal(out, results):
    table = _table(out)
    assert sorted(table) == sorted(results.paths)
    assert rel_diff(np.stack([table[p] for p in results.paths]), results.features) < 1e-5


def test_parquet_shards_equal_the_npz_route_and_resume(feature_tree, tiny, tmp_path):
    out = str(tmp_path / "features")
    npz = extract_features(feature_tree, model=tiny, out=str(tmp_path / "f.npz"), **RUN)
    assert set(np.load(tmp_path / "f.npz")["paths"]) == set(npz.paths)
    manifest = extract_features(feature_tree, model=tiny, out=out, shard_size=3, **RUN)
    assert manifest["images"] == 7 and manifest["shards"] == 3 and manifest["dimension"] == tiny.output_shape[-1]
    assert json.load(open(os.path.join(out, MANIFEST))) == manifest and manifest["settings"]["transform"]
    _assert_equal(out, npz)
    assert sorted(os.listdir(out)) == [MANIFEST] + [f"part-00000{k}.parquet" for k in range(3)]
    times = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out) if f.startswith("part")}
    assert extract_features(feature_tree, model=tiny, out=out, shard_size=3, **RUN) == manifest  # all done
    assert times == {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in times}
    with pytest.raises(ValueError, match="other settings .*shard_size.*--overwrite"):
        extract_features(feature_tree, model=tiny, out=out, shard_size=4, **RUN)
    assert extract_features(feature_tree, model=tiny, out=out, shard_size=4, overwrite=True, **RUN)["shards"] == 2
    assert len(os.listdir(out)) == 3
    with pytest.raises(ValueError, match="writes Parquet shards"):
        extract_features(feature_tree, model=tiny, engine="ray", **RUN)


def _tfrecord(path, images, corrupt=False):
    import tensorflow as tf

    with tf.io.TFRecordWriter(path) as w:
        for k, image in enumerate(images):
            feature = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[open(image, "rb").read()])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
                "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"img{k}.jpg".encode()])),
            }
            w.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    if corrupt:  # flip bytes inside the second record: its checksum no longer matches
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2 : len(data) // 2 + 8] = bytes(8)
        open(path, "wb").write(bytes(data))


def test_lists_and_tfrecords_with_bad_entries_reported(feature_tree, tiny, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = folders.list_images(feature_tree)
    (tmp_path / "broken.jpg").write_text("no JPEG here")
    listed = good[:3] + [str(tmp_path / "missing.jpg"), str(tmp_path / "broken.jpg")]
    (tmp_path / "list.txt").write_text("\n".join(listed[:3] + ["missing.jpg", "broken.jpg"]) + "\n")
    pq.write_table(pa.table({"path": listed}), tmp_path / "list.parquet")
    npz = extract_features(good[:3], model=tiny, **RUN)
    for name in ("list.txt", "list.parquet"):
        with pytest.warns(UserWarning, match="broken.jpg"):
            m = extract_features(str(tmp_path / name), model=tiny, out=str(tmp_path / name[5:]), **RUN)
        reasons = {os.path.basename(s["path"]): s["reason"] for s in m["skipped"]}
        assert m["images"] == 3 and reasons.keys() == {"missing.jpg", "broken.jpg"}, m
        assert "No such file" in reasons["missing.jpg"] and "Unknown image file format" in reasons["broken.jpg"]
        _assert_equal(str(tmp_path / name[5:]), npz)
    _tfrecord(str(tmp_path / "a.tfrecord"), good[:3])
    _tfrecord(str(tmp_path / "b.tfrecord"), good[3:], corrupt=True)
    with pytest.warns(UserWarning, match="b.tfrecord"):
        m = extract_features(str(tmp_path / "*.tfrecord"), model=tiny, out=str(tmp_path / "tf"), **RUN)
    assert m["images"] == 3 and [s["path"] for s in m["skipped"]] == [str(tmp_path / "b.tfrecord")], m
    assert "corrupted record" in m["skipped"][0]["reason"] or "truncated" in m["skipped"][0]["reason"]
    assert rel_diff(np.stack([_table(str(tmp_path / "tf"))[f"img{k}.jpg"] for k in range(3)]), npz.features) < 1e-5


_CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import small_xception
from keras_xception.data import shards
from keras_xception.tasks.extraction import extract_features
write = shards.write_shard
def write_then_wait(out, index, results):  # the parent kills the run while it waits here
    write(out, index, results)
    print(sorted(m for m in sys.modules if m.split(".")[0] == "ray"), flush=True)
    time.sleep(120)
shards.write_shard = write_then_wait
extract_features({tree!r}, model=small_xception(include_top=False, pooling="avg"), out={out!r}, shard_size=2,
                 image_size=71, batch_size=2, verbose=0)
"""


def test_sigkill_after_the_first_shard_then_resume(feature_tree, tiny, tmp_path):
    """(The command line's ``extract photos/ --out features/`` runs in docs/extraction.md.)"""
    out = str(tmp_path / "features")
    code = _CHILD.format(tests=os.path.dirname(__file__), tree=feature_tree, out=out)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TF_CPP_MIN_LOG_LEVEL="3")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert child.stdout.readline().decode().strip() == "[]"  # the first shard is written; Ray not imported
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert sorted(f for f in os.listdir(out) if f.startswith("part")) == ["part-000000.parquet"]
    assert not json.load(open(os.path.join(out, MANIFEST)))["complete"]
    m = extract_features(feature_tree, model=tiny, out=out, shard_size=2, **RUN)
    assert m["complete"] and m["images"] == 7 and m["shards"] == 4
    assert sorted(_table(out)) == sorted(folders.list_images(feature_tree))  # every image once


def _cmdline(process):
    import psutil

    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # gone, or not ours to read
        return ""


def _kill_one_actor(out, killed, done):
    """SIGKILL the Ray actor running the model right after it wrote its first shard; give up when ``done`` is set.

    Its process is found first (Ray names it ``ray::MapWorker...`` when the actor is created, before the model is
    read), so that the kill follows the first shard by one poll, however long the start takes under load (no
    deadline: a kill before the first shard would only make Ray start the model again)."""
    import psutil

    pid = None
    while not done.is_set() and not killed:
        if pid is None:  # among this process's descendants (Ray's raylet is a child, its workers grandchildren)
            workers = [p.pid for p in psutil.Process().children(recursive=True) if "MapWorker" in _cmdline(p)]
            pid = workers[0] if workers else None
        if pid is not None and any(f.startswith("part") for f in os.listdir(out)):
            os.kill(pid, signal.SIGKILL)
            killed.append(sum(f.startswith("part") for f in os.listdir(out)))  # shards done by then
        time.sleep(0.05 if pid else 0.5)  # (reading processes costs more than a listing of `out`)


@pytest.mark.slow
def test_ray_engine_equals_local_and_survives_a_killed_actor(tiny, tmp_path):
    ray = pytest.importorskip("ray")
    tree = str(tmp_path / "tree")
    write_synthetic_tree(tree, classes=2, per_class=3, sizes=(71, 80))
    out, killed, done = str(tmp_path / "ray"), [], threading.Event()
    os.makedirs(out)
    threading.Thread(target=_kill_one_actor, args=(out, killed, done), daemon=True).start()
    try:
        m = extract_features(tree, model=tiny, out=out, shard_size=1, engine="ray", **RUN)
    finally:
        done.set()
        ray.shutdown()
    assert killed and killed[0] < 6, f"no actor was killed during the run: {killed}"
    assert m["images"] == 6 and m["shards"] == 6 and m["skipped"] == []
    _assert_equal(out, extract_features(tree, model=tiny, **RUN))
