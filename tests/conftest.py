"""Shared test harness: the small model, reference models with random weights and the files they
write, generated image trees and ImageNet validation files, and the loopback weights server.

Plumbing tests (does an argument, a file format, a pipeline work?) use :func:`small_xception`;
tests that prove something about the full network (parameter counts, parity with
keras.applications, the official weight layout, the 1000-class ImageNet classifier) build
the full-width model, at 71x71 unless they need more. Tests that build the full model at
299x299 or start processes are marked ``slow``.
"""

import functools
import io
import os
import subprocess
import sys
import tarfile
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from synthetic import write_synthetic_tree

SMALL = 71  # the smallest input Xception accepts: keeps the suite fast

#: The test files that take longest (about 20-85 s each on 2 cores), in the order the two test processes
#: start them (setup.cfg: ``--dist loadfile``, each file in one process, its fixtures built once): the
#: longest first, so that none starts near the end while the other process has finished.
LONGEST_FIRST = [
    "test_docs.py",
    "test_cli.py",
    "test_deploy_precision.py",
    "test_tasks_training.py",
    "test_tasks_scale.py",
    "test_pretrained_loading.py",
    "test_tasks_evaluation.py",
    "test_ecosystem.py",
    "test_cli_train.py",
    "test_deploy.py",
    "test_aligned.py",
    "test_pretrained_formats.py",
    "test_model_graph.py",
    "test_examples.py",
]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order kept


#: The small variant for plumbing tests: a quarter of the channels (512 at the end), one middle-flow
#: block (the exit flow is block6 and block7; the last feature map is block7_sepconv2_act).
SMALL_OPTIONS = dict(width_multiplier=0.25, middle_flow_blocks=1)


def small_xception(**kwargs):
    """``keras_xception.Xception(weights=None, input_shape=(71, 71, 3), **SMALL_OPTIONS, **kwargs)``.

    ``kwargs`` may override any of those (``input_shape=None`` for any input size,
    ``middle_flow_blocks=4``, ...). Wrap in :func:`randomize` where BatchNormalization
    statistics matter.
    """
    from keras_xception import Xception

    return Xception(**{"weights": None, "input_shape": (SMALL, SMALL, 3), **SMALL_OPTIONS, **kwargs})


def notop71(**kwargs):
    """The full-width Xception without its top at 71x71 with random weights (``kwargs`` override)."""
    from keras_xception import Xception

    return Xception(**{"include_top": False, "input_shape": (SMALL, SMALL, 3), "weights": None, **kwargs})


def randomize(model, seed=0):
    """Give every BatchNormalization random statistics (kernels keep their random init).

    With Keras's default BN state (mean 0, variance 1, gamma 1, beta 0) a swapped
    pair of BN layers would go unnoticed; random statistics make every layer count.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                    rng.normal(0, 0.2, beta.shape).astype("float32"),
                    rng.normal(0, 0.2, mean.shape).astype("float32"),
                    rng.uniform(0.5, 1.5, var.shape).astype("float32"),
                ]
            )
        elif type(layer).__name__ == "Dense":
            k, b = layer.get_weights()
            layer.set_weights([k, rng.normal(0, 0.1, b.shape).astype("float32")])
    return model


def run(model, x):
    """The model's outputs in inference mode as numpy, run eagerly (``predict`` first traces a graph of each model,
    at about the cost of building it)."""
    return np.asarray(model(x, training=False))


def built_once(build):
    """``build`` memoised by its arguments: for module fixtures whose tests only read the models they get."""
    models = {}

    def get(*args, **kw):
        key = repr((args, sorted(kw.items())))
        if key not in models:
            models[key] = build(*args, **kw)
        return models[key]

    return get


def rel_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def jax_env():
    """The environment of a child process on Keras's JAX backend (CPU), with this checkout importable."""
    tests = os.path.join(REPO, "tests")
    return dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=REPO + os.pathsep + tests, JAX_PLATFORMS="cpu")


@functools.cache
def tensorflow_runs_nchw():
    """Whether TensorFlow runs an NCHW convolution here (asked once, on a 1x1 image).

    TensorFlow's own CPU kernels only take NHWC; oneDNN (on by default only on some CPUs, e.g. with
    AVX-512) and GPUs also take NCHW.
    """
    import tensorflow as tf

    try:
        tf.nn.conv2d(tf.zeros((1, 1, 1, 1)), tf.zeros((1, 1, 1, 1)), 1, "VALID", data_format="NCHW")
    except tf.errors.UnimplementedError:
        return False
    return True


