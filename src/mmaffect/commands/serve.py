"""``mmaffect serve``: the analysis web page and JSON API (see :mod:`mmaffect.serve`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mmaffect.errors import ConfigError, DataError


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve", help="a web page and JSON API: upload a recording or paste a transcript, get emotion per utterance",
        description="Serve a page where a person uploads a video/audio recording or pastes a dialogue transcript "
                    "and gets the emotion of each utterance, a timeline of class probabilities, what each "
                    "modality contributed, and a JSON download. The JSON API (POST /api/jobs, GET "
                    "/api/jobs/ID) is documented at /docs. Needs the serve extra: pip install 'mmaffect[serve]'.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine "
                                                       "only; any other address needs --token)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", help="analysis model for recordings (default: the model of "
                                   "`mmaffect train-analysis-model` when it exists, else the shipped one)")
    p.add_argument("--text-model", help="text model (checkpoint or run folder) for pasted transcripts (default: "
                                        "the shipped pretrained:text-iemocap6)")
    p.add_argument("--token", help="required as 'Authorization: Bearer TOKEN' (default: $MMAFFECT_SERVE_TOKEN); "
                                   "open the page as http://HOST:PORT/#token=TOKEN")
    p.add_argument("--workers", type=int, default=1, help="analyses run at the same time (default 1; each loads "
                                                          "its own copy of the models)")
    p.add_argument("--queue", type=int, default=8, help="jobs that may wait for a worker (default 8; more get 503)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload (default 200)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="longest recording (default 600)")
    p.add_argument("--max-text-chars", type=int, default=20000, help="longest transcript (default 20000)")
    p.add_argument("--retention", type=float, default=3600.0, help="seconds a finished job's result is kept "
                                                                  "(default 3600); uploads go when analysed")
    p.add_argument("--storage", help="folder for uploads (default: a new temporary folder)")
    p.add_argument("--asr-model", help="Whisper model name or folder (default: packaged tiny.en)")
    return p


def _path(value: str | None, option: str) -> Path | None:
    if value is None:
        return None
    if value.startswith(("pretrained:", "hf:")):
        from mmaffect.pretrained import resolve

        return resolve(value)  # the model's folder, its files checked against its card
    path = Path(value)
    if not path.exists():
        raise DataError(path, f"{option}: no such file or folder")
    return path


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from mmaffect.serve.app import create_app
    except ImportError as exc:
        raise ConfigError(f"serve needs the serve extra ({exc.name} is missing): pip install 'mmaffect[serve]'") \
            from None
    from mmaffect.commands.analyze import default_model
    from mmaffect.io import check_output_dir
    from mmaffect.serve.settings import ServeSettings, check_bind

    token = args.token or os.environ.get("MMAFFECT_SERVE_TOKEN") or None
    check_bind(args.host, token)
    model = _path(args.model, "--model")
    if model is None and default_model().exists():
        model = default_model()
    text_model = _path(args.text_model, "--text-model")
    if text_model is None:
        from mmaffect.pretrained import location

        try:
            text_model = location("text-iemocap6")
        except DataError:  # not shipped in this installation: transcripts are refused with a message
            text_model = None
    storage = check_output_dir(args.storage, "--storage folder") if args.storage else None
    settings = ServeSettings(model=model, text_model=text_model, storage=storage,
                             max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds,
                             max_text_chars=args.max_text_chars, retention_seconds=args.retention,
                             workers=args.workers, queue_size=args.queue, token=token, asr_model=args.asr_model)
    print(f"loading models ({settings.workers} worker(s)): recordings {settings.model or '-'}, "
          f"transcripts {settings.text_model or '-'}", flush=True)
    app = create_app(settings)
    print(f"serving on http://{args.host}:{args.port}/ (API docs at /docs); uploads in {settings.storage}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
