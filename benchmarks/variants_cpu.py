"""Interleaved CPU timing of Xception variants (ratios to the official model), batch 1, 299x299."""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np

import keras_xception as kx

VARIANTS = {
    "official": {},
    "intermediate_activation=relu": {"intermediate_activation": "relu"},
    "residual=False": {"residual": False},
    "output_stride=16": {"output_stride": 16},
    "output_stride=8": {"output_stride": 8},
}
models = {
    k: kx.Xception(weights=None, include_top=False, input_shape=(299, 299, 3), **kw) for k, kw in VARIANTS.items()
}
x = np.random.default_rng(0).uniform(-1, 1, (1, 299, 299, 3)).astype("float32")
for m in models.values():
    m.predict_on_batch(x)  # compile / warm up
times = {k: [] for k in models}
for _rep in range(7):
    for k, m in models.items():
        t = time.perf_counter()
        m.predict_on_batch(x)
        times[k].append(time.perf_counter() - t)
base = statistics.median(times["official"])
for k in models:
    med = statistics.median(times[k])
    print(f"{k:<30} median {med * 1e3:8.1f} ms  ratio {med / base:5.2f}  GMACs {kx.count_macs(models[k]) / 1e9:6.2f}")