#: The channels_first checks: builder keyword arguments (on top of a no-top SMALL_OPTIONS model at 71 px)
#: and the seed of random BatchNormalization statistics (None: Keras's initial ones).
CHANNELS_FIRST = {
    "small": ({}, None),
    "variant": (dict(output_stride=8, intermediate_activation="elu", residual=False), 6),
}


def channels_first_outputs(directory):
    """Build every CHANNELS_FIRST model as channels_first with the weights in ``directory/<case>.npz``,
    run it on ``directory/x.npy`` (NCHW) and save ``directory/<case>.npy``, on the current Keras backend."""
    import keras

    x = np.load(os.path.join(directory, "x.npy"))
    keras.config.set_image_data_format("channels_first")
    try:
        for case, (kwargs, _) in CHANNELS_FIRST.items():
            model = small_xception(include_top=False, input_shape=x.shape[1:], **kwargs)
            with np.load(os.path.join(directory, f"{case}.npz")) as w:
                model.set_weights([w[f"arr_{i}"] for i in range(len(w.files))])
            np.save(os.path.join(directory, f"{case}.npy"), model.predict(x, verbose=0))
    finally:
        keras.config.set_image_data_format("channels_last")


@pytest.fixture(scope="session")
def channels_first(images, tmp_path_factory):
    """``{case: (channels_first output transposed to NHWC, channels_last output)}`` for CHANNELS_FIRST.

    The channels_last models run on TensorFlow. The channels_first ones share their weights and run
    on TensorFlow where it runs NCHW convolutions (:func:`tensorflow_runs_nchw`), else all in one
    child process on the JAX backend, whose CPU convolutions take either layout.
    """
    from keras_xception import preprocess_input

    d = tmp_path_factory.mktemp("channels_first")
    x = preprocess_input(images)
    np.save(d / "x.npy", np.transpose(x, (0, 3, 1, 2)))
    last = {}
    for case, (kwargs, seed) in CHANNELS_FIRST.items():
        model = small_xception(include_top=False, **kwargs)
        if seed is not None:
            randomize(model, seed)
        np.savez(d / f"{case}.npz", *model.get_weights())
        last[case] = run(model, x)
    if tensorflow_runs_nchw():
        channels_first_outputs(str(d))
    else:
        pytest.importorskip("jax", reason="TensorFlow cannot run NCHW here and jax is not installed")
        # Zeros instead of Glorot draws: the file's weights replace every initial value, and JAX would compile the
        # random initializer once per kernel shape. And XLA's quickest compilation: 8 s instead of 33 s here.
        code = (
            "import keras, conftest; assert keras.backend.backend() == 'jax'; "
            "keras.initializers.VarianceScaling.__call__ = lambda self, shape, dtype=None: keras.ops.zeros(shape, dtype); "
            f"conftest.channels_first_outputs({str(d)!r})"
        )
        flags = " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
        env = dict(jax_env(), XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + flags)
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return {case: (np.transpose(np.load(d / f"{case}.npy"), (0, 2, 3, 1)), last[case]) for case in last}


@pytest.fixture(scope="session")
def images():
    """Two random 71x71 RGB images in [0, 255]."""
    return np.random.default_rng(1).uniform(0, 255, (2, SMALL, SMALL, 3)).astype("float32")


@pytest.fixture(scope="session")
def keras_reference(tmp_path_factory):
    """keras.applications.Xception (top, logits) with random weights, and files it wrote."""
    import keras

    d = tmp_path_factory.mktemp("keras_ref")
    model = keras.applications.Xception(weights=None, input_shape=(SMALL, SMALL, 3), classifier_activation=None)
    randomize(model, seed=2)
    path = str(d / "ref.weights.h5")
    model.save_weights(path)
    keras_path = str(d / "ref.keras")
    model.save(keras_path)
    return model, path, keras_path


