"""netloupe.scan against a plain forward-only pass, and its peak memory as the dataset grows.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/scan.py [--images 512] [--size 128]

Time: a scan of 3 layers of the default model (EfficientNet-Lite0) over N images, against a
forward-only pass (no hooks, no statistics) over the same preprocessed tensors with the same
batch size; best of --repeats runs each, alternating. Target: ratio <= 1.3.
Memory: in a fresh process per size, the model is loaded and run once, the peak-RSS mark is
reset (/proc/self/clear_refs), then 256, 512 or 1024 images generated on the fly (so the data
itself takes no memory) are scanned; the peak RSS during the scan should stay flat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

import netloupe as nl
from common import Generated  # beside this file: a script's folder is on its import path

LAYERS = ["blocks.2", "blocks.4", "conv_head"]


def _model(size: int):
    pre = nl.Preprocess(size=size, resize=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic")
    return nl.load_model("default", preprocess=pre)


def timing(n: int, size: int, batch: int, repeats: int) -> dict:
    model = _model(size)
    photos = nl.samples.dataset(n, 256)
    tensors = [t for s in range(0, n, 64) for t in model.inputs([photos[i] for i in range(s, min(s + 64, n))])]

    def plain():
        with torch.no_grad():
            for xb in torch.utils.data.DataLoader(tensors, batch_size=batch):
                model.module(xb)

    def scanned():
        return nl.scan(model, tensors, LAYERS, top_k=9, batch_size=batch, progress=False)

    plain()  # warm-up
    times = {"forward": [], "scan": []}
    for _ in range(repeats):
        for name, fn in (("forward", plain), ("scan", scanned)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    return {"images": n, "size": size, "batch": batch, "threads": torch.get_num_threads(),
            "forward_s": round(best["forward"], 3), "scan_s": round(best["scan"], 3),
            "ratio": round(best["scan"] / best["forward"], 3), "all": times}


def _rss_mb(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(n: int, size: int, batch: int) -> None:
    model = _model(size)
    with torch.no_grad():
        model.module(torch.zeros(batch, 3, size, size))
    before = _rss_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # Linux: reset the peak (VmHWM) to the current RSS
        f.write("5")
    result = nl.scan(model, Generated(n, size), LAYERS, top_k=9, batch_size=batch, progress=False)
    print(json.dumps({"images": result.count, "rss_before_mb": round(before, 1),
                      "peak_rss_mb": round(_rss_mb("VmHWM"), 1)}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.size, args.batch)
        return
    t = timing(args.images, args.size, args.batch, args.repeats)
    print(f"time: {t['images']} images at {t['size']} px, batch {t['batch']}, {t['threads']} thread(s): "
          f"forward {t['forward_s']:.2f} s, scan of {', '.join(LAYERS)} {t['scan_s']:.2f} s, ratio {t['ratio']:.2f}")
    for n in (256, 512, 1024):
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--size", str(args.size),
                              "--batch", str(args.batch)], capture_output=True, text=True, check=True)
        m = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"memory: {m['images']:5d} images: peak RSS during the scan {m['peak_rss_mb']:.0f} MB "
              f"(before it, model loaded and run once: {m['rss_before_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
