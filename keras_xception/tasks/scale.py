"""Feature extraction at any scale: the job cut into units (a chunk of image files or one TFRecord file), each
written as one Parquet shard (:mod:`keras_xception.data.shards`), in this process or by a pool of Ray actors;
a rerun resumes. Ray is imported only by ``engine="ray"``."""

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

__all__ = ["ENGINES", "work_units", "run_unit", "write_features"]

ENGINES = ("local", "ray")  # local: in this process


def work_units(items, tfrecord, shard_size=None) -> list:
    """``("tfrecord", file)`` per TFRecord file, else ``("files", paths)`` chunks of ``shard_size`` (None: one)."""
    if tfrecord:
        return [("tfrecord", f) for f in items]
    step = shard_size or max(len(items), 1)
    return [("files", items[i : i + step]) for i in range(0, len(items), step)]


def run_unit(predict, unit, transform, *, batch_size, strict) -> Results:
    """The :class:`Results` of one unit; a TFRecord file that cannot be read is skipped whole, saying why."""
    kind, item = unit
    if kind == "files":
        return map_batches(predict, item, transform, batch_size=batch_size, strict=strict, verbose=0)
    try:
        records = dataclasses.replace(tfrecord_records(item, label_offset=0), description=item)
        return map_batches(predict, records, transform, batch_size=batch_size, strict=strict, verbose=0)
    except ValueError as e:
        if strict:
            raise ValueError(f"Cannot read {item}: {e}") from None
        warnings.warn(f"Skipping {Skipped(item, str(e))}", stacklevel=2)
        return Results(None, [], skipped=(Skipped(item, str(e)),))


def counting(predict, progbar):
    """``predict`` that also advances ``progbar`` by the images it ran (the one bar of every engine)."""

    def run(images):
        outputs = predict(images)
        progbar.add(len(images))
        return outputs

    return run


def finish_bar(progbar, count):
    """The bar at its end, unless there already: ``count`` inputs, the skipped ones too."""
    if (progbar.target, progbar._seen_so_far) != (count, count):
        progbar.target = count
        progbar.update(count, finalize=True)


def write_features(
    out, items, tfrecord, model, run, settings, skipped, *, engine, address, overwrite, verbose, **options
):
    """Extract the features of ``items`` into the folder ``out`` (see :func:`extract_features`); the manifest.

    ``run``: :class:`Predictor` keywords; ``settings``: what makes two runs the same (JSON values);
    ``options``: ``batch_size``, ``strict``, ``shard_size``.
    """
    units = work_units(items, tfrecord, options.pop("shard_size"))
    digest = hashlib.sha256("\n".join(items).encode()).hexdigest()
    settings = dict(settings, inputs=len(items), digest=digest, shard_size=None if tfrecord else len(units[0][1]))
    shards.start(out, settings, overwrite)
    todo = [k for k in range(len(units)) if not os.path.exists(shards.shard_path(out, k))]
    total = None if tfrecord else sum(len(units[k][1]) for k in todo)
    progbar = keras.utils.Progbar(total, verbose=verbose, unit_name="image")
    if engine == "ray":
        count = _ray(out, [(k, *units[k]) for k in todo], model, run, options, address, progbar)
    else:
        predict, count = counting(Predictor(model, **run).predict, progbar), 0
        for k in todo:
            results = run_unit(predict, units[k], run["transform"], **options)
            shards.write_shard(out, k, results)
            count += len(results.paths) + len(results.skipped)
    finish_bar(progbar, count)
    return shards.finish(out, settings, len(units), skipped)


class _Worker:
    """A Ray actor: the model once (any runtime and precision), then one shard per unit it is given."""

    def __init__(self, cwd, out, model, run, options):
        os.chdir(cwd)  # relative image paths as the driver sees them
        self.out, self.run, self.options = out, run, options
        self.predict = Predictor(model, **run).predict

    def __call__(self, batch):
        images = []
        for k, kind, item in zip(batch["index"], batch["kind"], batch["item"]):
            results = run_unit(self.predict, (kind, json.loads(item)), self.run["transform"], **self.options)
            shards.write_shard(self.out, int(k), results)
            images.append(len(results.paths) + len(results.skipped))
        return {"images": images}


def _ray(out, todo, model, run, options, address, progbar):
    """The units ``todo`` by a pool of :class:`_Worker` actors; Ray restarts a killed actor and reruns its unit."""
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")  # no INFO lines from Ray Data on stderr
    import ray

    if not ray.is_initialized():  # a local cluster on this machine's CPUs, or join the one at `address`
        cpus = None if address else len(os.sched_getaffinity(0))
        ray.init(address=address, num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    rows = [{"index": k, "kind": kind, "item": json.dumps(item)} for k, kind, item in todo]
    ds = ray.data.from_items(rows).map_batches(
        _Worker,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=gpus or max(1, cpus // 4)),  # per GPU, else per 4 CPUs
        fn_constructor_args=(os.getcwd(), os.path.abspath(out), model, run, options),
        num_gpus=1 if gpus else None,
    )
    count = 0
    for batch in ds.iter_batches(batch_size=1):
        count += int(batch["images"][0])
        progbar.update(count)
    return count
