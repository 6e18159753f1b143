"""Output parity with the reference implementations at full size (299x299), same random weights.

Builds keras.applications.Xception and tf_keras.applications.Xception with random kernels and
random BatchNorm statistics, saves their weights (.weights.h5 and legacy .h5), loads each file into
keras_xception.Xception, and prints the max relative difference of the logits on random images,
plus the time each builder takes to build the model.

    python benchmarks/parity.py [--images 2]
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import numpy as np  # noqa: E402
from conftest import randomize, rel_diff  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2)
    args = ap.parse_args(argv)

    import keras
    import tf_keras

    import keras_xception as kx

    x = kx.preprocess_input(np.random.default_rng(0).uniform(0, 255, (args.images, 299, 299, 3)))
    with tempfile.TemporaryDirectory() as d:
        ref, t_ref = timed(lambda: keras.applications.Xception(weights=None, classifier_activation=None))
        ours, t_ours = timed(lambda: kx.Xception(weights=None, classifier_activation=None))
        print(f"build time: keras.applications {t_ref:.2f} s, keras_xception {t_ours:.2f} s")
        randomize(ref, seed=0)
        ref.save_weights(os.path.join(d, "k3.weights.h5"))
        tfk = tf_keras.applications.Xception(weights=None, classifier_activation=None)
        randomize(tfk, seed=1)
        tfk.save_weights(os.path.join(d, "legacy.h5"))
        for label, model, path in [
            ("keras.applications (.weights.h5)", ref, "k3.weights.h5"),
            ("tf_keras (legacy Keras 2 .h5)", tfk, "legacy.h5"),
        ]:
            mine = kx.Xception(weights=os.path.join(d, path), classifier_activation=None)
            diff = rel_diff(mine.predict(x, verbose=0), model.predict(x, verbose=0))
            print(f"{label:<34} max relative difference of logits: {diff:.2e}")


if __name__ == "__main__":
    main()
