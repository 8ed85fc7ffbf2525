"""The web layer: a Starlette app around one :class:`~universeg_jax.app.state.Session`, and ``serve``.

Every ``/api`` handler answers JSON (or a file). A failure is ``{"error": message}`` with status 400 (the user's
input) or 500 (a bug, logged with its traceback in the terminal); the server keeps running and the session is
unchanged. Requests run one at a time (a lock around the session), off the event loop.
"""

from __future__ import annotations

import functools
import io as _io
import logging
import shutil
import socket
import tempfile
import threading
import warnings
import zipfile
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from universeg_jax.app.state import AppError, Options, Session

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("universeg_jax.app")
NO_STORE = {"Cache-Control": "no-store"}


def create_app(session: Session) -> Starlette:
    """The ASGI app serving the page and the API for ``session``."""
    lock = threading.Lock()

    async def call(fn, *args):
        """Run ``fn(*args)`` on the session in a worker thread, one at a time; warnings become notes."""

        def locked():
            with lock, warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = fn(*args)
            notes = list(
                dict.fromkeys(session.public(w.message) for w in caught if issubclass(w.category, UserWarning))
            )
            return value, notes

        return await run_in_threadpool(locked)

    def api(handler):
        @functools.wraps(handler)
        async def endpoint(request: Request):
            try:
                return await handler(request)
            except AppError as err:
                return JSONResponse({"error": session.public(err)}, status_code=400, headers=NO_STORE)
            except (ValueError, TypeError, OSError, RuntimeError) as err:
                log.info("request failed: %s", err)
                return JSONResponse({"error": session.public(err)}, status_code=400, headers=NO_STORE)
            except Exception as err:  # a bug: keep serving, say so, log the traceback
                log.exception("internal error in %s", request.url.path)
                message = f"internal error ({type(err).__name__}: {err}); the terminal running the app has the details"
                return JSONResponse({"error": session.public(message)}, status_code=500, headers=NO_STORE)

        return endpoint

    async def state_response(notes=(), **extra):
        state, more = await call(session.state)
        return JSONResponse({**state, "notes": list(notes) + more, **extra}, headers=NO_STORE)

    async def files_of(request: Request, *fields: str):
        """The uploaded files of multipart ``fields``, saved in the session's folder."""
        form = await request.form(max_files=100_000, max_fields=1000)
        saved = []
        try:
            for field in fields:
                paths = []
                for item in form.getlist(field):
                    if isinstance(item, str):  # an empty file input sends an empty string
                        continue
                    data = await item.read()
                    paths.append(await call(session.save_upload, item.filename or "", data))
                saved.append([p for p, _ in paths])
        finally:
            await form.close()
        return saved

    async def index(request: Request):
        return FileResponse(STATIC / "index.html", headers=NO_STORE)

    @api
    async def get_state(request: Request):
        return await state_response()

    @api
    async def add_support(request: Request):
        images, labels = await files_of(request, "images", "labels")
        added, notes = await call(session.add_support, images, labels)
        return await state_response(notes, added=added)

    @api
    async def remove_example(request: Request):
        await call(session.remove_example, int(request.path_params["example"]))
        return await state_response()

    @api
    async def add_queries(request: Request):
        (paths,) = await files_of(request, "files")
        ids, notes = await call(session.add_queries, paths)
        return await state_response(notes, added=ids)

    @api
    async def remove_query(request: Request):
        await call(session.remove_query, request.path_params["query"])
        return await state_response()

    @api
    async def view(request: Request):
        params = request.query_params
        options = Options.parse(params)
        out, notes = await call(
            session.view, request.path_params["query"], params.get("slice", 0), options, params.get("probability")
        )
        return JSONResponse({**out, "notes": notes}, headers=NO_STORE)

    @api
    async def set_edits(request: Request):
        body = await json_body(request)
        await call(session.set_edits, request.path_params["query"], body.get("slice", 0), body.get("edits"))
        return JSONResponse({"ok": True}, headers=NO_STORE)

    @api
    async def add_correction(request: Request):
        body = await json_body(request)
        options = Options.parse(body)
        if "edits" in body:  # the painting and the request in one go
            await call(session.set_edits, request.path_params["query"], body.get("slice", 0), body["edits"])
        example, notes = await call(session.add_correction, request.path_params["query"], body.get("slice", 0), options)
        return await state_response(notes, example=example)

    def download(writer):
        @api
        async def endpoint(request: Request):
            options = Options.parse(request.query_params)
            folder = Path(tempfile.mkdtemp(dir=session.workdir, prefix="download-"))
            try:
                path, _ = await call(writer, request.path_params["query"], options, folder)
                data = path.read_bytes()
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            return attachment(data, path.name)

        return endpoint

    @api
    async def support_zip(request: Request):
        folder = Path(tempfile.mkdtemp(dir=session.workdir, prefix="support-"))
        try:
            await call(session.export_support, folder / "support")
            buffer = _io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted((folder / "support").rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(folder).as_posix())
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return attachment(buffer.getvalue(), "support.zip")

    routes = [
        Route("/", index),
        Route("/api/state", get_state),
        Route("/api/support", add_support, methods=["POST"]),
        Route("/api/support/{example:int}", remove_example, methods=["DELETE"]),
        Route("/api/support.zip", support_zip),
        Route("/api/queries", add_queries, methods=["POST"]),
        Route("/api/queries/{query:int}", remove_query, methods=["DELETE"]),
        Route("/api/queries/{query:int}/view", view),
        Route("/api/queries/{query:int}/edits", set_edits, methods=["POST"]),
        Route("/api/queries/{query:int}/add", add_correction, methods=["POST"]),
        Route("/api/queries/{query:int}/mask", download(session.mask_file)),
        Route("/api/queries/{query:int}/probabilities", download(session.probability_file)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(GZipMiddleware, minimum_size=2048)])


async def json_body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise AppError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise AppError("the request body must be a JSON object")
    return body


def attachment(data: bytes, name: str) -> Response:
    return Response(
        data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{name}"', **NO_STORE},
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror or err} (choose another --port)") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def serve(session: Session, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Serve the app on a bound socket until interrupted (Ctrl+C)."""
    import uvicorn

    config = uvicorn.Config(create_app(session), log_level=log_level, access_log=False, timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
