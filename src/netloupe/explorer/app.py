"""The explorer's HTTP routes: thin, each one call into the Explorer (service.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterator

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from .. import samples
from ..errors import InputError, NetloupeError, UnitError
from ..verbs import Arg, Option, data_of, model_of, port, verb
from .service import MAX_UPLOAD_BYTES, Explorer, Job, NotFound, TooLarge, check_saved, png

STATIC = Path(__file__).parent / "static"

# Routes that return JSON say so with -> Dict[str, Any] and response_model=None: FastAPI would
# otherwise make their return annotation a response model, validating and re-serializing the JSON.


def _png(data: bytes, **headers: str) -> Response:
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store", **headers})


def create_app(explorer: Explorer) -> FastAPI:
    """The FastAPI app of one explorer (its page, its JSON and its pictures)."""
    app = FastAPI(title="netloupe explorer", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(NetloupeError)
    def netloupe_error(request: Request, e: NetloupeError) -> JSONResponse:
        status = 404 if isinstance(e, (NotFound, UnitError)) else 413 if isinstance(e, TooLarge) else 400
        return JSONResponse({"detail": str(e)}, status_code=status)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/info", response_model=None)
    def info() -> Dict[str, Any]:
        m = explorer.model
        return {"model": m.name, "input_size": list(m.input_size), "start": explorer.sample_input(),
                "samples": [f"sample:{n}" for n in samples.names()],
                "data": len(explorer.source) if explorer.source is not None else 0,
                "layers": explorer.layers(), "methods": explorer.class_methods(),
                "backprop": list(explorer.BACKPROP), "scanned": sorted(explorer.scans)}

    @app.get("/api/data", response_model=None)
    def data(page: int = 0, per_page: int = Query(24, ge=1, le=200)) -> Dict[str, Any]:
        return explorer.data_page(page, per_page)

    @app.post("/api/upload", response_model=None)
    async def upload(request: Request) -> Dict[str, str]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            raise TooLarge(f"the upload has {int(declared):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_UPLOAD_BYTES:
                raise TooLarge(f"the upload is over the limit of {MAX_UPLOAD_BYTES:,} bytes")
        if not body:
            raise InputError("the upload is empty; send the image's bytes as the request body")
        return {"input": await asyncio.to_thread(explorer.upload, bytes(body))}

    @app.get("/api/input.png")
    def input_picture(input: str, part: int = 0) -> Response:
        return _png(png(explorer.picture(input, part)))

    @app.get("/api/predict", response_model=None)
    def predict(input: str) -> Dict[str, Any]:
        return {"input": input, "predictions": explorer.predictions(input)}

    @app.get("/api/layer.png")
    def layer(input: str, layer: str, cmap: str = "viridis", norm: str = "channel") -> Response:
        start = time.perf_counter()
        data, grid = explorer.layer_grid(input, layer, cmap, norm)
        spent = (time.perf_counter() - start) * 1000
        return _png(data, **{"X-Netloupe-Grid": json.dumps(grid), "Server-Timing": f"grid;dur={spent:.1f}"})

    @app.get("/api/unit", response_model=None)
    def unit(layer: str, channel: int) -> Dict[str, Any]:
        return explorer.unit_info(layer, channel)

    @app.get("/api/unit/map.png")
    def unit_map(input: str, layer: str, channel: int) -> Response:
        return _png(explorer.unit_map(input, layer, channel))

    @app.get("/api/unit/backprop.png")
    def unit_backprop(input: str, layer: str, channel: int, method: str) -> Response:
        return _png(explorer.unit_backprop(input, layer, channel, method))

    @app.get("/api/unit/channel.png")
    def unit_channel(input: str, layer: str, channel: int, cmap: str = "viridis") -> Response:
        return _png(explorer.unit_channel(input, layer, channel, cmap))

    @app.get("/api/unit/patches", response_model=None)
    def unit_patches(layer: str, channel: int) -> Dict[str, Any]:
        return explorer.unit_patches(layer, channel)

    @app.get("/api/unit/patch.png")
    def unit_patch(layer: str, channel: int, index: int, size: int = 160) -> Response:
        return _png(explorer.unit_patch(layer, channel, index, size))

    @app.get("/api/unit/histogram.png")
    def unit_histogram(layer: str, channel: int) -> Response:
        return _png(explorer.unit_histogram(layer, channel))

    @app.post("/api/render", response_model=None)
    def render(layer: str, channel: int, auto: bool = False, again: bool = False) -> Dict[str, Any]:
        return explorer.start_render(layer, channel, auto=auto, again=again).status()

    @app.post("/api/scan", response_model=None)
    def scan(layer: str, auto: bool = False, again: bool = False) -> Dict[str, Any]:
        return explorer.start_scan(layer, auto=auto, again=again).status()

    @app.post("/api/class", response_model=None)
    def class_map(input: str, method: str, target: str = "top") -> Dict[str, Any]:
        return explorer.start_class_map(input, method, int(target) if target.lstrip("-").isdigit() else target).status()

    @app.post("/api/dropout", response_model=None)
    def dropout(input: str, layer: str, n: int = 4) -> Dict[str, Any]:
        return explorer.start_dropout(input, layer, n).status()

    @app.get("/api/jobs/{job_id}", response_model=None)
    def job(job_id: str) -> Dict[str, Any]:
        return explorer.worker.get(job_id).status()

    @app.get("/api/jobs/{job_id}/events")
    def job_events(job_id: str) -> StreamingResponse:
        job = explorer.worker.get(job_id)

        # server-sent events until the job ends; a client that leaves just stops them
        async def events() -> AsyncIterator[str]:
            last = None
            while True:
                status = job.status()
                if status != last:
                    yield f"data: {json.dumps(status)}\n\n"
                    last = status
                if status["state"] in Job.ENDED:
                    return
                await asyncio.sleep(0.2)
        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.get("/api/jobs/{job_id}/result.png")
    def job_result(job_id: str) -> Response:
        return _png(explorer.job_picture(job_id))

    return app


@contextlib.contextmanager
def serve(explorer: Explorer, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve the explorer from a background thread while the block runs; yields its URL.

    For a notebook, a test or a benchmark: the caller goes on working beside the page. Port 0
    takes a free one."""
    import uvicorn

    if port == 0:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(explorer), host=host, port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise NetloupeError(f"the explorer could not serve on {host}:{port}; is the port taken?")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _check_address(host: str, port: int) -> None:
    """Refuse an address this machine cannot serve on (not its own, or a port in use) before the
    model loads."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise NetloupeError(f"cannot serve on {host}:{port} ({e.strerror or e}); give --host an address of this "
                            "machine (127.0.0.1, or 0.0.0.0 for every interface) and --port a free port") from None


@verb("explore", "the live explorer: a web page over the model (the Deep Visualization Toolbox)", function=Explorer,
      order=90,
      args=(Arg.of("--data", default=None, help="images to browse and scan: a folder, an image or pair list file, or "
                   "'samples'"),
            Arg.of("--scan", default=None, metavar="DIR", help="a saved scan (netloupe scan --out DIR) for top "
                   "patches, histograms and correlations"),
            Arg.of("--atlas", default=None, metavar="DIR", help="an atlas (netloupe atlas --out DIR) whose renders "
                   "to show"),
            Arg.of("--host", default="127.0.0.1", help="address to serve on (another than this machine's own is "
                   "reachable by others)"),
            Arg.of("--port", type=port, default=8000, help="port to serve on (1-65535)")),
      options={"render_steps": Option("optimization steps of a unit's feature visualization", minimum=1)})
def _explore_verb(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    import uvicorn

    _check_address(args.host, args.port)
    check_saved(args.scan, args.atlas)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"netloupe: warning: serving on {args.host}: anyone who can reach this machine can use the explorer",
              file=sys.stderr)
    explorer = Explorer(model_of(args), data=data_of(args.data), scan_dir=args.scan, atlas_dir=args.atlas, **keywords)
    explorer.layers()  # the first forward pass, before the URL is printed
    print(f"netloupe explorer for {explorer.model.name}: open http://{args.host}:{args.port}/ (Ctrl-C stops it)")
    uvicorn.run(create_app(explorer), host=args.host, port=args.port, log_level="warning")
