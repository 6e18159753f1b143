"""Features as a folder of Parquet shards (``path``, ``features``: float32 lists) and ``_manifest.json``. Shard
``k`` holds work unit ``k``, written under a temporary name and renamed: whole or absent; a rerun skips it."""

from __future__ import annotations

import glob
import json
import os

__all__ = ["MANIFEST", "ENGINES", "shard_path", "start", "write_shard", "finish"]

ENGINES = ("local", "ray")  # who writes the shards: this process, or Ray actors (tasks.scale)
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
        if changed := sorted(k for k in {**old, **settings} if old.get(k) != settings.get(k)):
            raise ValueError(
                f"{out!r} holds features made with other settings ({', '.join(changed)} differ); pass --overwrite "
                "(overwrite=True) to start afresh, or choose another output folder."
            )
    os.makedirs(out, exist_ok=True)
    _write_json(manifest, {"complete": False, "settings": settings})


def write_shard(out, index, results) -> None:
    """Shard ``index`` of :class:`~keras_xception.data.results.Results`; its ``skipped`` go into the file's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = [] if results.outputs is None else list(results.outputs.astype("float32"))
    skipped = json.dumps([{"path": s.path, "reason": s.reason} for s in results.skipped])
    table = pa.table(
        {"path": pa.array(results.paths, pa.string()), "features": pa.array(features, pa.list_(pa.float32()))},
        metadata={"skipped": skipped, "dimension": str(len(features[0]) if features else 0)},
    )
    temp = os.path.join(out, f".part-{index:06d}.tmp{os.getpid()}")
    pq.write_table(table, temp)
    os.replace(temp, shard_path(out, index))


def finish(out, settings, count, skipped=()) -> dict:
    """Write and return the manifest of the ``count`` shards of a finished job (``skipped``: more inputs skipped)."""
    import pyarrow.parquet as pq

    for f in glob.glob(os.path.join(out, ".part-*.tmp*")):  # left by a killed writer
        os.remove(f)
    listed = [dict(path=p, reason=r) for p, r in skipped]
    manifest = dict(complete=True, images=0, dimension=0, shards=count, skipped=listed)
    for k in range(count):
        meta = pq.read_metadata(shard_path(out, k))
        manifest["images"] += meta.num_rows
        manifest["skipped"] += json.loads(meta.metadata[b"skipped"])
        manifest["dimension"] = max(manifest["dimension"], int(meta.metadata[b"dimension"]))
    _write_json(os.path.join(out, MANIFEST), dict(manifest, settings=settings))
    return dict(manifest, settings=settings)
