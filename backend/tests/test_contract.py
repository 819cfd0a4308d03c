"""The documents say what the server does: Schemathesis (`--checks all`) against the OpenAPI document of a
real server, once without API_KEY and once with one; the AsyncAPI document through the AsyncAPI parser.

Schemathesis runs as its command line in a subprocess, bounded (a few examples per operation, a fixed seed,
a timeout per request and for the run), with what the document cannot say in `schemathesis.toml` beside
this file. The AsyncAPI parser is the npm package pinned in `asyncapi_parser/package-lock.json`
(`scripts/test.sh` installs it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import yaml

from conftest import BACKEND_DIR, Server, start_server

TESTS_DIR = Path(__file__).resolve().parent
SCHEMATHESIS_CONFIG = TESTS_DIR / "schemathesis.toml"
PARSER_DIR = TESTS_DIR / "asyncapi_parser"
ASYNCAPI = BACKEND_DIR / "src" / "asyncapi.yaml"
KEY = "contract-test-key"
MAX_EXAMPLES = 10  # per operation and phase: a run is ~350 requests, about 30 s on 2 cores
RUN_TIMEOUT = 240


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, model_cache) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("keyed"), model_cache, {"API_KEY": KEY})
    yield srv
    srv.stop()


def schemathesis(srv: Server, workdir: Path, key: str | None = None) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(SCHEMATHESIS_CONFIG),
               "--no-color", "run", srv.http + "/openapi.json", "--checks", "all",
               "--max-examples", str(MAX_EXAMPLES), "--seed", "29", "--workers", "1", "--request-timeout", "30"]
    if key:
        command += ["--header", f"Authorization: Bearer {key}"]
    # in a folder of its own: Hypothesis keeps its example database in the working directory
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT)


def assert_clean(run: subprocess.CompletedProcess, srv: Server) -> None:
    summary = run.stdout[run.stdout.rfind("SUMMARY"):]
    assert run.returncode == 0, f"{run.stdout[-6000:]}\n{run.stderr[-2000:]}\nserver log:\n{srv.log()[-3000:]}"
    assert " passed" in summary and "failure" not in summary, summary  # exit 0 is no failure and no error
    assert srv.process.poll() is None  # and it still serves


def test_schemathesis_without_a_key(server, tmp_path):
    assert_clean(schemathesis(server, tmp_path), server)


def test_schemathesis_with_a_key(keyed, tmp_path):
    assert_clean(schemathesis(keyed, tmp_path, KEY), keyed)


def test_security_only_where_a_key_is_set(server, keyed):
    open_spec = server.get("/openapi.json").json()
    guarded_spec = keyed.get("/openapi.json").json()
    assert "securitySchemes" not in open_spec.get("components", {})
    scheme = guarded_spec["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, method, error in [("/languages", "get", "ErrorAnswer"), ("/metrics", "get", "ErrorAnswer"),
                                ("/metrics/prometheus", "get", "ErrorAnswer"), ("/detect", "post", "ErrorAnswer"),
                                ("/v1/models", "get", "ErrorResponse"),
                                ("/v1/audio/transcriptions", "post", "ErrorResponse")]:
        assert "security" not in open_spec["paths"][path][method] and "401" not in open_spec["paths"][path][method]["responses"]
        operation = guarded_spec["paths"][path][method]
        assert operation["security"] == [{"apiKey": []}], path
        schema = operation["responses"]["401"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{error}"}, path
        # and the server does answer 401, in that shape
        answer = httpx.request(method, keyed.http + path, timeout=30)
        assert answer.status_code == 401, (path, answer.text)
        assert ("error" in answer.json()) == (error == "ErrorResponse"), answer.text
    for path in ("/", "/ready"):
        assert "security" not in guarded_spec["paths"][path]["get"]


def test_media_types_and_methods_as_served(server):
    spec = server.get("/openapi.json").json()
    prometheus = spec["paths"]["/metrics/prometheus"]["get"]["responses"]["200"]["content"]
    assert list(prometheus) == ["text/plain"]
    assert server.get("/metrics/prometheus").headers["content-type"].startswith("text/plain")
    assert set(spec["paths"]["/ready"]["get"]["responses"]) == {"200", "503"}
    form = spec["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]["multipart/form-data"]
    fields = spec["components"]["schemas"][form["schema"]["$ref"].split("/")[-1]]["properties"]
    assert fields["timestamp_granularities[]"]["items"]["enum"] == ["segment", "word"]
    assert not [name for name, field in fields.items() if {"type": "null"} in field.get("anyOf", [])]  # a form has no null
    for method, path, allowed in [("PUT", "/v1/audio/transcriptions", "POST"), ("PUT", "/v1/models", "GET"),
                                  ("DELETE", "/v1/models/whisper-1", "GET"), ("PUT", "/detect", "POST")]:
        answer = httpx.request(method, server.http + path, timeout=30)
        assert answer.status_code == 405 and answer.headers["allow"] == allowed, (method, path, answer.text)
    unknown = httpx.put(server.http + "/v1/audio/speech", timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


def asyncapi_diagnostics(document: Path) -> tuple[int, list[dict]]:
    node = shutil.which("node")
    assert node, "the AsyncAPI check needs Node.js (npm, as for the React example: see scripts/test.sh)"
    assert (PARSER_DIR / "node_modules" / "@asyncapi" / "parser").is_dir(), (
        f"run `npm ci` in {PARSER_DIR} (scripts/test.sh does)")
    run = subprocess.run([node, "validate.mjs", str(document)], cwd=PARSER_DIR, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode in (0, 1), run.stderr
    return run.returncode, [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def test_asyncapi_document_validates():
    code, diagnostics = asyncapi_diagnostics(ASYNCAPI)
    problems = [d for d in diagnostics if d["severity"] <= 1]  # errors and warnings
    assert code == 0 and not problems, problems


def test_asyncapi_parser_finds_a_broken_document(tmp_path):
    """The check can fail: the same document with a message its channel refers to taken out."""
    document = yaml.safe_load(ASYNCAPI.read_text())
    del document["components"]["messages"]["partial"]
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(yaml.safe_dump(document, sort_keys=False))
    code, diagnostics = asyncapi_diagnostics(broken)
    assert code == 1 and any(d["severity"] == 0 and "partial" in d["message"] for d in diagnostics), diagnostics
