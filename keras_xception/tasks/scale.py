"""Feature extraction at any scale: units of work (image files or a TFRecord file), one Parquet shard each
(:mod:`keras_xception.data.shards`), in this process or by a pool of Ray actors (Ray imported only then)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings

import keras

from keras_xception.data import shards
from keras_xception.data.dataset import map_batches
from keras_xception.data.imagenet import tfrecord_records
from keras_xception.data.results import Results, Skipped
from keras_xception.deploy.predictor import Predictor

__all__ = ["work_units", "run_unit", "write_features"]


def work_units(items, tfrecord, shard_size=None) -> list:
    """The TFRecord files, else chunks of ``shard_size`` image paths (None: one chunk): one shard each."""
    step = shard_size or max(len(items), 1)
    return list(items) if tfrecord else [items[i : i + step] for i in range(0, len(items), step)]


def run_unit(predict, unit, transform, *, batch_size, strict) -> Results:
    """The :class:`Results` of one unit; a TFRecord file that cannot be read is skipped whole, saying why."""
    try:
        source = unit if not isinstance(unit, str) else dataclasses.replace(tfrecord_records(unit, 0), description=unit)
        return map_batches(predict, source, transform, batch_size=batch_size, strict=strict, verbose=0)
    except ValueError as e:
        if strict or not isinstance(unit, str):
            raise
        warnings.warn(f"Skipping {Skipped(unit, str(e))}", stacklevel=2)
        return Results(None, [], skipped=(Skipped(unit, str(e)),))


def counting(predict, progbar):
    """``predict`` that also advances ``progbar`` by the images it ran (the one bar of every engine)."""
    return lambda images: progbar.add(len(images)) or predict(images)


def finish_bar(progbar, count):
    """The bar at its end, unless there already: ``count`` inputs, the skipped ones too."""
    if (progbar.target, progbar._seen_so_far) != (count, count):
        progbar.target = count
        progbar.update(count, finalize=True)


def write_features(out, items, tfrecord, model, run, names, skipped, *, engine, address, overwrite, verbose, **options):
    """:func:`extract_features` into the folder ``out``; returns the manifest. ``run``: the :class:`Predictor`'s
    keywords; ``names``: settings not in ``run`` (JSON); ``options``: ``batch_size``, ``strict``, ``shard_size``."""
    units = work_units(items, tfrecord, size := options.pop("shard_size"))
    calibration = run["calibration"] if isinstance(run["calibration"], (str, type(None))) else "given"
    settings = dict(names, **run, inputs=len(items), digest=hashlib.sha256("\n".join(items).encode()).hexdigest())
    settings.update(calibration=calibration, transform=run["transform"].to_dict(), shard_size=size)
    shards.start(out, settings, overwrite)
    todo = [k for k in range(len(units)) if not os.path.exists(shards.shard_path(out, k))]
    progbar = keras.utils.Progbar(
        None if tfrecord else sum(len(units[k]) for k in todo), verbose=verbose, unit_name="image"
    )
    if engine == "ray":
        count = _ray(
            [(k, units[k]) for k in todo], (os.getcwd(), os.path.abspath(out), model, run, options), address, progbar
        )
    else:
        writer = _Writer(os.getcwd(), out, model, run, options, progbar)
        count = sum(writer.write(k, units[k]) for k in todo)
    finish_bar(progbar, count)
    return shards.finish(out, settings, len(units), skipped)


class _Writer:
    """The model once (any runtime and precision), then one shard per unit; also the Ray actor."""

    def __init__(self, cwd, out, model, run, options, progbar=None):
        os.chdir(cwd)  # a Ray actor: relative image paths as the driver sees them
        self.predict = counting(Predictor(model, **run).predict, progbar or keras.utils.Progbar(None, verbose=0))
        self.out, self.transform, self.options = out, run["transform"], options

    def write(self, k, unit) -> int:
        results = run_unit(self.predict, unit, self.transform, **self.options)
        shards.write_shard(self.out, int(k), results)
        return len(results.paths) + len(results.skipped)

    def __call__(self, batch):  # Ray Data: a batch of one unit
        return {"images": [self.write(k, json.loads(u)) for k, u in zip(batch["index"], batch["unit"])]}


def _ray(todo, arguments, address, progbar):
    """The units ``todo`` by a pool of :class:`_Writer` actors; Ray restarts a killed actor and reruns its unit."""
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")  # no INFO lines from Ray Data on stderr
    import ray

    if not ray.is_initialized():  # a local cluster on this machine's CPUs, or join the one at `address`
        cpus = None if address else len(os.sched_getaffinity(0))
        ray.init(address=address, num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    gpus, cpus = (int(ray.cluster_resources().get(r, 0)) for r in ("GPU", "CPU"))
    ds = ray.data.from_items([{"index": k, "unit": json.dumps(unit)} for k, unit in todo]).map_batches(
        _Writer,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=gpus or max(1, cpus // 4)),  # per GPU, else per 4 CPUs
        fn_constructor_args=arguments,
        num_gpus=1 if gpus else None,
    )
    for batch in ds.iter_batches(batch_size=1):
        progbar.add(int(batch["images"][0]))
    return progbar._seen_so_far
