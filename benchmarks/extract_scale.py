"""Extraction at scale: peak memory against the number of images, and Ray's overhead on one machine.
Not a test: prints numbers.

    python benchmarks/extract_scale.py [--sizes 1000 10000] [--ray-images 1000] [--side 64]

Writes ``max(--sizes)`` small random JPEGs (``--side`` px) and a tiny Xception (a quarter of the
channels, one middle-flow block, 71x71 input, 512-d pooled features, random weights) so that it runs
in minutes on a laptop: the figures are about the pipeline and the output, not the model's speed.

* Peak memory (the child process's maximum RSS, ``ru_maxrss``) of ``extract_features`` over the
  first N images, each N in a fresh process, writing Parquet shards (``out=DIR``) and, for
  comparison, keeping everything in memory for a ``.npz``.
* Wall time of the same job over ``--ray-images`` images with the in-process engine and with
  ``engine="ray"`` (a local Ray cluster started by the run: start-up included, and without it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
SHARD = 1000


def write_images(folder, count, side):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
    for k in range(count):
        sub = os.path.join(folder, f"{k // 1000:03d}")
        os.makedirs(sub, exist_ok=True)
        Image.fromarray(np.roll(base, k, axis=0)).save(os.path.join(sub, f"{k:06d}.jpg"), quality=90)


def child(args):
    """One run in this process; prints JSON: seconds, images, its peak RSS and (engine ray) Ray's start-up."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from conftest import small_xception

    from keras_xception.data.files import list_images
    from keras_xception.tasks.extraction import extract_features

    paths = list_images(args.images)[: args.count]
    model = small_xception(include_top=False, pooling="avg")
    ray_start = 0.0
    if args.engine == "ray":
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t
    t = time.perf_counter()
    run = dict(model=model, image_size=71, batch_size=32, verbose=0, engine=args.engine)
    if args.out:
        images = extract_features(paths, out=args.out, shard_size=SHARD, **run)["images"]
    else:
        images = len(extract_features(paths, **run).paths)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    print(json.dumps(dict(seconds=time.perf_counter() - t, images=images, ray_start=ray_start, peak_mib=peak)))


def run_child(images, count, out, engine="local"):
    argv = [sys.executable, __file__, "--child", images, "--count", str(count), "--engine", engine]
    line = subprocess.run(argv + (["--out", out] if out else []), capture_output=True, text=True, check=True)
    return json.loads(line.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--ray-images", type=int, default=1000)
    p.add_argument("--side", type=int, default=64)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--engine", default="local", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.images = args.child
        return child(args)
    tmp = tempfile.mkdtemp(prefix="extract_scale_")
    images = os.path.join(tmp, "images")
    write_images(images, max(args.sizes + [args.ray_images]), args.side)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; tiny Xception, {args.side}px JPEGs")
    for route in ("parquet", "npz"):
        for n in sorted(args.sizes):
            r = run_child(images, n, os.path.join(tmp, f"{route}{n}") if route == "parquet" else None)
            print(
                f"{route:8s} {n:6d} images: peak RSS {r['peak_mib']:7.0f} MiB, {r['images'] / r['seconds']:.0f} images/s"
            )
    for engine in ("local", "ray"):
        r = run_child(images, args.ray_images, os.path.join(tmp, f"engine_{engine}"), engine)
        extra = f" + {r['ray_start']:.1f} s ray.init" if engine == "ray" else ""
        print(f"engine {engine:5s} {r['images']} images: {r['seconds']:.1f} s{extra}")


if __name__ == "__main__":
    main()
