"""CPU inference throughput: keras.applications.Xception vs keras_xception.Predictor, per precision.

Measures images/s at several batch sizes (default 1, 8, 32; 299x299) for

* ``keras.applications.Xception(...).predict_on_batch`` (the baseline), and
* ``Predictor(model, runtime=R, precision=P)`` for every installed runtime R
  and every precision P it runs (fp32 everywhere, bf16 on OpenVINO, int8 on
  OpenVINO via NNCF, on ONNX Runtime and on LiteRT, full-integer); int8 is calibrated on
  ``--calibration`` random images (speed does not depend on the values;
  agreement is measured on a trained model by benchmarks/quantization.py),

all with the same random weights, in one process, the runs interleaved
(every repeat times every configuration once, in a shuffled order) so that a
load change on a shared machine hits all of them alike. Reported: the median
images/s over the repeats and its ratio to keras.applications; the best
sample and its ratio (on a machine shared with other work the best sample is
the closest to the uncontended speed, as with ``timeit``'s minimum); and the
throughput as a fraction of the machine's float32 limit: the best measured
sgemm rate (numpy, TensorFlow and ONNX Runtime matmul of 2048x2048, timed in
every repeat, best sample kept, since other load can only slow it) divided by
Xception's 16.7 GFLOP (8.36 GMACs) per 299x299 image (counted from the layers,
so other ``--image-size`` values get their own count).

Peak memory: each configuration is also run (batch 8, twice) in a fresh
subprocess, whose peak resident set size (VmHWM of ``/proc/self/status``) is
reported; it includes Python, TensorFlow and the
Keras model that every configuration builds first. Use ``--no-memory`` to skip.

Usage::

    python benchmarks/inference.py                  # a few minutes on 2 cores
    python benchmarks/inference.py --repeats 3 --batch-sizes 1 8
    python benchmarks/inference.py --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from keras_xception.deploy.runtimes import PRECISIONS  # noqa: E402  (no TensorFlow import)

ARCH = "xception"  # --arch: the Predictors' architecture (the baseline stays keras.applications.Xception)


def gflop_per_image(model):
    """2 x the multiply-accumulates of the convolutions and the classifier of one image.

    Xception at 299x299: 8.36 GMACs, 16.7 GFLOP.
    """
    macs = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("Conv2D", "SeparableConv2D"):
            h, w, c_out = layer.output.shape[1:]
            if kind == "Conv2D":
                kh, kw, c_in, _ = layer.kernel.shape
                macs += h * w * c_out * kh * kw * c_in
            else:
                kh, kw, c_in, _ = layer.depthwise_kernel.shape
                macs += h * w * c_in * (kh * kw + c_out)
        elif kind == "Dense":
            macs += layer.kernel.shape[0] * layer.kernel.shape[1]
    return 2 * macs / 1e9


def _sgemm_gflops(n=2048, tries=5):
    """Best-of-``tries`` float32 matmul rate (GFLOP/s) of numpy, TensorFlow and ONNX Runtime."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    runners = {"numpy": lambda: a @ b}
    ta, tb = tf.constant(a), tf.constant(b)
    runners["tensorflow"] = lambda: tf.matmul(ta, tb).numpy()  # one op: eager is enough
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["c"])],
            "sgemm",
            [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "ab"],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        proto.ir_version = min(proto.ir_version, 9)
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        runners["onnxruntime"] = lambda: sess.run(None, {"a": a, "b": b})
        del onnx
    except ImportError:
        pass
    out = {}
    for name, fn in runners.items():
        fn()
        best = float("inf")
        for _ in range(tries):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        out[name] = 2 * n**3 / best / 1e9
    return out