@pytest.fixture(scope="session")
def tf_keras_reference(tmp_path_factory):
    """tf_keras.applications.Xception (no top) with random weights, saved as legacy HDF5."""
    tf_keras = pytest.importorskip("tf_keras")
    d = tmp_path_factory.mktemp("tf_keras_ref")
    model = tf_keras.applications.Xception(
        weights=None, include_top=True, input_shape=(SMALL, SMALL, 3), classifier_activation=None
    )
    randomize(model, seed=3)
    path = str(d / "ref_legacy.h5")
    model.save_weights(path)  # the Keras 2 HDF5 layout of the official files
    return model, path


@pytest.fixture(scope="session")
def notop_reference(tmp_path_factory):
    """A no-top keras_xception.Xception with random weights (random BN statistics) and its file."""
    from keras_xception import Xception

    model = randomize(Xception(include_top=False, weights=None), seed=4)
    path = str(tmp_path_factory.mktemp("notop") / "notop.weights.h5")
    model.save_weights(path)
    return model, path


@pytest.fixture(scope="session")
def image_tree(tmp_path_factory):
    """A class-per-folder tree: 2 classes x 6 generated images of 71-96 px."""

    root = tmp_path_factory.mktemp("tree")
    write_synthetic_tree(root, classes=2, per_class=6, sizes=(71, 96))
    return str(root)


def load_example(name):
    """Import examples/<name>.py as a module."""
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def feature_tree(tmp_path_factory):
    """2 classes x 3 images, one more image two folders down, and a README: 7 images to extract."""

    root = tmp_path_factory.mktemp("ftree")
    write_synthetic_tree(root, classes=2, per_class=3, sizes=(71, 96))
    nested = root / "class_1" / "deeper"
    nested.mkdir()
    write_synthetic_tree(nested, classes=1, per_class=1, seed=5)  # class_0/img_000.png, recursive
    (root / "README.txt").write_text("not an image and not an image extension: ignored")
    return str(root)


# ---------------------------------------------------------------------------- weights: server, cache, registry


