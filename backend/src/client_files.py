"""The browser client library served for pages to import: /client/langshazam.js and its TypeScript
declaration /client/langshazam.d.ts (the source is the project's top-level client/ folder; an installed
package holds the two files in client_lib/, see pyproject.toml).

Only those two files are served, each with its own media type (Python's mimetypes takes `.ts` for an
MPEG transport stream). Pages on other origins may import the module when CORS_ORIGINS lists them (the
CORS middleware answers for these files as for every route)."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

_INSTALLED = Path(__file__).resolve().parent / "client_lib"
CLIENT_DIR = _INSTALLED if (_INSTALLED / "langshazam.js").is_file() else Path(__file__).resolve().parents[2] / "client"
MEDIA_TYPES = {
    "langshazam.js": "text/javascript; charset=utf-8",
    "langshazam.d.ts": "application/typescript; charset=utf-8",
}


class ClientFiles(StaticFiles):
    def __init__(self, directory: Path = CLIENT_DIR) -> None:
        super().__init__(directory=directory, check_dir=False)

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if path not in MEDIA_TYPES:
            return "", None
        return super().lookup_path(path)

    def file_response(self, full_path, stat_result: os.stat_result, scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["content-type"] = MEDIA_TYPES[os.path.basename(full_path)]
        return response