def _reference(size, seed=0):
    """keras.applications.Xception with random (seeded) weights."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.applications.Xception(weights=None, input_shape=(size, size, 3))


def _build(runtime, reference, precision="fp32", calibration=20, **predictor_kwargs):
    """The predict callable of one configuration (and its build seconds); the baseline is runtime=None."""
    if runtime is None:
        return reference.predict_on_batch, 0.0
    size = reference.input_shape[1]
    import warnings

    from keras_xception import build
    from keras_xception.deploy.predictor import Predictor

    model = build(ARCH, weights=None, input_shape=(size, size, 3))
    if ARCH == "xception":
        model.set_weights(reference.get_weights())
    if precision == "int8":
        rng = np.random.default_rng(1)
        predictor_kwargs["calibration"] = rng.uniform(-1, 1, (calibration, size, size, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the small-calibration warning: speed only here
        predictor = Predictor(model, runtime=runtime, precision=precision, **predictor_kwargs)
    return predictor.predict, predictor.build_seconds


def _configurations(runtimes, precisions):
    """``name -> (runtime, precision)`` for every installed runtime and every precision it runs."""
    from keras_xception.deploy.runtimes import SUPPORTED

    return {(rt if p == "fp32" else f"{rt} {p}"): (rt, p) for p in precisions for rt in runtimes if p in SUPPORTED[rt]}


def _images_per_sample(batch):
    return max(batch, 8)  # time at least 8 images per sample (8 calls at batch 1)


def _time(fn, x, n_images):
    calls = max(1, n_images // len(x))
    t = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return calls * len(x) / (time.perf_counter() - t)


def _memory_child(name, size, runtimes):
    """Subprocess entry: build one configuration, run batch 8 twice, print peak RSS (MiB).

    Peak RSS is VmHWM of /proc/self/status (Linux; reset by exec, unlike
    ru_maxrss, which a child inherits from the parent), else ru_maxrss.
    """
    runtime, precision = (None, "fp32") if name == "keras.applications" else _configurations(runtimes, PRECISIONS)[name]
    fn, _ = _build(runtime, _reference(size), precision)
    x = np.zeros((8, size, size, 3), np.float32)
    fn(x)
    fn(x)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        pass
    print(json.dumps({"peak_rss_mib": peak}))


def _peak_memory(name, size, runtimes):
    cmd = [sys.executable, os.path.abspath(__file__), "--_memory-child", name, "--image-size", str(size)]
    cmd += ["--runtimes", *runtimes, "--arch", ARCH]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in reversed(res.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)["peak_rss_mib"]
    print(f"  memory run for {name} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed samples per configuration and batch size (default 5)"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--image-size", type=int, default=299)
    parser.add_argument("--runtimes", nargs="+", default=None, help="Predictor runtimes (default: every installed one)")
    parser.add_argument(
        "--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS, help="default: fp32 bf16 int8"
    )
    parser.add_argument("--calibration", type=int, default=20, help="random images to calibrate int8 on (default 20)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument(
        "--single-call",
        action="store_true",
        help="also time each configuration with the whole batch in one call on all threads "
        "(batch_size=1024, workers=1) and in single-image calls (batch_size=1), to show what the "
        "default chunking (deploy.runtimes.TABLE batch_size) brings",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--arch", default="xception", help="the Predictors' architecture (keras_xception.build); the limit column "
        "stays Xception's GFLOP"
    )  # fmt: skip
    parser.add_argument("--_memory-child", dest="memory_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global ARCH
    ARCH = args.arch
    if args.memory_child:
        return _memory_child(args.memory_child, args.image_size, args.runtimes)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; received {args.repeats}")

    from keras_xception.deploy.runtimes import available_runtimes, runtime_for

    runtimes = args.runtimes or available_runtimes()
    size = args.image_size
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    print("building the models and exporting the runtimes ...", flush=True)
    configs, build_seconds = {}, {}
    reference = _reference(size)
    configs["keras.applications"], _ = _build(None, reference)
    gflop = gflop_per_image(reference)
    runtimes = [runtime_for(rt) for rt in runtimes]
    for name, (rt, precision) in _configurations(runtimes, args.precisions).items():
        configs[name], build_seconds[name] = _build(rt, reference, precision, args.calibration)
        print(f"  {name}: ready in {build_seconds[name]:.1f} s", flush=True)
        if args.single_call:
            configs[f"{name} (1 call)"], _ = _build(
                rt, reference, precision, args.calibration, batch_size=1024, workers=1
            )
            configs[f"{name} (1/call)"], _ = _build(rt, reference, precision, args.calibration, batch_size=1)

    rng = np.random.default_rng(0)
    x1 = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    ref = reference.predict_on_batch(x1)
    parity = {}
    for name, fn in configs.items():
        out = fn(x1)
        parity[name] = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))

    samples = {(name, b): [] for name in configs for b in args.batch_sizes}
    sgemm_samples = []
    inputs = {b: rng.uniform(-1, 1, (b, size, size, 3)).astype(np.float32) for b in args.batch_sizes}
    for b in args.batch_sizes:  # warm-up: first calls at a new shape are slow
        for fn in configs.values():
            fn(inputs[b])
    names = list(configs)
    for r in range(args.repeats):
        for b in args.batch_sizes:
            random.Random(r * 1000 + b).shuffle(names)
            for name in names:
                samples[(name, b)].append(_time(configs[name], inputs[b], _images_per_sample(b)))
        sgemm_samples.append(_sgemm_gflops(tries=2))
        print(f"  repeat {r + 1}/{args.repeats} done (load average {os.getloadavg()[0]:.2f})", flush=True)

    # the machine's limit: the best rate seen in any repeat (other load only slows it down)
    sgemm = {k: max(sample[k] for sample in sgemm_samples) for k in sgemm_samples[0]}
    limit = max(sgemm.values()) / gflop
    memory = {} if args.no_memory else {n: _peak_memory(n, size, runtimes) for n in configs if "(" not in n}

    print()
    print(
        f"sgemm GFLOP/s (2048x2048 float32, best of {2 * args.repeats}, interleaved): "
        + ", ".join(f"{k} {v:.0f}" for k, v in sgemm.items())
        + f"  ->  fp32 limit {limit:.1f} img/s at {gflop:.1f} GFLOP/image"
    )
    header = f"{'configuration':<26}" + "".join(
        f"{'batch ' + str(b) + ' median':>22}{'best':>18}" for b in args.batch_sizes
    )
    header += f"{'peak RSS MiB':>14}{'max rel diff':>14}{'build s':>9}"
    print(header)
    results = {
        "image_size": size,
        "repeats": args.repeats,
        "sgemm_gflops": sgemm,
        "fp32_limit_img_s": limit,
        "configs": {},
    }
    for name in configs:
        row = f"{name:<26}"
        entry = {
            "parity_rel_diff": parity[name],
            "peak_rss_mib": memory.get(name),
            "build_seconds": build_seconds.get(name),
            "batches": {},
        }
        for b in args.batch_sizes:
            med = float(np.median(samples[(name, b)]))
            base = float(np.median(samples[("keras.applications", b)]))
            best = float(np.max(samples[(name, b)]))
            best_base = float(np.max(samples[("keras.applications", b)]))
            row += f"{med:>8.2f} img/s {med / base:>4.2f}x".rjust(22)
            row += f"{best:>7.2f} {best / best_base:>4.2f}x".rjust(18)
            entry["batches"][b] = {
                "img_s": med,
                "ratio": med / base,
                "of_limit": med / limit,
                "best_img_s": best,
                "best_ratio": best / best_base,
                "best_of_limit": best / limit,
                "samples": samples[(name, b)],
            }
        mem = memory.get(name)
        row += f"{mem:>14.0f}" if mem else f"{'-':>14}"
        row += f"{parity[name]:>14.1e}"
        row += f"{build_seconds[name]:>9.1f}" if name in build_seconds else f"{'-':>9}"
        print(row)
        results["configs"][name] = entry
    print(
        f"(median and best of {args.repeats} interleaved samples, img/s and ratio vs keras.applications "
        f"predict_on_batch; fp32 limit {limit:.1f} img/s; peak RSS of a fresh process running batch 8; "
        "max rel diff vs keras.applications on 2 random images (random weights: for bf16/int8 it shows that "
        "the precision is really reduced, not its accuracy); build s: export (+ quantization) time)"
    )
    for name in configs:
        print(
            f"  {name:<24} of the fp32 limit at batch "
            + ", ".join(
                f"{b}: {results['configs'][name]['batches'][b]['of_limit']:.0%} median / "
                f"{results['configs'][name]['batches'][b]['best_of_limit']:.0%} best"
                for b in args.batch_sizes
            )
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
