"""Features as a folder of Parquet shards (``path``, ``features``: float32 lists; ``pyarrow.dataset.dataset(DIR)``
reads them as one table) and ``_manifest.json``. Shard ``k`` holds work unit ``k``: it is written under a
temporary name and renamed, so it exists whole or not at all, and a rerun skips it (resume)."""

from __future__ import annotations

import glob
import json
import os

from keras_xception.data.results import Skipped

__all__ = ["MANIFEST", "shard_path", "start", "write_shard", "finish"]

MANIFEST = "_manifest.json"  # "_": pyarrow.dataset ignores it, as it ignores the ".tmp" files


def shard_path(out, index) -> str:
    return os.path.join(out, f"part-{index:06d}.parquet")


def _write_json(path, value):
    temp = f"{path}.tmp{os.getpid()}"
    with open(temp, "w") as f:
        json.dump(value, f, indent=1)
    os.replace(temp, path)


def start(out, settings, overwrite=False) -> None:
    """Open ``out`` for a job with ``settings`` (JSON values): a rerun with the same settings resumes, other
    settings are refused (``ValueError``) unless ``overwrite``, which deletes the shards and manifest first."""
    manifest = os.path.join(out, MANIFEST)
    if os.path.isfile(out):
        raise ValueError(f"--out {out!r} is a file; give a new or an earlier output folder (or a .npz file).")
    if overwrite:
        for f in glob.glob(os.path.join(out, "part-*.parquet")) + glob.glob(manifest):
            os.remove(f)
    elif os.path.exists(manifest):
        with open(manifest) as f:
            old = json.load(f).get("settings", {})
        changed = sorted(k for k in {**old, **settings} if old.get(k) != settings.get(k))
        if changed:
            raise ValueError(
                f"{out!r} holds features made with other settings ({', '.join(changed)} differ, e.g. "
                f"{changed[0]}={old.get(changed[0])!r} there, {settings.get(changed[0])!r} now). Pass "
                "--overwrite (overwrite=True) to start afresh, or choose another output folder."
            )
    elif glob.glob(os.path.join(out, "part-*.parquet")):
        raise ValueError(f"{out!r} holds Parquet shards but no {MANIFEST}; use --overwrite or another folder.")
    os.makedirs(out, exist_ok=True)
    _write_json(manifest, {"complete": False, "settings": settings})


def write_shard(out, index, results) -> None:
    """Shard ``index`` of :class:`~keras_xception.data.results.Results`; its ``skipped`` go into the file's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = [] if results.outputs is None else list(results.outputs.astype("float32"))
    table = pa.table(
        {"path": pa.array(results.paths, pa.string()), "features": pa.array(features, pa.list_(pa.float32()))},
        metadata={
            "skipped": json.dumps([list(s) for s in results.skipped]),
            "dimension": str(len(features[0]) if features else 0),
        },
    )
    temp = os.path.join(out, f".part-{index:06d}.tmp{os.getpid()}")
    pq.write_table(table, temp)
    os.replace(temp, shard_path(out, index))


def finish(out, settings, count, skipped=()) -> dict:
    """Write and return the manifest of the ``count`` shards of a finished job (``skipped``: more inputs skipped)."""
    import pyarrow.parquet as pq

    images, skipped, dims = 0, list(skipped), set()
    for f in glob.glob(os.path.join(out, ".part-*.tmp*")):  # left by a killed writer
        os.remove(f)
    for k in range(count):
        meta = pq.read_metadata(shard_path(out, k))
        images += meta.num_rows
        skipped += [Skipped(*s) for s in json.loads(meta.metadata[b"skipped"])]
        dims |= {int(meta.metadata[b"dimension"])} - {0}
    manifest = {
        "complete": True,
        "images": images,
        "dimension": dims.pop() if len(dims) == 1 else None,
        "shards": count,
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
        "settings": settings,
    }
    _write_json(os.path.join(out, MANIFEST), manifest)
    return manifest