@pytest.fixture
def server():
    """A loopback HTTP server (tests/weights_server.py), stopped afterwards."""
    from weights_server import FileServer

    s = FileServer()
    yield s
    s.stop()


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty $KERAS_HOME (so an empty weights cache) and no mirror, for one test."""
    from keras_xception import pretrained as w

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(w.MIRROR_ENV, raising=False)
    yield tmp_path / "keras_home"


@pytest.fixture
def registered():
    """register() for one test: the sets it registers are unregistered afterwards (last first)."""
    from keras_xception import pretrained as w

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
    from keras_xception import pretrained as w

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


# ---------------------------------------------------------------------------- ImageNet validation files
# A dozen small JPEGs named like the first validation images (so the official ground truth labels
# them), the same images in a tar that goes through the real tfds ``imagenet2012`` builder, and as
# classic TFRecords; and a folder with bad files.

N = 12  # good images


def val_name(k):
    return f"ILSVRC2012_val_{k:08d}.JPEG"


def photo(rng, h, w):
    """A smooth random RGB image (compresses like a photo, unlike pure noise)."""
    from PIL import Image

    small = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BILINEAR)


def jpeg_bytes(img, **kw):
    b = io.BytesIO()
    img.save(b, "JPEG", **kw)
    return b.getvalue()


def write_tfrecords(path, examples, num_shards=2):
    """Classic-layout TFRecords from ``[(file_name, encoded_bytes, stored_label)]``."""
    import tensorflow as tf

    def feature(v):
        if isinstance(v, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    paths = [f"{path}-{s:05d}-of-{num_shards:05d}" for s in range(num_shards)]
    per = -(-len(examples) // num_shards)
    for s, p in enumerate(paths):
        with tf.io.TFRecordWriter(p) as w:
            for name, contents, label in examples[s * per : (s + 1) * per]:
                ex = tf.train.Example(
                    features=tf.train.Features(
                        feature={
                            "image/encoded": feature(contents),
                            "image/class/label": feature(int(label)),
                            "image/filename": feature(name.encode()),
                            "image/format": feature(b"JPEG"),
                        }
                    )
                )
                w.write(ex.SerializeToString())
    return f"{path}-*"


@pytest.fixture(scope="session")
def val(tmp_path_factory):
    """The first N validation images as a folder, a manual-dir tar, and 1-based TFRecords."""
    from keras_xception.data import imagenet as data

    root = tmp_path_factory.mktemp("imagenet")
    d = root / "val"
    d.mkdir()
    rng = np.random.default_rng(0)
    files = []
    for k in range(1, N + 1):
        h, w = (int(v) for v in rng.integers(60, 130, 2))
        path = d / val_name(k)
        path.write_bytes(jpeg_bytes(photo(rng, h, w), quality=90))
        files.append(str(path))
    manual = root / "manual"
    manual.mkdir()
    with tarfile.open(manual / data.VAL_TAR, "w") as tar:
        for f in files:
            tar.add(f, arcname=os.path.basename(f))
    # A train tar that is not a tar: preparing must not look at it (validation only).
    (manual / "ILSVRC2012_img_train.tar").write_bytes(b"not a tar")
    labels = list(data.validation_ground_truth()[:N])
    examples = [(os.path.basename(f), open(f, "rb").read(), lab + 1) for f, lab in zip(files, labels)]
    tfrec = write_tfrecords(str(root / "validation"), examples)
    return types.SimpleNamespace(
        root=root, dir=str(d), manual=str(manual), files=files, labels=labels, tfrecords=tfrec, examples=examples
    )


@pytest.fixture(scope="session")
def bad_dir(val, tmp_path_factory):
    """The N good images plus: CMYK JPEG, PNG named .JPEG, grayscale JPEG, truncated JPEG, garbage."""
    import shutil

    d = tmp_path_factory.mktemp("bad") / "val"
    shutil.copytree(val.dir, d)
    rng = np.random.default_rng(5)
    img = photo(rng, 90, 110)
    good = jpeg_bytes(img)
    (d / val_name(N + 1)).write_bytes(jpeg_bytes(img.convert("CMYK")))
    img.save(d / val_name(N + 2), "PNG")
    (d / val_name(N + 3)).write_bytes(jpeg_bytes(img.convert("L")))
    (d / val_name(N + 4)).write_bytes(good[: len(good) // 2])
    (d / val_name(N + 5)).write_bytes(b"this is not an image\n" * 20)
    return types.SimpleNamespace(dir=str(d), img=img, decodable=N + 3, skipped=[val_name(N + 4), val_name(N + 5)])


@pytest.fixture(scope="session")
def tfds_records(val):
    """The validation tar prepared by the real tfds ``imagenet2012`` builder."""
    from keras_xception.data import imagenet as data

    return data.tfds_records(val.root / "tfds", val.manual)


@pytest.fixture(scope="module")
def tiny(val):
    """The tiny 1000-class convnet of eval_worker.py, favouring the classes of ``val``.

    Module scope, as when it lived in one test file: building it seeds Keras's random
    generators, so each test file that uses it starts from the same state.
    """
    from eval_worker import tiny_model

    return tiny_model(favoured=val.labels)


def numpy_hits(model, directory, transform):
    """Top-1/top-5 hit counts computed directly with NumPy over the model's outputs."""
    from keras_xception.data import imagenet as data
    from keras_xception.data.dataset import image_dataset

    assert transform.preprocessing == "tf"
    pairs = list(image_dataset(data.folder_records(directory), transform, batch_size=64).as_numpy_iterator())
    x = np.concatenate([p[0] for p in pairs])
    y = np.concatenate([p[1] for p in pairs])
    scores = model.predict(x / 127.5 - 1.0, verbose=0)
    order = np.argsort(-scores, axis=1)
    top1 = int(np.sum(order[:, 0] == y))
    top5 = int(np.sum(np.any(order[:, :5] == y[:, None], axis=1)))
    return len(y), top1, top5


def counts(report):
    return report["count"], report["top1_correct"], report["top5_correct"]


# ---------------------------------------------------------------------------- costs written out by hand


def sep(hw, cin, cout, k=3):
    """MACs of a k x k depthwise separable convolution on an hw x hw output."""
    return hw * hw * (k * k * cin + cin * cout)


