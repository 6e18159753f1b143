"""The architecture is plain keras.layers: it runs, with the same weights and outputs, on JAX."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import jax_env, rel_diff, run

import keras_xception as kx

CHILD = """
import sys, numpy as np, keras, keras_xception as kx
assert keras.backend.backend() == "jax", keras.backend.backend()
x = np.load(sys.argv[1])
# The file's weights replace every initial value (a weight left out would change the outputs): zeros instead of
# Glorot draws spare JAX a compilation of the random initializer per kernel shape (10 s of the child's 13 s).
keras.initializers.VarianceScaling.__call__ = lambda self, shape, dtype=None: keras.ops.zeros(shape, dtype)
m = kx.Xception(weights=sys.argv[2], input_shape=x.shape[1:], classifier_activation=None)
np.save(sys.argv[3], np.asarray(m.predict(kx.preprocess_input(x), verbose=0)))
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_backend_gives_tensorflow_outputs(keras_reference, images, tmp_path):
    ref, weights_path, _ = keras_reference
    np.save(tmp_path / "x.npy", images)
    # XLA's quickest compilation (as conftest.channels_first): the outputs are checked, not XLA's optimizer.
    flags = " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "x.npy"), weights_path, str(tmp_path / "y.npy")],
        env=dict(jax_env(), XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + flags),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = run(ref, kx.preprocess_input(images))
    assert rel_diff(np.load(tmp_path / "y.npy"), expected) < 1e-4
