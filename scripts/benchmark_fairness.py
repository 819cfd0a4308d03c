#!/usr/bin/env python3
"""One greedy client against the others: does the per-client cap (MAX_CONNECTIONS_PER_CLIENT) keep the
others served while one client opens every WebSocket it can?

    python scripts/benchmark_fairness.py [--greedy 64] [--others 4] [--caps 0,16] [--json PATH]

From the repository root. For each cap (0: none), a fresh server (default settings, 127.0.0.1 as a trusted
proxy so that X-Forwarded-For names each client, idle timeout 300 s), then:
1. baseline: --others clients (one address each) stream one clip each in stream mode, in real time, together;
2. the greedy client (another address) opens --greedy `/ws?mode=continuous` connections at once and holds
   them, sending nothing (as the issue's client that kept its slots with empty frames did): admitted and
   refused are counted;
3. the same others stream the same clips again while the greedy client holds what it got.
Figures: the greedy client's connections admitted / refused, and per phase the others' streams answered and
the median / slowest time from opening to the final answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (  # noqa: E402
    Server, default_manifest, describe_backend, ct2_backend, log, machine, med, model_path, one_per_language,
    read_manifest, split_frames, stop_on_sigterm, stream, table, to_webm, write_json,
)

from websockets.asyncio.client import connect  # noqa: E402

GREEDY = "203.0.113.7"


def other(number: int) -> str:
    return f"198.51.100.{number + 1}"


async def hold_many(url: str, count: int) -> tuple[list, int]:
    """Open `count` connections as the greedy client; keep the admitted ones open. Returns (open, refused)."""

    async def one():
        try:
            ws = await connect(url, open_timeout=30, additional_headers={"X-Forwarded-For": GREEDY})
        except Exception:  # noqa: BLE001 (refused at the handshake)
            return None
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), 3))
        except asyncio.TimeoutError:
            return ws  # admitted: a continuous call waits for its audio
        except Exception:  # noqa: BLE001 (closed)
            message = {}
        await ws.close()
        return None if message.get("status") == "error" else ws

    results = await asyncio.gather(*(one() for _ in range(count)))
    held = [ws for ws in results if ws is not None]
    return held, count - len(held)


async def others_phase(url: str, items: list[tuple[bytes, float]]) -> list[float | None]:
    """Each other client streams its clip in real time; the seconds from opening to its final (None: none)."""

    async def one(number: int, data: bytes, seconds: float) -> float | None:
        out = await stream(url + "?mode=stream", split_frames(data, seconds), until_answer=True, answer_timeout=60,
                           additional_headers={"X-Forwarded-For": other(number)})
        answer = out.answer
        if answer is None or answer[1].get("status") != "success" or out.opened is None:
            return None
        return answer[0] - out.opened

    return await asyncio.gather(*(one(n, data, seconds) for n, (data, seconds) in enumerate(items)))


def summary(times: list[float | None]) -> tuple[str, str, str]:
    answered = [t for t in times if t is not None]
    return (f"{len(answered)}/{len(times)}", f"{med(answered):.2f} s" if answered else "-",
            f"{max(answered):.2f} s" if answered else "-")


async def run_cap(cap: int, greedy: int, items: list[tuple[bytes, float]]) -> dict:
    env = {"MAX_CONNECTIONS_PER_CLIENT": str(cap), "TRUSTED_PROXIES": "127.0.0.1", "IDLE_TIMEOUT_SECONDS": "300"}
    with Server(env, name=f"fairness-{cap}", engine_env=False).start() as server:
        server.wait_ready()
        url = server.ws + "/ws"
        baseline = await others_phase(url, items)
        held, refused = await hold_many(url + "?mode=continuous", greedy)
        await asyncio.sleep(1)
        metrics = server.metrics()
        under = await others_phase(url, items)
        for ws in held:
            await ws.close()
    return {"cap": cap, "greedy_admitted": len(held), "greedy_refused": refused, "live_streams_held": metrics["live_streams"],
            "baseline": baseline, "under_greedy": under}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--greedy", type=int, default=64, help="connections the greedy client opens")
    parser.add_argument("--others", type=int, default=4, help="other clients, one clip each")
    parser.add_argument("--caps", default="0,16", help="MAX_CONNECTIONS_PER_CLIENT values to compare (0: none)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    stop_on_sigterm()
    clips = one_per_language(read_manifest(default_manifest(), "benchmark_fairness"))[: args.others]
    items = [to_webm(clip.path) for clip in clips]
    info = machine()
    print(f"Machine: {info}; {describe_backend(ct2_backend(model_path()))}", flush=True)
    results = []
    for cap in (int(value) for value in args.caps.split(",")):
        log(f"cap {cap}: starting")
        results.append(asyncio.run(run_cap(cap, args.greedy, items)))
    rows = []
    for result in results:
        rows.append([result["cap"] or "none", f"{result['greedy_admitted']} / {result['greedy_refused']}",
                     result["live_streams_held"], *summary(result["baseline"]), *summary(result["under_greedy"])])
    print(table(["MAX_CONNECTIONS_PER_CLIENT", "greedy admitted / refused", "live streams held",
                 "others answered (alone)", "median", "slowest",
                 "others answered (greedy holding)", "median", "slowest"], rows))
    if args.json:
        write_json(args.json, {"machine": info, "results": results})


if __name__ == "__main__":
    main()
