"""A bounded load test of the explorer on loopback: concurrent clients sending a mix of requests,
then the live layer view as a webcam would drive it (one frame after the other). It starts its
own server, stops by itself, and prints server errors, latency per endpoint and frames per second.

    python benchmarks/explorer_load.py --clients 8 --requests 1000
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
from PIL import Image

import netloupe as nl
from netloupe.explorer import Explorer
from netloupe.explorer.app import serve

LAYERS = ["bn1", "blocks.2", "blocks.4", "blocks.6"]


def frame(photo: Image.Image, k: int) -> bytes:
    """A webcam-like frame: the photo shifted a little each time, as JPEG."""
    w, h = photo.size
    dx, dy = (k * 7) % 40, (k * 5) % 30
    buffer = io.BytesIO()
    photo.crop((dx, dy, dx + w - 40, dy + h - 30)).resize((320, 240)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def mixed_request(client: httpx.Client, rng: random.Random, photo: Image.Image):
    kind = rng.choices(["predict", "layer", "unit_map", "backprop", "input", "info", "data", "upload"],
                       weights=[20, 30, 10, 8, 10, 4, 4, 14])[0]
    ref = f"sample:{rng.choice(['chelsea', 'coffee', 'rocket', 'astronaut'])}"
    layer = rng.choice(LAYERS)
    if kind == "upload":
        return kind, client.post("/api/upload", content=frame(photo, rng.randrange(100)))
    if kind == "predict":
        return kind, client.get("/api/predict", params={"input": ref})
    if kind == "layer":
        return kind, client.get("/api/layer.png", params={"input": ref, "layer": layer})
    if kind == "unit_map":
        return kind, client.get("/api/unit/map.png", params={"input": ref, "layer": layer, "channel": rng.randrange(8)})
    if kind == "backprop":
        return kind, client.get("/api/unit/backprop.png", params={"input": ref, "layer": layer,
                                                                  "channel": rng.randrange(8), "method": "saliency"})
    if kind == "input":
        return kind, client.get("/api/input.png", params={"input": ref})
    return kind, client.get("/api/info" if kind == "info" else "/api/data")


def load(url: str, clients: int, requests: int, seed: int):
    photo = nl.samples.image("chelsea")
    latencies, statuses = defaultdict(list), defaultdict(int)
    lock = threading.Lock()
    left = iter(range(requests))

    def run(i):
        rng = random.Random(seed + i)
        with httpx.Client(base_url=url, timeout=120) as client:
            while True:
                with lock:
                    if next(left, None) is None:
                        return
                start = time.perf_counter()
                kind, r = mixed_request(client, rng, photo)
                with lock:
                    latencies[kind].append(time.perf_counter() - start)
                    statuses[r.status_code] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses, time.perf_counter() - start


def live(url: str, frames: int, layer: str):
    """The webcam path: upload a frame, then its layer grid and predictions, one frame after the other."""
    photo = nl.samples.image("chelsea")
    grid_ms, total = [], []
    with httpx.Client(base_url=url, timeout=120) as client:
        for k in range(frames + 2):  # the first two warm up
            start = time.perf_counter()
            ref = client.post("/api/upload", content=frame(photo, k)).json()["input"]
            r = client.get("/api/layer.png", params={"input": ref, "layer": layer})
            client.get("/api/predict", params={"input": ref})
            if k >= 2:
                total.append(time.perf_counter() - start)
                grid_ms.append(float(r.headers["server-timing"].split("dur=")[1]))
    return grid_ms, total


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--layer", default="blocks.4", help="the layer of the live view")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    model = nl.load_model("default")
    with tempfile.TemporaryDirectory() as tmp:
        for name in nl.samples.names()[:4]:
            nl.samples.image(name).save(Path(tmp) / f"{name}.png")
        explorer = Explorer(model, data=tmp, cache_dir=Path(tmp) / "cache")
        explorer.layers()
        with serve(explorer) as url:
            latencies, statuses, wall = load(url, args.clients, args.requests, args.seed)
            grid_ms, frame_s = live(url, args.frames, args.layer)
    print(f"device: cpu, torch {torch.__version__}, threads {torch.get_num_threads()}")
    errors = sum(n for code, n in statuses.items() if code >= 500)
    print(f"{args.requests} mixed requests from {args.clients} clients in {wall:.1f} s: status codes "
          f"{dict(sorted(statuses.items()))}, server errors {errors}")
    print("| endpoint | requests | p50 ms | p95 ms |")
    print("|---|---|---|---|")
    for kind, values in sorted(latencies.items()):
        print(f"| {kind} | {len(values)} | {1000 * pct(values, 0.5):.0f} | {1000 * pct(values, 0.95):.0f} |")
    print(f"live view of {args.layer} ({args.frames} frames, one client): {len(frame_s) / sum(frame_s):.1f} frames/s, "
          f"frame p50 {1000 * statistics.median(frame_s):.0f} ms; layer grid server time p50 "
          f"{statistics.median(grid_ms):.0f} ms, p95 {pct(grid_ms, 0.95):.0f} ms (a new frame: forward pass + grid)")


if __name__ == "__main__":
    main()
