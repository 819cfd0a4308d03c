"""An OpenAI-compatible HTTP server for tests, on 127.0.0.1: serves /v1/audio/transcriptions the way
the OpenAI API does (whisper-1: verbose_json with `language`; gpt-transcribe: json with `languages`), or
fails the way it can (status codes, slowness), as a test asks."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    language: str = "english"  # what whisper-1 answers
    languages: list[str] = field(default_factory=lambda: ["en"])  # what gpt-transcribe answers
    delay: float = 0.0
    headers: dict = field(default_factory=dict)


@dataclass
class Request:
    path: str
    headers: dict
    body: bytes

    def form_value(self, name: str) -> str | None:
        marker = f'name="{name}"'.encode()
        at = self.body.find(marker)
        if at < 0:
            return None
        start = self.body.find(b"\r\n\r\n", at) + 4
        end = self.body.find(b"\r\n--", start)
        return self.body[start:end].decode(errors="replace")

    def form_values(self, name: str) -> list[str]:
        """Every value of a repeated form field (the SDK sends a list as `name[]`, once per item)."""
        values, at = [], 0
        marker = f'name="{name}"'.encode()
        while (at := self.body.find(marker, at)) >= 0:
            start = self.body.find(b"\r\n\r\n", at) + 4
            end = self.body.find(b"\r\n--", start)
            values.append(self.body[start:end].decode(errors="replace"))
            at = end
        return values

    def file_bytes(self) -> bytes:
        at = self.body.find(b'name="file"')
        start = self.body.find(b"\r\n\r\n", at) + 4
        end = self.body.find(b"\r\n--", start)
        return self.body[start:end]


class FakeOpenAI:
    def __init__(self) -> None:
        self.replies: list[Reply] = []  # consumed in order; the last one repeats
        self.requests: list[Request] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                reply = fake.replies.pop(0) if len(fake.replies) > 1 else (fake.replies or [Reply()])[0]
                time.sleep(reply.delay)
                if self.path != "/v1/audio/transcriptions":
                    payload = {"error": {"message": "not found", "type": "invalid_request_error"}}
                    status = 404
                elif reply.status == 200 and fake.requests[-1].form_value("model") != "whisper-1":
                    payload = {"text": "hello", "languages": [{"code": code} for code in reply.languages],
                               "usage": {"type": "duration", "seconds": 3}}
                    status = 200
                elif reply.status == 200:
                    payload = {"task": "transcribe", "language": reply.language, "duration": 3.0,
                               "text": "hello", "segments": []}
                    status = 200
                else:
                    payload = {"error": {"message": f"fake failure {reply.status}", "type": "server_error"}}
                    status = reply.status
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
