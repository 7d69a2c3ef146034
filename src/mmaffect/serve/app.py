"""The FastAPI app of ``mmaffect serve``: one page, and a JSON API to start and follow analysis jobs.

``POST /api/jobs`` takes a recording (multipart field ``file``) or a transcript (JSON ``{"text": ...}``)
and answers ``202`` with the job id; ``GET /api/jobs/{id}`` gives its status, progress and, when done,
its result; ``GET /api/jobs/{id}/result.json`` downloads the result. The OpenAPI page is ``/docs``.

Bad input is refused with a 4xx and ``{"detail": "<a sentence>"}`` before any work is queued: a body
over the size limit (413, checked on the bytes received, not only on the declared length), a file
that does not decode as audio or video (415/422, see :mod:`mmaffect.serve.uploads`), a path-like file
name (400), a recording over the duration limit (413).
"""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile

from mmaffect.serve.engine import Engine
from mmaffect.serve.jobs import JobManager, QueueFull
from mmaffect.serve.settings import ServeSettings
from mmaffect.serve.uploads import UploadError, check_name, probe

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and headers around the file in a multipart body
CHUNK = 1024 * 1024


class JobCreated(BaseModel):
    id: str
    status: str
    url: str


class JobStatus(BaseModel):
    id: str
    kind: str
    name: str
    status: str  # queued | running | done | error
    stage: str
    progress: float
    queue_position: int | None
    created: float
    started: float | None
    finished: float | None
    elapsed: float
    error: str | None
    result: dict | None


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Pure ASGI middleware: refuse a request body over ``limit`` bytes with 413, whether the client
    declared its length or streams it chunked (counted as it arrives, before it is parsed or stored)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(send, self.limit)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        started = False

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched_send)
        except _TooLarge:
            if not started:
                await _too_large(send, self.limit)


async def _too_large(send, limit: int) -> None:
    response = JSONResponse({"detail": f"the upload is larger than this server's limit of "
                                       f"{(limit - MULTIPART_OVERHEAD) / 2**20:.1f} MB"}, status_code=413)
    await response({"type": "http"}, None, send)


def create_app(settings: ServeSettings, engines: list[Engine] | None = None) -> FastAPI:
    """The app. ``engines``: one per worker, already loaded (built from ``settings`` when omitted)."""
    if engines is None:
        engines = [Engine(settings.model, settings.text_model, settings.asr_model) for _ in range(settings.workers)]
    jobs = JobManager(engines, settings.storage, settings.queue_size, settings.retention_seconds)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        jobs.close()

    app = FastAPI(title="mmaffect", lifespan=lifespan,
                  description="Emotion per utterance in a recording or a transcript, with the part each "
                              "modality (text, audio, video) played. Start a job with POST /api/jobs, follow "
                              "it with GET /api/jobs/{id}.")
    app.state.jobs = jobs
    app.state.settings = settings
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + MULTIPART_OVERHEAD)

    def authorised(request: Request) -> None:
        if settings.token is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {settings.token}".encode()):
            raise HTTPException(401, "this server needs its token: send 'Authorization: Bearer TOKEN'",
                                headers={"WWW-Authenticate": "Bearer"})

    page = resources.files("mmaffect.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/api/config", dependencies=[Depends(authorised)])
    def config() -> dict:
        """What this server accepts: which inputs, and the limits."""
        return {"media": settings.model is not None, "text": settings.text_model is not None,
                "max_upload_mb": settings.max_upload_mb, "max_seconds": settings.max_seconds,
                "max_text_chars": settings.max_text_chars, "retention_seconds": settings.retention_seconds}

    @app.post("/api/jobs", status_code=202, response_model=JobCreated, dependencies=[Depends(authorised)],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                      "file": {"type": "string", "format": "binary",
                               "description": "a video or audio recording (checked by decoding it)"}}}},
                  "application/json": {"schema": {"type": "object", "required": ["text"], "properties": {
                      "text": {"type": "string", "description": "a dialogue transcript, one turn per line, "
                                                                "optionally 'Speaker: ...'"}}}}}}})
    async def create_job(request: Request) -> JobCreated:
        """Start analysing a recording or a transcript; answers the job id at once (the work is queued)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            job = await _media_job(request)
        elif kind == "application/json":
            job = await _text_job(request)
        else:
            raise HTTPException(415, "send multipart/form-data with the recording in the field 'file', or "
                                     "application/json with {\"text\": \"...\"}")
        return JobCreated(id=job.id, status=job.status, url=f"/api/jobs/{job.id}")

    async def _media_job(request: Request):
        if settings.model is None:
            raise HTTPException(400, "this server analyses transcripts only (started without --model)")
        async with request.form(max_files=1, max_fields=4) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise HTTPException(400, "no file: send the recording in the multipart field 'file'")
            try:
                name = check_name(upload.filename)
            except UploadError as exc:
                raise HTTPException(exc.status, exc.message) from None
            path = jobs.new_upload_path()
            try:
                await _store(upload, path)
                await run_in_threadpool(probe, path, settings.max_seconds)
            except UploadError as exc:
                path.unlink(missing_ok=True)
                raise HTTPException(exc.status, f"{name}: {exc.message}") from None
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        return _submit("media", name, path=path)

    async def _store(upload: UploadFile, path: Path) -> None:
        size = 0
        with open(path, "wb") as out:
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > settings.max_upload_bytes:
                    raise UploadError(413, f"larger than this server's limit of {settings.max_upload_mb:g} MB")
                out.write(chunk)

    async def _text_job(request: Request):
        if settings.text_model is None:
            raise HTTPException(400, "this server analyses recordings only (started without --text-model)")
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "the body is not valid JSON") from None
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise HTTPException(400, "send {\"text\": \"...\"} with a non-empty transcript")
        if len(text) > settings.max_text_chars:
            raise HTTPException(413, f"the transcript has {len(text)} characters; this server takes at most "
                                     f"{settings.max_text_chars}")
        return _submit("text", "transcript", text=text)

    def _submit(kind: str, name: str, **what):
        try:
            return jobs.submit(kind, name, **what)
        except QueueFull as exc:
            if what.get("path") is not None:
                what["path"].unlink(missing_ok=True)
            raise HTTPException(503, f"the server is busy: {exc}", headers={"Retry-After": "30"}) from None

    @app.get("/api/jobs/{job_id}", response_model=JobStatus, dependencies=[Depends(authorised)])
    def job_status(job_id: str) -> dict:
        """Status (queued, running, done, error), progress 0..1 with the current stage, and the result."""
        return _job(job_id)

    @app.get("/api/jobs/{job_id}/result.json", dependencies=[Depends(authorised)])
    def job_result(job_id: str) -> JSONResponse:
        """The result as a JSON file download (409 until the job is done)."""
        job = _job(job_id)
        if job["status"] != "done":
            raise HTTPException(409, f"job {job_id} is {job['status']}, not done")
        stem = Path(job["name"]).stem or "result"
        return JSONResponse(job["result"], headers={
            "Content-Disposition": f'attachment; filename="{_safe(stem)}.mmaffect.json"'})

    def _job(job_id: str) -> dict:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}: unknown, or its results were deleted after "
                                     f"{settings.retention_seconds:g} s")
        return job

    return app


def _safe(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:100]
