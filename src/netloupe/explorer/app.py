"""The explorer's HTTP routes: thin, each one call into the Explorer (service.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import socket
import sys
import threading
import time
import typing
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Dict, Iterator, cast

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image

from ..errors import InputError, NetloupeError, UnitError
from ..verbs import Arg, Option, data_of, model_of, port, verb
from .service import MAX_UPLOAD_BYTES, Explorer, Job, NotFound, TooLarge, View, check_saved, png

STATIC = Path(__file__).parent / "static"

def _png(data: bytes, **headers: str) -> Response:
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store", **headers})


def _answer(result: Any, kind: str, started: float) -> Any:
    """A view's result as its kind answers: JSON as is, a job by its status, a picture as PNG."""
    if kind == "job":
        return cast(Job, result).status()
    if kind != "png":
        return result
    data, headers = result if isinstance(result, tuple) else (result, {})
    spent = (time.perf_counter() - started) * 1000
    timing = {"Server-Timing": f"view;dur={spent:.1f}"}
    return _png(png(data) if isinstance(data, Image.Image) else data, **headers, **timing)


def _endpoint(explorer: Explorer, name: str, declared: View) -> Callable[..., Any]:
    """The route function of an Explorer method: its parameters (those the view lets a request set)
    as the request's, ``ref`` as ``input``; the call; its result as the view's kind answers it."""
    method = getattr(type(explorer), name)
    hints = typing.get_type_hints(method)
    params = []
    for p in list(inspect.signature(method).parameters.values())[1:]:  # after self
        if declared.params is not None and p.name not in declared.params:
            continue
        default: Any = p.default if p.default is not p.empty else ...
        if p.name == "ref":
            default = Query(default, alias="input")
        params.append(p.replace(kind=p.KEYWORD_ONLY, annotation=hints.get(p.name, str), default=default))

    def endpoint(**kw: Any) -> Any:
        started = time.perf_counter()
        return _answer(getattr(explorer, name)(**kw), declared.kind, started)

    endpoint.__name__ = name
    endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # what FastAPI reads
    return endpoint


def create_app(explorer: Explorer) -> FastAPI:
    """The FastAPI app of one explorer: its page, and a route for every view the Explorer declares
    (service.view), besides the two that are not one call: the upload's streamed body and a job's
    event stream."""
    app = FastAPI(title="netloupe explorer", docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(NetloupeError)
    def netloupe_error(request: Request, e: NetloupeError) -> JSONResponse:
        status = 404 if isinstance(e, (NotFound, UnitError)) else 413 if isinstance(e, TooLarge) else 400
        return JSONResponse({"detail": str(e)}, status_code=status)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    for name in dir(type(explorer)):  # its class's views and those of the classes it extends
        declared = getattr(getattr(type(explorer), name), "__view__", None)
        if isinstance(declared, View):
            app.add_api_route(declared.path, _endpoint(explorer, name, declared), methods=[declared.verb],
                              response_model=None)

    @app.post("/api/upload", response_model=None)
    async def upload(request: Request) -> Dict[str, str]:
        declared_length = request.headers.get("content-length")
        if declared_length is not None and declared_length.isdigit() and int(declared_length) > MAX_UPLOAD_BYTES:
            raise TooLarge(f"the upload has {int(declared_length):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_UPLOAD_BYTES:
                raise TooLarge(f"the upload is over the limit of {MAX_UPLOAD_BYTES:,} bytes")
        if not body:
            raise InputError("the upload is empty; send the image's bytes as the request body")
        return {"input": await asyncio.to_thread(explorer.upload, bytes(body))}

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
