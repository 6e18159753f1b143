"""keras_xception.tasks.transfer: classifier = frozen backbone + head, training the head (cached and plain),
fine-tuning the top blocks, on a tiny generated image tree (the folder utilities are in test_data_files.py)."""

import warnings

import numpy as np
import pytest
from conftest import SMALL, randomize, rel_diff, small_xception

keras = pytest.importorskip("keras")

import keras_xception as kx  # noqa: E402
from keras_xception import folders, preprocess_input, transfer  # noqa: E402

SHAPE = (SMALL, SMALL, 3)


@pytest.fixture(scope="module")
def tree(image_tree):
    return image_tree


@pytest.fixture(scope="module")
def data(tree):
    tp, tl, vp, vl, classes = folders.class_folder_split(tree, 0.2, seed=0)
    train = folders.image_dataset(
        tp, kx.resolve_transform(target_size=SHAPE[:2]), labels=tl, batch_size=32
    )  # one full batch
    val = folders.image_dataset(vp, kx.resolve_transform(target_size=SHAPE[:2]), labels=vl, batch_size=32)
    return train, val, classes


FEATURES = 512  # the small backbone's pooled features


def _backbone(seed=0):
    """The small variant without its top, frozen as build_backbone leaves it (random BN statistics)."""
    backbone = randomize(small_xception(include_top=False), seed=seed)
    backbone.trainable = False
    return backbone


# ---------------------------------------------------------------- model structure


def test_classifier_is_backbone_plus_head_with_frozen_inference_batchnorm(images):
    backbone = _backbone()
    model = transfer.build_classifier(2, backbone=backbone, input_shape=SHAPE, dropout=0.0)
    head = model.get_layer("head")
    assert not backbone.trainable and len(backbone.trainable_weights) == 0
    assert {id(w) for w in model.trainable_weights} == {id(w) for w in head.trainable_weights}
    raw = images  # [0, 255]; eager calls (predict would trace each model for one batch)
    separately = head(np.asarray(backbone(preprocess_input(raw), training=False)).mean(axis=(1, 2)), training=False)
    together = model(raw, training=False)
    assert rel_diff(together, separately) < 1e-5
    # BatchNorm stays in inference mode even when the model is called in training mode.
    assert rel_diff(model(raw, training=True), together) < 1e-6


def test_build_arguments_are_checked():
    with pytest.raises(ValueError, match="num_classes"):
        transfer.build_head(1)
    with pytest.raises(ValueError, match="dropout"):
        transfer.build_head(3, dropout=1.0)
    backbone = _backbone()  # the small variant: the checks do not depend on the size (build_backbone: below)
    with pytest.raises(ValueError, match="num_classes"):
        transfer.build_classifier(backbone=backbone)
    with pytest.raises(ValueError, match=f"64-d features but the backbone gives {FEATURES}"):
        transfer.build_classifier(backbone=backbone, head=transfer.build_head(2, feature_dim=64))
    pooled = small_xception(include_top=False, pooling="avg")
    with pytest.raises(ValueError, match="4D feature-map"):
        transfer.build_classifier(2, backbone=pooled)
    with pytest.raises(ValueError, match="must be or contain an Xception"):
        transfer.train_head(transfer.build_head(2), (np.zeros((2, 4)), np.zeros(2)))


# ---------------------------------------------------------------- training


def _train_from(init, backbone, train, val=None, **options):
    """A head with the weights ``init`` on ``backbone``, trained one full-batch epoch: ``(weights, history, classifier)``."""
    head = transfer.build_head(len(init[-1]), feature_dim=FEATURES, dropout=0.0)
    head.set_weights(init)
    model = transfer.build_classifier(backbone=backbone, head=head, input_shape=SHAPE)
    hist = transfer.train_head(model, train, val, epochs=1, batch_size=32, verbose=0, **options)
    return head.get_weights(), hist.history, model


@pytest.fixture(scope="module")
def cached_step(data):
    """One full-batch step of the cached path from a fresh head (the fast-path and given-features tests compare
    their heads with it; the save test saves its classifier): ``(backbone, initial head weights, trained head
    weights, history, classifier, the backbone's weights before)``."""
    train, val, classes = data
    backbone = _backbone(seed=1)
    before = [w.copy() for w in backbone.get_weights()]
    init = transfer.build_head(len(classes), feature_dim=FEATURES, dropout=0.0).get_weights()
    weights, history, model = _train_from(init, backbone, train, val, cached=True)
    return backbone, init, weights, history, model, before


def test_cached_fast_path_trains_the_same_head_as_plain_fit(data, cached_step):
    """One full-batch step each: the cached path must produce the plain path's head."""
    train, val, _ = data
    backbone, init, wc, hc, _, _ = cached_step
    wp, hp, _ = _train_from(init, backbone, train, val, cached=False)
    for history in (hp, hc):
        assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    moved = np.abs(wc[0] - init[0]).max()
    assert moved > 1e-4  # the step did something...
    assert np.abs(wc[0] - wp[0]).max() < 0.01 * moved  # ...and the same thing
    assert abs(hp["val_loss"][0] - hc["val_loss"][0]) < 1e-4 * max(1.0, abs(hp["val_loss"][0]))


