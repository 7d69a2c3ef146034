"""Server settings: models, limits, storage and access, with the checks done before anything starts."""

from __future__ import annotations

import ipaddress
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mmaffect.errors import ConfigError


@dataclass
class ServeSettings:
    """Everything ``mmaffect serve`` can be told; the defaults suit one person on a laptop.

    ``model``: an analysis model (``mmaffect analyze --checkpoint``) for uploaded video/audio;
    ``text_model``: a text model for pasted transcripts. Either may be absent (that input is then
    refused with a clear message); at least one is needed."""

    model: Path | None = None
    text_model: Path | None = None
    storage: Path | None = None  # uploads go here under random names (default: a fresh temporary folder)
    max_upload_mb: float = 200.0
    max_seconds: float = 600.0  # recording length
    max_text_chars: int = 20000
    retention_seconds: float = 3600.0  # uploads and finished jobs are forgotten this long after they end
    workers: int = 1  # analyses at the same time (each worker loads its own copy of the models)
    queue_size: int = 8  # jobs waiting beyond the running ones; more get 503
    token: str | None = None  # required as "Authorization: Bearer TOKEN" on /api when set
    asr_model: str | None = None

    def __post_init__(self) -> None:
        if self.model is None and self.text_model is None:
            raise ConfigError("serve needs --model (video/audio analysis) and/or --text-model (transcripts)")
        for name, value in (("--max-upload-mb", self.max_upload_mb), ("--max-seconds", self.max_seconds),
                            ("--retention", self.retention_seconds), ("--max-text-chars", self.max_text_chars),
                            ("--workers", self.workers)):
            if not value > 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.queue_size < 0:
            raise ConfigError(f"--queue must be 0 or more, got {self.queue_size}")
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("--token must be at least 16 characters (e.g. python -c 'import secrets; "
                              "print(secrets.token_urlsafe())')")
        self.storage = Path(self.storage) if self.storage else Path(tempfile.mkdtemp(prefix="mmaffect-serve-"))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def is_loopback(host: str) -> bool:
    """True when ``host`` only reaches this machine (127.0.0.0/8, ::1, or a name resolving only there)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        raise ConfigError(f"--host {host}: cannot resolve it ({exc})") from None
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token: uploads and results are personal data."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"--host {host} is reachable from other machines; set --token (or "
                          "MMAFFECT_SERVE_TOKEN) so only people who know it can use the server")