def official_macs_by_hand(size=299, output_stride=32, top=True):
    """Xception MACs per image: convolutions and the classifier, each written out (the paper's Fig. 5)."""
    stem1 = (size - 3) // 2 + 1  # 149: valid 3x3/2
    stem2 = stem1 - 2  # 147: valid 3x3
    r = [stem2]
    for _ in range(4):  # 'same' 3x3/2 max poolings (stride 1 where atrous)
        r.append(-(-r[-1] // 2))
    s4, s8, s16, s32 = r[1:]
    if output_stride <= 16:
        s32 = s16
    if output_stride == 8:
        s16 = s32 = s8
    macs = stem1**2 * 9 * 3 * 32 + stem2**2 * 9 * 32 * 64
    macs += sep(stem2, 64, 128) + sep(stem2, 128, 128) + s4**2 * 64 * 128  # block 2 + projection
    macs += sep(s4, 128, 256) + sep(s4, 256, 256) + s8**2 * 128 * 256  # block 3
    macs += sep(s8, 256, 728) + sep(s8, 728, 728) + s16**2 * 256 * 728  # block 4
    macs += 8 * 3 * sep(s16, 728, 728)  # middle flow
    macs += sep(s16, 728, 728) + sep(s16, 728, 1024) + s32**2 * 728 * 1024  # block 13
    macs += sep(s32, 1024, 1536) + sep(s32, 1536, 2048)  # block 14
    return macs + (2048 * 1000 if top else 0)


@pytest.fixture(scope="session")
def notop(notop_reference):
    """The no-top reference as ``(model, weights path)`` (the name the task tests use)."""
    return notop_reference


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """A small Xception (SMALL_OPTIONS, 71 px) trained on scikit-learn's bundled handwritten digits.

    Reduced-precision agreement means nothing on random weights (their outputs
    are near-uniform), so this is a real classifier: trained for 2 epochs on
    1,000 digits (8x8 greyscale, scaled to 71x71 RGB), it must reach 90%
    accuracy on the 397 held-out ones in inference mode, or the fixture fails
    (it reaches 0.957 on a decaying learning rate; 3 epochs at a constant 1e-3
    reached 0.962 with 50% more steps, 2 of them 0.927, 1 epoch here 0.14: its
    BatchNormalization statistics unsettled).
    Also written as PNG class folders (81 px: the 0.875 central crop of the
    model's transform leaves the 71 px the model was trained on).
    """
    import keras
    import tensorflow as tf
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    pixels = np.repeat((data.images * (255.0 / 16.0))[..., None], 3, axis=-1).astype(np.float32)
    x = tf.image.resize(pixels, (SMALL, SMALL)).numpy() / 127.5 - 1.0
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1000], order[1400:]
    keras.utils.set_random_seed(0)
    model = small_xception(input_shape=(SMALL, SMALL, 3), classes=10)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9  # moving statistics that settle within 2 short epochs
    rate = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=2 * 32, alpha=0.05)  # 2 epochs of 32 steps
    model.compile(keras.optimizers.Adam(rate), "sparse_categorical_crossentropy")  # (accuracy: measured below)
    # Adam's variables made now: created inside the first trace of the train step, they make TensorFlow trace it twice
    model.optimizer.build(model.trainable_variables)
    model.fit(x[train], data.target[train], epochs=2, batch_size=32, verbose=0)
    outputs = model.predict(x[test], verbose=0)  # the fp32 reference of the tests
    accuracy = float(np.mean(outputs.argmax(1) == data.target[test]))
    assert accuracy >= 0.9, f"the digits model reached only {accuracy:.3f}"
    root = tmp_path_factory.mktemp("digits")
    for split, indices in (("train", train[:60]), ("test", test[:40])):
        big = tf.image.resize(pixels[indices], (81, 81)).numpy().round().clip(0, 255).astype(np.uint8)
        for i, image in zip(indices, big):
            folder = root / split / f"digit_{data.target[i]}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
    return dict(
        model=model,
        x_train=x[train],
        x_test=x[test],
        y_test=data.target[test],
        outputs=outputs,
        train_dir=str(root / "train"),
        test_dir=str(root / "test"),
        accuracy=accuracy,
    )


def fingerprint(model):
    """The architecture and weights of a Keras model, hashed: equal for a copy loaded from its .keras file."""
    import hashlib

    digest = hashlib.sha256(model.to_json().encode())
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


_EXPORTS = {}  # (fingerprint, format, file name) -> the exported files


