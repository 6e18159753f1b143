import numpy as np
import pytest

import keras_xception as kx
from keras_xception.model.imagenet import class_index


def test_class_index_spelled_as_keras():
    idx = class_index()
    assert len(idx) == 1000
    assert idx[0] == ("n01440764", "tench")
    assert idx[386] == ("n02504458", "African_elephant")
    assert idx[134][1] == idx[517][1] == "crane" and idx[134][0] != idx[517][0]
    assert [w for w, _ in idx] == sorted(w for w, _ in idx)
    assert len({w for w, _ in idx}) == 1000


def test_decode_predictions_best_first_matches_argsort():
    preds = np.random.default_rng(0).random((3, 1000)).astype("float32")
    out = kx.decode_predictions(preds, top=4)
    assert len(out) == 3
    for row, res in zip(preds, out):
        expected = np.argsort(row)[::-1][:4]
        assert [r[0] for r in res] == [class_index()[i][0] for i in expected]
        assert [r[2] for r in res] == pytest.approx(row[expected].tolist())
        assert all(isinstance(r[2], float) for r in res)


@pytest.mark.parametrize("shape", [(1000,), (2, 999), (1, 1, 1000)])
def test_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"\(batch, 1000\)"):
        kx.decode_predictions(np.zeros(shape))


@pytest.mark.parametrize("top", [0, 1001, 2.5, True])
def test_bad_top(top):
    with pytest.raises(ValueError, match="top"):
        kx.decode_predictions(np.zeros((1, 1000)), top=top)
