"""/docs works offline and tells the truth: the OpenAPI document declares what the server really takes and
answers, Swagger UI renders from the server's own files in a real Chromium cut off from the network, and
the WebSocket protocol has its AsyncAPI document."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import yaml

from audio_tools import SPANISH_CLIP, clip, share_heard
from browser_tools import chromium, console_log, require_chromium


def wait_for(driver, selector: str, timeout: float = 10):
    """The first element matching a CSS selector, once it is there."""
    deadline = time.monotonic() + timeout
    while True:
        found = driver.find_elements("css selector", selector)
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {selector} after {timeout} s\n{console_log(driver)}")
        time.sleep(0.1)


def test_openapi_declares_bodies_and_real_answers(server):
    spec = server.get("/openapi.json").json()
    assert "/asyncapi.yaml" in spec["info"]["description"]  # the WebSocket is documented from /docs

    detect = spec["paths"]["/detect"]["post"]
    body = detect["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["file"] == {"type": "string", "format": "binary"}
    assert body["application/octet-stream"]["schema"]["format"] == "binary"
    assert detect["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Answer"}
    for status in ("400", "413", "422", "503"):  # errors as the server sends them, not FastAPI's 422 shape
        assert detect["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorAnswer"
        }, status
    assert "HTTPValidationError" not in spec["components"]["schemas"]

    transcriptions = spec["paths"]["/v1/audio/transcriptions"]["post"]
    form = transcriptions["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].split("/")[-1]
    fields = spec["components"]["schemas"][form]["properties"]
    assert {"file", "model", "language", "prompt", "response_format", "temperature",
            "timestamp_granularities[]"} <= set(fields)
    assert fields["file"].get("format") == "binary" or fields["file"].get("contentMediaType") == "application/octet-stream"
    for status in ("400", "404", "413", "503"):  # 401 only with API_KEY set: test_contract.py
        schema = transcriptions["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, status
    assert {"/v1/models", "/v1/models/{model_id}", "/languages", "/metrics"} <= set(spec["paths"])


def test_metrics_schema_matches_the_answer(server):
    spec = server.get("/openapi.json").json()
    schema = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    declared = spec["components"]["schemas"][schema["$ref"].split("/")[-1]]["properties"]
    assert set(server.metrics()) == set(declared)


def test_asyncapi_document(server):
    response = server.get("/asyncapi.yaml")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/yaml")
    document = yaml.safe_load(response.text)
    assert document["asyncapi"].startswith("3.")
    assert document["channels"]["ws"]["address"] == "/ws"
    assert set(document["components"]["messages"]) == {"audio", "start", "stop", "success", "partial", "error",
                                                       "realtimeClientEvent", "realtimeServerEvent"}
    assert document["channels"]["realtime"]["address"] == "/v1/realtime"
    query = document["channels"]["ws"]["bindings"]["ws"]["query"]["properties"]
    assert {"mode", "languages", "top_k", "format", "sample_rate", "token"} <= set(query)


def test_docs_render_offline_in_chromium(server, tmp_path):
    """Chromium can resolve no host but 127.0.0.1: any asset from a CDN would fail to load."""
    require_chromium()
    page = server.get("/docs").text
    assert "cdn" not in page.lower() and "https://" not in page
    offline = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=127.0.0.1:9",
               "--proxy-bypass-list=127.0.0.1")
    with chromium(tmp_path / "profile", extra_args=offline) as driver:
        driver.get(server.http + "/docs")
        deadline = time.monotonic() + 30
        operations: list[str] = []
        while time.monotonic() < deadline:
            operations = driver.execute_script(
                "return [...document.querySelectorAll('.opblock-summary-path')].map(e => e.textContent.trim())"
            )
            if len(operations) >= 8:
                break
            time.sleep(0.2)
        assert {"/detect", "/v1/audio/transcriptions", "/v1/models", "/languages", "/metrics"} <= set(
            operations
        ), f"operations rendered: {operations}\n{console_log(driver)}"
        assert "LangShazam" in driver.find_element("css selector", ".info .title").text

        # "Try it out" uploads a real clip and shows the server's answer, on /detect and on /v1
        for operation, check in [
            ("default-detect_detect_post", lambda answer: answer["data"]["language"] == "es"),
            ("OpenAI-compatible-create_transcription_v1_audio_transcriptions_post",
             lambda answer: share_heard(answer["text"]) >= 0.5),
        ]:
            block = f"#operations-{operation}"
            driver.execute_script(f"document.querySelector('{block} .opblock-summary-control').click()")
            wait_for(driver, f"{block} .try-out__btn").click()
            wait_for(driver, f"{block} input[type=file]").send_keys(str(clip(SPANISH_CLIP).path))
            wait_for(driver, f"{block} .execute").click()
            status = wait_for(driver, f"{block} .live-responses-table .response .response-col_status", timeout=60)
            body = driver.find_element("css selector", f"{block} .live-responses-table .response .microlight").text
            assert status.text.strip() == "200", body
            assert check(json.loads(body)), body

        loaded = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(urlsplit(url).hostname == "127.0.0.1" for url in loaded), loaded
        assert any(url.endswith("/docs-assets/swagger-ui-bundle.js") for url in loaded), loaded