@pytest.fixture
def export_each_model_once(monkeypatch):
    """Keras's export of a model to OpenVINO or ONNX (2-6 s each: tracing and conversion) done once per model
    (architecture and weights) and format in a test process: every later Predictor of the same model gets the
    files of the first export (the bytes a new export would write) and does all the rest itself (reading,
    quantizing, compiling, running, saving). For test files that build many Predictors of one model."""
    from keras_xception.deploy import backends

    real = backends._exported

    def exported(model, keras_format, name):
        key = (fingerprint(model), keras_format, name)
        if key not in _EXPORTS:
            _EXPORTS[key] = real(model, keras_format, name)
        return dict(_EXPORTS[key])

    monkeypatch.setattr(backends, "_exported", exported)


def openvino_fingerprint(model, images):
    """An OpenVINO model's operations, shapes and constants, and the calibration images, hashed."""
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    for op in model.get_ordered_ops():
        shapes = [str(op.get_output_partial_shape(i)) for i in range(op.get_output_size())]
        digest.update(f"{op.get_type_name()} {op.get_friendly_name()} {shapes}".encode())
        if op.get_type_name() == "Constant":
            digest.update(np.ascontiguousarray(op.get_data()).tobytes())
    return digest.hexdigest()


_QUANTIZED = {}  # openvino_fingerprint -> NNCF's int8 model


@pytest.fixture
def quantize_each_model_once(monkeypatch):
    """NNCF's int8 quantization of an OpenVINO model (3-5 s: graph analysis, statistics, bias correction) done once
    per model and calibration images in a test process: a later Predictor of the same model and images gets a copy
    of the first result (what NNCF would compute again) and does all the rest itself (compiling, running, saving)."""
    from keras_xception.deploy import backends

    real = backends._OpenVINOBackend._quantize

    def quantize(self, images):
        key = openvino_fingerprint(self._model, images)
        if key not in _QUANTIZED:
            real(self, images)
            _QUANTIZED[key] = self._model
        self._model = _QUANTIZED[key].clone()

    monkeypatch.setattr(backends._OpenVINOBackend, "_quantize", quantize)


# ---------------------------------------------------------------------------- one trained classifier per run


def counting_augmentation(seen, real=True):
    """``training.augmentation`` plus a layer counting the images it sees when called in training mode."""
    import keras
    import tensorflow as tf

    from keras_xception.tasks import training

    class Counting(keras.layers.Layer):
        def call(self, x, training=None):
            if not training:  # (Keras also calls it symbolically, to infer shapes)
                return x
            n = tf.py_function(lambda k: seen.append(int(k)) or 0, [tf.shape(x)[0]], tf.int32)
            return x + tf.cast(tf.reshape(n, []), x.dtype)  # 0: the count is the only effect

    original = training.augmentation

    def augmentation(seed=None):
        aug = original(seed) if real else keras.Sequential(name="augmentation")
        aug.add(Counting())
        return aug

    return augmentation


@pytest.fixture(scope="session")
def trained_classifier(tmp_path_factory):
    """One small classifier trained by ``train()`` with every output, shared by the whole run.

    3 classes x 5 generated images (71-90 px); the small backbone (random BN statistics) at 71 px,
    the head with early stopping (patience 3), one fine-tuning epoch with augmentation (a counting
    layer added: ``seen`` holds the batch sizes it saw), saved with its report and PNGs. Progress
    at the default verbosity, captured off a terminal: ``stdout``. Returns a namespace: ``classifier``,
    ``report``, ``path`` (the .keras file), ``dir``, ``tree``, ``seen``, ``stdout``.
    """
    import contextlib

    from keras_xception.tasks import training

    tree = tmp_path_factory.mktemp("trained_tree")
    write_synthetic_tree(tree, classes=3, per_class=5, sizes=(71, 90))
    out = tmp_path_factory.mktemp("trained")
    seen, stdout = [], io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setattr(training, "augmentation", counting_augmentation(seen))
        classifier, report = training.train(
            str(tree),
            backbone=lambda: randomize(small_xception(include_top=False), seed=0),
            weights=None,
            image_size=SMALL,
            batch_size=4,
            fine_tune_epochs=1,
            augment=True,
            patience=3,
            out=str(out / "model.keras"),
            report_path=str(out / "report.json"),
        )
    return types.SimpleNamespace(
        classifier=classifier,
        report=report,
        path=str(out / "model.keras"),
        dir=out,
        tree=str(tree),
        seen=seen,
        stdout=stdout.getvalue(),
    )
