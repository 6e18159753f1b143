"""keras_xception.pretrained.registry: the built-in records, register() and unregister() and their checks."""

import json
import os

import pytest

from keras_xception import pretrained as w

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def empty_cache(keras_home):
    """Every test here: an empty $KERAS_HOME (so an empty weights cache) and no mirror (conftest.keras_home)."""
    return keras_home


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