def test_fast_path_model_saves_and_reloads_safely(data, cached_step, tmp_path):
    _, val, _ = data
    backbone, init, _, _, model, before = cached_step  # trained on the cached path
    assert all(np.array_equal(a, b) for a, b in zip(before, backbone.get_weights()))
    assert not np.array_equal(init[-2], model.get_layer("head").get_weights()[-2])
    path = str(tmp_path / "clf.keras")
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reloaded = keras.saving.load_model(path, safe_mode=True)  # no custom objects
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    x = next(iter(val))[0].numpy()  # eager calls: predict would trace each model for one batch
    np.testing.assert_allclose(reloaded(x, training=False), model(x, training=False), rtol=1e-5, atol=1e-6)
    assert reloaded.input_shape == (None,) + SHAPE


def test_train_head_takes_images_once_or_given_features(data, cached_step):
    """The cached path runs the backbone once over every batch (images and labels read together);
    given a (features, labels) pair of 2-D features it fits on them as they are: the same head."""
    from keras_xception.model.features import feature_model

    train, _, _ = data
    backbone, init, from_images, *_ = cached_step  # the images, read once by the cached path
    model = transfer.build_classifier(2, backbone=backbone, input_shape=SHAPE)
    extractor = feature_model(model, "avg_pool")
    pairs = [(extractor.predict_on_batch(x), y.numpy()) for x, y in train]
    train_data = (np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]))
    assert train_data[0].shape == (len(train_data[1]), FEATURES)
    given, _, _ = _train_from(init, backbone, train_data)
    np.testing.assert_allclose(from_images[0], given[0], rtol=1e-5, atol=1e-6)
    assert np.abs(from_images[0] - init[0]).max() > 1e-4
    with pytest.raises(ValueError, match=r"\(images, labels\)"):
        transfer.train_head(model, [next(iter(train))[0]], verbose=0)


def test_train_head_arguments(data):
    train, val, _ = data
    model = transfer.build_classifier(2, backbone=_backbone(), input_shape=SHAPE)
    with pytest.raises(ValueError, match="epochs"):
        transfer.train_head(model, train, epochs=0)
    with pytest.raises(ValueError, match="learning_rate"):
        transfer.train_head(model, train, learning_rate=-1.0)
    with pytest.raises(ValueError, match="empty"):
        transfer.train_head(model, train.take(0), verbose=0)


def test_unfreeze_top_blocks_keeps_batchnorm_frozen():
    model = transfer.build_classifier(2, backbone=transfer.build_backbone(None, SHAPE), input_shape=SHAPE)
    names = transfer.unfreeze_top_blocks(model, 2)
    assert sorted(names) == [
        "block13_residual_conv",
        "block13_sepconv1",
        "block13_sepconv2",
        "block14_sepconv1",
        "block14_sepconv2",
    ]
    trainable = {lyr.name for lyr in kx.find_xception(model).layers if lyr.trainable and lyr.weights}
    assert trainable == set(names)
    for bad in (0, 14, "2", True):
        with pytest.raises(ValueError, match="blocks"):
            transfer.unfreeze_top_blocks(model, bad)


@pytest.mark.parametrize("middle", [1, 4, 10])
def test_unfreeze_top_blocks_of_a_variant_backbone(middle):
    """The top blocks are the backbone's own (block{5+m}, block{6+m} for m middle blocks), not block13/14."""
    backbone = small_xception(include_top=False, middle_flow_blocks=middle)
    backbone.trainable = False
    model = transfer.build_classifier(2, backbone=backbone, input_shape=SHAPE)
    head_weights = {id(w) for w in model.get_layer("head").trainable_weights}
    exit1, exit2 = f"block{5 + middle}", f"block{6 + middle}"  # entry 2-4, middle 5..4+m, exit flow
    expected = {
        f"{exit1}_residual_conv",
        f"{exit1}_sepconv1",
        f"{exit1}_sepconv2",
        f"{exit2}_sepconv1",
        f"{exit2}_sepconv2",
    }

    names = transfer.unfreeze_top_blocks(model, 2)

    assert sorted(names) == sorted(expected)
    trainable = {lyr.name for lyr in backbone.layers if lyr.trainable and lyr.weights}
    assert trainable == expected
    assert not any(lyr.trainable for lyr in backbone.layers if isinstance(lyr, keras.layers.BatchNormalization))
    # What fit will train: the head and exactly those layers' kernels.
    kernels = {id(w) for name in expected for w in backbone.get_layer(name).weights}
    assert {id(w) for w in model.trainable_weights} == head_weights | kernels
    with pytest.raises(ValueError, match="blocks"):
        transfer.unfreeze_top_blocks(model, 6 + middle)  # there are only 5 + m blocks


def test_fine_tune_changes_only_the_top_blocks(data):
    train, val, classes = data
    backbone = _backbone(seed=3)
    model = transfer.build_classifier(len(classes), backbone=backbone, input_shape=SHAPE, dropout=0.0)
    snapshot = {lyr.name: [w.copy() for w in lyr.get_weights()] for lyr in backbone.layers if lyr.weights}
    with warnings.catch_warnings(record=True) as caught:  # a dataset of unknown length is expected here
        warnings.simplefilter("always")
        hist = transfer.fine_tune(model, train, val, epochs=1, blocks=1, learning_rate=1e-3, verbose=0)
    assert not [w for w in caught if "ran out of data" in str(w.message)]
    assert "val_accuracy" in hist.history
    changed = {
        name
        for name, ws in snapshot.items()
        if not all(np.array_equal(a, b) for a, b in zip(ws, backbone.get_layer(name).get_weights()))
    }
    assert changed == {"block7_sepconv1", "block7_sepconv2"}  # the top block; BN statistics and gammas untouched
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)
    x = next(iter(val))[0].numpy()
    assert rel_diff(model(x, training=True), model(x, training=False)) < 1e-6
