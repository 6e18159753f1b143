"""Full-size parity with timm: the five aligned Xceptions, same random weights, same photo, at 299x299.

timm's side runs in a Python with timm and PyTorch (see benchmarks/timm_fixtures.py for the venv; fvcore
there adds timm's own GMACs count): for each architecture ``timm.create_model(name, pretrained=False)``
gets random weights and BatchNorm statistics, and its state dict (safetensors), its logits for the photo
(bicubic 299x299, scaled to [-1, 1]), its parameter counts and fvcore's count are written to a folder.
This side loads each checkpoint with ``keras_xception.<name>(weights=path)`` and prints the relative max
difference of the logits, both parameter counts and ``count_macs`` next to timm's.

    python benchmarks/timm_parity.py [--timm-python /work/venv-timm/bin/python] [--keep DIR]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ARCHS = ("xception41", "xception65", "xception71", "xception41p", "xception65p")
PUBLISHED_GMACS = {"xception65": 13.96}  # timm's model card / results tables


def timm_side(out, image):
    """Run under timm's Python: checkpoints, logits, counts into ``out``."""
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from timm_fixtures import default_photo, import_timm, randomize

    timm = import_timm()
    photo = Image.open(image or default_photo()).convert("RGB").resize((299, 299), Image.BICUBIC)
    photo.save(os.path.join(out, "photo.png"))
    x = torch.from_numpy(np.asarray(photo, np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    report = {"timm": timm.__version__, "torch": torch.__version__, "models": {}}
    for seed, arch in enumerate(ARCHS):
        model = randomize(timm.create_model(arch, pretrained=False), seed)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, f"{arch}.safetensors"))
        with torch.no_grad():
            logits = model(x)[0].double().numpy()
        entry = dict(
            logits=logits.tolist(),
            params=sum(p.numel() for p in model.parameters()),
            trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        )
        try:
            from fvcore.nn import FlopCountAnalysis

            flops = FlopCountAnalysis(model, x)
            flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            entry["fvcore_gmacs"] = flops.total() / 1e9
        except ImportError:
            pass
        report["models"][arch] = entry
        print(f"timm {arch}: done", file=sys.stderr, flush=True)
    with open(os.path.join(out, "timm.json"), "w") as f:
        json.dump(report, f)


def keras_side(folder):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from PIL import Image

    import keras_xception as kx

    with open(os.path.join(folder, "timm.json")) as f:
        ref = json.load(f)
    x = np.asarray(Image.open(os.path.join(folder, "photo.png")), np.float32)[None] / 127.5 - 1.0
    print(f"timm {ref['timm']}, torch {ref['torch']}; keras {keras.__version__} ({keras.backend.backend()})")
    head = f"{'model':<12} {'rel. max diff':>13} {'trainable':>11} {'timm':>11} {'GMACs':>7} {'+2xBN':>7} {'fvcore':>7}"
    print(head + f" {'published':>9} {'load s':>6}")
    for arch in ARCHS:
        t = ref["models"][arch]
        start = time.perf_counter()
        model = kx.build(arch, weights=os.path.join(folder, f"{arch}.safetensors"), classifier_activation=None)
        seconds = time.perf_counter() - start
        diff = np.max(np.abs(model.predict(x, verbose=0)[0] - t["logits"])) / np.max(np.abs(t["logits"]))
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        macs = kx.count_macs(model)
        bn = sum(int(np.prod(la.output.shape[1:])) for la in model.layers if type(la).__name__ == "BatchNormalization")
        pooled = int(np.prod(model.get_layer("avg_pool").input.shape[1:]))
        fv = f"{t['fvcore_gmacs']:.3f}" if "fvcore_gmacs" in t else "-"
        print(
            f"{arch:<12} {diff:>13.2e} {trainable:>11,} {t['trainable_params']:>11,} {macs / 1e9:>7.3f} "
            f"{(macs + 2 * bn + pooled) / 1e9:>7.3f} {fv:>7} {PUBLISHED_GMACS.get(arch, '-'):>9} {seconds:>6.1f}"
        )
    print("GMACs: count_macs (kernels x positions); +2xBN: plus 2 per BatchNormalization output element and 1 per "
          "pooled input element (fvcore's convention, timm's counter).")  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timm-python", default="/work/venv-timm/bin/python", help="a Python with timm")
    parser.add_argument("--image", help="the photo (default: matplotlib's grace_hopper.jpg)")
    parser.add_argument("--keep", metavar="DIR", help="write timm's files here (default: a temporary folder)")
    parser.add_argument("--timm-side", metavar="DIR", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.timm_side:
        return timm_side(args.timm_side, args.image)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or tmp
        os.makedirs(folder, exist_ok=True)
        command = [args.timm_python, os.path.abspath(__file__), "--timm-side", folder]
        subprocess.run(command + (["--image", args.image] if args.image else []), check=True)
        keras_side(folder)


if __name__ == "__main__":
    main()
