"""The explorer's HTTP API, endpoint by endpoint, with FastAPI's test client (and a real server
for streams), including every security case: upload limits, reads only inside --data, clear 4xx."""

import io
import json
import os
import struct
import time
import zlib

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import netloupe as nl
from model_state import leaves_unchanged

fastapi_testclient = pytest.importorskip("fastapi.testclient")
from netloupe.explorer import Explorer, service  # noqa: E402
from netloupe.explorer.app import create_app, serve  # noqa: E402


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, stride=2, padding=1),
                                      nn.ReLU())
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        return self.fc(self.drop(self.features(x).mean((2, 3))))


def tiny():
    torch.manual_seed(0)
    return nl.LoadedModel(TinyNet().eval(), nl.Preprocess(size=32, resize=36), ["a", "b", "c", "d"], "tiny")


def png_bytes(size=(40, 30), colour=(200, 10, 10)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture()
def data(tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    for name in ("chelsea", "coffee", "rocket"):
        nl.samples.image(name).save(folder / ("sub" if name == "rocket" else "") / f"{name}.png")
    outside = tmp_path / "outside.png"
    nl.samples.image("astronaut").save(outside)
    os.symlink(outside, folder / "link.png")  # a link out of --data: never listed, never read
    return folder


@pytest.fixture()
def client(data, tmp_path):
    explorer = Explorer(tiny(), data=data, cache_dir=tmp_path / "cache")
    return fastapi_testclient.TestClient(create_app(explorer)), explorer


def wait(c, job, timeout=120):
    """Follow a job until it ends (polling; the stream is tested on its own)."""
    end = time.time() + timeout
    while time.time() < end:
        status = c.get(f"/api/jobs/{job['id']}").json()
        if status["state"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not end")


def test_a_view_declared_on_the_service_is_served(data, tmp_path):
    """A new explorer view is one decorated method: its route, parameters and answer come from it."""
    class Mine(Explorer):
        @service.view("GET", "/api/unit/mean")
        def unit_mean(self, ref: str, layer: str, channel: int) -> dict:
            return {"mean": float(self._maps(ref, layer)[channel].mean())}

        @service.view("GET", "/api/unit/negative.png", "png")
        def negative(self, ref: str) -> Image.Image:
            return Image.eval(self.picture(ref), lambda v: 255 - v)

    c = fastapi_testclient.TestClient(create_app(Mine(tiny(), data=data, cache_dir=tmp_path / "cache")))
    r = c.get("/api/unit/mean", params={"input": "sample:chelsea", "layer": "features.2", "channel": 3})
    assert r.status_code == 200 and isinstance(r.json()["mean"], float)
    assert c.get("/api/unit/mean", params={"input": "sample:chelsea", "layer": "features.2", "channel": "x"}
                 ).status_code == 422
    assert c.get("/api/unit/mean", params={"input": "sample:nope", "layer": "features.2", "channel": 3}
                 ).status_code == 404  # the service's own errors, as every view's
    png = c.get("/api/unit/negative.png", params={"input": "sample:chelsea"})
    assert png.headers["content-type"] == "image/png" and Image.open(io.BytesIO(png.content)).size == (32, 32)


def test_page_info_and_data(client):
    c, explorer = client
    page = c.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    info = c.get("/api/info").json()
    assert info["model"] == "tiny" and info["input_size"] == [32, 32] and info["data"] == 3
    assert "sample:chelsea" in info["samples"] and info["start"] == "sample:chelsea"
    names = [row["name"] for row in info["layers"]]
    assert names[:2] == ["features.0", "features.1"] and "fc" in names
    row = next(r for r in info["layers"] if r["name"] == "features.2")
    assert row == {"name": "features.2", "shape": [12, 16, 16], "layout": "nchw", "channels": 12, "grid": [16, 16]}
    assert {m["name"] for m in info["methods"]} >= {"saliency", "grad_cam", "occlusion"}
    assert "attention_rollout" not in {m["name"] for m in info["methods"]}  # no attention in a CNN
    listing = c.get("/api/data", params={"page": 0, "per_page": 2}).json()
    assert listing["total"] == 3 and [i["input"] for i in listing["items"]] == ["data:0", "data:1"]
    assert {i["name"] for i in c.get("/api/data").json()["items"]} == {"chelsea.png", "coffee.png", "rocket.png"}
    assert c.get("/api/data", params={"per_page": 1000}).status_code == 400


def test_inputs_and_predictions(client):
    c, _ = client
    for ref in ("sample:coffee", "data:2"):
        r = c.get("/api/input.png", params={"input": ref})
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (32, 32)
    preds = c.get("/api/predict", params={"input": "sample:coffee"}).json()["predictions"]
    assert len(preds) == 4 and abs(sum(p["probability"] for p in preds) - 1) < 1e-5
    with torch.no_grad():
        logits = tiny().module(tiny().inputs(nl.samples.path("coffee")))
    assert preds[0]["class"] == int(logits.argmax()) and preds[0]["label"] == "abcd"[int(logits.argmax())]


@pytest.mark.parametrize("ref", ["data:../../etc/passwd", "data:/etc/passwd", "/etc/passwd", "data:3", "data:-1",
                                 "sample:../../x", "sample:nope", "upload:99", "file:/etc/passwd", ""])
def test_only_known_inputs_can_be_read(client, ref):
    c, _ = client
    r = c.get("/api/input.png", params={"input": ref})
    assert r.status_code == 404 and "no input" in r.json()["detail"]


def test_uploads_and_their_limits(client, monkeypatch):
    c, _ = client
    r = c.post("/api/upload", content=png_bytes())
    assert r.status_code == 200 and r.json()["input"].startswith("upload:")
    ref = r.json()["input"]
    assert Image.open(io.BytesIO(c.get("/api/input.png", params={"input": ref}).content)).getpixel((5, 5))[0] > 150
    assert c.post("/api/upload", content=b"not an image").status_code == 400
    assert c.post("/api/upload", content=b"").status_code == 400
    monkeypatch.setattr(service, "MAX_UPLOAD_BYTES", 100)
    monkeypatch.setattr("netloupe.explorer.app.MAX_UPLOAD_BYTES", 100)
    big = c.post("/api/upload", content=png_bytes((60, 60)))
    assert big.status_code == 413 and "limit" in big.json()["detail"]
    monkeypatch.undo()
    monkeypatch.setattr(service, "MAX_UPLOAD_PIXELS", 1000)
    wide = c.post("/api/upload", content=png_bytes((40, 40)))
    assert wide.status_code == 413 and "1,600 pixels" in wide.json()["detail"]
    monkeypatch.undo()
    bomb = c.post("/api/upload", content=_claimed_png(100_000, 100_000))  # a header that claims 10 billion pixels
    assert bomb.status_code == 413


def _claimed_png(width, height):
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_layer_grid(client):
    c, explorer = client
    r = c.get("/api/layer.png", params={"input": "sample:chelsea", "layer": "features.2", "cmap": "gray"})
    assert r.status_code == 200 and "view;dur=" in r.headers["server-timing"]
    grid = json.loads(r.headers["x-netloupe-grid"])
    assert grid == {"channels": 12, "cols": 4, "tile": [16, 16], "pad": 1}
    picture = Image.open(io.BytesIO(r.content))
    assert picture.size == (4 * 17 + 1, 3 * 17 + 1)
    # tile (row 1, col 2) is channel 6, scaled to its own range
    with nl.probe(explorer.model.module, ["features.2"]) as p, torch.no_grad():
        explorer.model.module(explorer.inputs("sample:chelsea")[0])
        m = p.activations["features.2"][0, 6]
    tile = torch.from_numpy(np.asarray(picture.crop((1 + 2 * 17, 1 + 17, 1 + 2 * 17 + 16, 1 + 17 + 16)))[..., 0].copy()).flatten()
    want = ((m - m.min()) / (m.max() - m.min()) * 255).round().flatten()
    assert (tile.float() - want).abs().max() <= 1
    vector = json.loads(c.get("/api/layer.png", params={"input": "sample:chelsea", "layer": "fc"}).headers["x-netloupe-grid"])
    assert vector["channels"] == 4 and vector["tile"] == [1, 1]
    assert c.get("/api/layer.png", params={"input": "sample:chelsea", "layer": "nope"}).status_code == 404
    assert c.get("/api/layer.png", params={"input": "sample:chelsea", "layer": "fc", "cmap": "rainbowz"}).status_code == 400
    assert c.get("/api/layer.png", params={"input": "sample:chelsea", "layer": "fc", "norm": "global"}).status_code == 400
    assert c.get("/api/layer.png", params={"input": "sample:chelsea"}).status_code == 422  # no layer: malformed


def test_unit_views_and_scan(client):
    c, _ = client
    unit = {"layer": "features.2", "channel": 5}
    info = c.get("/api/unit", params=unit).json()
    assert info["scanned"] is False and info["render"] is False and info["data"] is True
    assert c.get("/api/unit/patches", params=unit).status_code == 404  # not scanned yet: says so
    assert c.get("/api/unit/patch.png", params={**unit, "index": 0}).status_code == 404
    for method in ("saliency", "guided_backprop", "deconvnet", "grad_cam"):
        r = c.get("/api/unit/backprop.png", params={**unit, "input": "sample:chelsea", "method": method})
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (32, 32), method
    assert c.get("/api/unit/backprop.png", params={**unit, "input": "sample:chelsea", "method": "lime"}).status_code == 400
    assert c.get("/api/unit/map.png", params={**unit, "input": "sample:chelsea"}).status_code == 200
    assert c.get("/api/unit", params={"layer": "features.2", "channel": 12}).status_code == 404
    assert c.get("/api/unit", params={"layer": "features.2", "channel": "x"}).status_code == 422
    status = wait(c, c.post("/api/scan", params={"layer": "features.2"}).json())
    assert status["state"] == "done" and status["desc"] == "scan"
    info = c.get("/api/unit", params=unit).json()
    assert info["scanned"] and info["images"] == 3 and len(info["correlated"]) == 8
    assert all(row["channel"] != 5 for row in info["correlated"])
    listed = c.get("/api/unit/patches", params=unit).json()
    assert len(listed["patches"]) == 3 and {p["image"] for p in listed["patches"]} <= {"chelsea.png", "coffee.png",
                                                                                         "rocket.png"}
    values = [p["value"] for p in listed["patches"]]
    assert values == sorted(values, reverse=True)
    big = Image.open(io.BytesIO(c.get("/api/unit/patch.png", params={**unit, "index": 0, "size": 400}).content))
    small = Image.open(io.BytesIO(c.get("/api/unit/patch.png", params={**unit, "index": 0}).content))
    assert max(big.size) <= 400 and max(small.size) <= 160  # a window's width at the size asked (default 160),
    assert abs(big.width - 2.5 * small.width) <= 2 and abs(big.height - 2.5 * small.height) <= 2  # cropped alike
    assert c.get("/api/unit/patch.png", params={**unit, "index": 3}).status_code == 404
    assert c.get("/api/unit/patch.png", params={**unit, "index": 0, "size": 5000}).status_code == 400
    assert c.get("/api/unit/histogram.png", params=unit).status_code == 200
    assert "features.2" in c.get("/api/info").json()["scanned"]


def test_render_class_and_dropout_jobs(client, data, tmp_path, monkeypatch):
    c, explorer = client
    monkeypatch.setattr(explorer, "start_render", _quick_render(explorer))
    status = wait(c, c.post("/api/render", params={"layer": "features.2", "channel": 1}).json())
    assert status["state"] == "done" and status["done"] == status["total"] == 3  # its progress was reported
    picture = Image.open(io.BytesIO(c.get(f"/api/jobs/{status['id']}/result.png").content))
    assert picture.size == (16, 16)
    again = Explorer(tiny(), data=data, cache_dir=tmp_path / "cache")  # cached on disk, per model and unit
    assert again.unit_info("features.2", 1)["render"] is True
    job = c.post("/api/class", params={"input": "sample:chelsea", "method": "saliency", "target": "2"}).json()
    assert wait(c, job)["state"] == "done"
    assert Image.open(io.BytesIO(c.get(f"/api/jobs/{job['id']}/result.png").content)).size == (32, 32)
    bad = c.post("/api/class", params={"input": "sample:chelsea", "method": "lime"})
    assert bad.status_code == 400 and "unknown attribution method" in bad.json()["detail"]
    failed = wait(c, c.post("/api/class", params={"input": "sample:chelsea", "method": "grad_cam", "target": "9"}).json())
    assert failed["state"] == "failed" and "out of range" in failed["error"]  # a failed job says why
    drop = wait(c, c.post("/api/dropout", params={"input": "sample:chelsea", "layer": "fc", "n": 2}).json())
    assert drop["state"] == "done"
    assert c.get(f"/api/jobs/{drop['id']}/result.png").status_code == 200
    assert c.get("/api/jobs/render-99").status_code == 404
    assert c.post("/api/dropout", params={"input": "sample:chelsea", "layer": "fc", "n": 50}).status_code == 400


def _quick_render(explorer):
    original = explorer.start_render
    return lambda layer, channel, **kw: original(layer, channel, steps=3, size=16, **kw)


def test_the_channel_map_is_enlarged_in_blocks_with_a_colour_bar(client):
    c, explorer = client
    r = c.get("/api/unit/channel.png", params={"input": "sample:chelsea", "layer": "features.2", "channel": 6})
    picture = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    with nl.probe(explorer.model.module, ["features.2"]) as p, torch.no_grad():
        explorer.model.module(explorer.inputs("sample:chelsea")[0])
        m = p.activations["features.2"][0, 6]  # 16 x 16 cells, one block each
    k = picture.shape[0] // 16
    assert k >= 10 and picture.shape[0] == 16 * k
    block = picture[:16 * k, :16 * k].reshape(16, k, 16, k, 3)
    assert (block == block[:, :1, :, :1]).all()  # nearest-neighbour: every block one colour
    top = np.unravel_index(int(m.argmax()), m.shape)
    assert tuple(block[top[0], 0, top[1], 0]) == tuple(np.asarray(Image.new("RGB", (1, 1), (253, 231, 37)))[0, 0])
    assert picture.shape[1] > 16 * k + 20  # the colour bar and its labels at the right


def test_automatic_work_gives_way_to_newer_automatic_work(client, monkeypatch):
    """A render the page starts on its own for the shown unit is cancelled once another unit is shown
    (queued or running); one asked for by a button is kept; 'again' renders anew."""
    c, explorer = client
    original = explorer.start_render
    monkeypatch.setattr(explorer, "start_render", lambda layer, channel, **kw: original(layer, channel, steps=60,
                                                                                        size=16, **kw))
    first = c.post("/api/render", params={"layer": "features.2", "channel": 1, "auto": True}).json()
    second = c.post("/api/render", params={"layer": "features.2", "channel": 2, "auto": True}).json()
    kept = c.post("/api/render", params={"layer": "features.2", "channel": 3}).json()
    third = c.post("/api/render", params={"layer": "features.2", "channel": 4, "auto": True}).json()
    assert wait(c, first)["state"] == "cancelled" and wait(c, second)["state"] == "cancelled"
    assert wait(c, kept)["state"] == "done" and wait(c, third)["state"] == "done"
    repeat = c.post("/api/render", params={"layer": "features.2", "channel": 4}).json()
    assert repeat["id"] == third["id"]  # the same work: the same job
    again = c.post("/api/render", params={"layer": "features.2", "channel": 4, "again": True}).json()
    assert again["id"] != third["id"] and wait(c, again)["state"] == "done"
    pictures = [c.get(f"/api/jobs/{job['id']}/result.png").content for job in (third, again)]
    assert pictures[0] != pictures[1]  # rendered anew, with another seed


def test_the_same_work_asked_twice_is_one_job(client):
    c, _ = client
    a = c.post("/api/class", params={"input": "sample:coffee", "method": "saliency"}).json()
    b = c.post("/api/class", params={"input": "sample:coffee", "method": "saliency"}).json()
    assert a["id"] == b["id"]
    wait(c, a)


def test_a_session_leaves_the_model_as_found(data, tmp_path):
    model = tiny()
    with leaves_unchanged(model.module):
        explorer = Explorer(model, data=data, cache_dir=tmp_path / "cache")
        c = fastapi_testclient.TestClient(create_app(explorer))
        c.get("/api/info")
        c.get("/api/layer.png", params={"input": "data:1", "layer": "features.0"})
        c.get("/api/unit/backprop.png", params={"input": "data:1", "layer": "features.2", "channel": 0,
                                                "method": "guided_backprop"})
        wait(c, c.post("/api/dropout", params={"input": "data:0", "layer": "fc", "n": 2}).json())
        wait(c, c.post("/api/scan", params={"layer": "features.2"}).json())


@pytest.fixture()
def server(data, tmp_path):
    explorer = Explorer(tiny(), data=data, cache_dir=tmp_path / "cache")
    with serve(explorer) as url:
        yield url, explorer


def test_progress_stream_and_a_client_that_leaves_mid_stream(server):
    import httpx

    url, explorer = server
    original = explorer.start_render
    job = original("features.2", 3, steps=400, size=16)  # long enough to leave in the middle
    with httpx.Client(base_url=url, timeout=30) as h:
        with h.stream("GET", f"/api/jobs/{job.id}/events") as stream:
            first = next(line for line in stream.iter_lines() if line.startswith("data:"))
            assert json.loads(first[5:])["id"] == job.id
        # gone mid-stream; the server goes on, and a slow render does not stall a fast request
        r = h.get("/api/layer.png", params={"input": "sample:coffee", "layer": "features.0"})
        assert r.status_code == 200 and explorer.worker.get(job.id).state in ("queued", "running")
        with h.stream("GET", f"/api/jobs/{job.id}/events") as stream:
            events = [json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:")]
        assert events[-1]["state"] == "done" and events[-1]["done"] == 400
        assert all(a["done"] <= b["done"] for a, b in zip(events, events[1:]))


def test_a_siamese_model_with_a_pair_list(tmp_path):
    import zoo

    pairs = tmp_path / "pairs.txt"
    for name in ("chelsea", "coffee", "rocket"):
        nl.samples.image(name).save(tmp_path / f"{name}.png")
    pairs.write_text("chelsea.png\tcoffee.png\nrocket.png\tchelsea.png\n")
    model = nl.LoadedModel(zoo.build("siamese")[0], nl.Preprocess(size=16, resize=18), None, "pairs")
    c = fastapi_testclient.TestClient(create_app(Explorer(model, data=pairs, cache_dir=tmp_path / "cache")))
    info = c.get("/api/info").json()
    assert info["start"] == "data:0" and info["data"] == 2
    names = [row["name"] for row in info["layers"]]
    assert "branch.3#0" in names and "branch.3#1" in names and "head" in names  # each branch's call
    first = c.get("/api/input.png", params={"input": "data:1", "part": 0}).content
    second = c.get("/api/input.png", params={"input": "data:1", "part": 1}).content
    assert first != second and c.get("/api/input.png", params={"input": "data:1", "part": 2}).status_code == 404
    grids = [c.get("/api/layer.png", params={"input": "data:1", "layer": f"branch.3#{i}"}).content for i in (0, 1)]
    assert grids[0] != grids[1]  # rocket's branch and chelsea's
    assert c.get("/api/layer.png", params={"input": "data:1", "layer": "branch.3#2"}).status_code == 404
    assert c.get("/api/unit/backprop.png", params={"input": "data:1", "layer": "head", "channel": 1,
                                                   "method": "saliency"}).status_code == 200


def test_the_explore_verb_serves_on_loopback_and_warns_for_other_hosts(tmp_path, monkeypatch, capsys, data):
    import uvicorn

    from netloupe.cli import main

    (tmp_path / "tinyexplore.py").write_text("import test_explorer_api\ndef factory():\n"
                                              "    return test_explorer_api.tiny()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append((app, kw)))
    assert main(["explore", "--model", "tinyexplore:factory", "--data", str(data)]) == 0
    out, err = capsys.readouterr()
    assert served[-1][1]["host"] == "127.0.0.1" and "http://127.0.0.1:8000/" in out and "warning" not in err
    assert main(["explore", "--model", "tinyexplore:factory", "--host", "0.0.0.0", "--port", "8123"]) == 0
    out, err = capsys.readouterr()
    assert served[-1][1] == {"host": "0.0.0.0", "port": 8123, "log_level": "warning"}
    assert "warning: serving on 0.0.0.0" in err
    assert main(["explore", "--model", "tinyexplore:factory", "--data", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
