"""Load generator for ``divrec serve``: p50/p99 latency and requests/s of POST /recommend at a given concurrency.

Closed loop: ``--concurrency`` asyncio workers, each sending its next request when the previous one is answered,
until ``--requests`` were sent or ``--duration`` seconds passed (whichever is first). The first ``--warmup``
requests are not counted. With ``--reload-at S`` one worker calls POST /reload after S seconds while the others
keep going: the report then counts the requests answered by each model version, and any error or dropped
request (a transport error or timeout: no HTTP answer at all).

    divrec serve ckpt_path=outputs/train/runs/<time>/checkpoints/best.ckpt port=8000 &
    python experiments/serving/load_test.py --concurrency 8 --duration 20
    python experiments/serving/load_test.py --concurrency 64 --duration 20 --reload-at 10 --out c64.json

The requests go over bare keep-alive HTTP/1.1 connections (``--client raw``, one per worker): httpx's client costs
about 3 ms of CPU per request, more than the server it measures, so on a 2-core machine it caps the rate near
200 req/s (``--client httpx`` to compare); /health and /reload use httpx. The generator still shares the CPUs
with the server: pin them apart (``taskset -c 0`` for the server, ``taskset -c 1`` here) and read the server's
own ``divrec_request_latency_seconds`` histogram (GET /metrics) next to these client-side numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

JSON = {"content-type": "application/json"}


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, answered 200s after the warm-up
    statuses: Counter = field(default_factory=Counter)  # every answered request, warm-up included
    models: Counter = field(default_factory=Counter)  # the "model" of each 200
    dropped: int = 0  # no HTTP answer (connection error, timeout)
    sent: int = 0
    reload: dict | None = None


def bodies(args: argparse.Namespace) -> list[bytes]:
    """Pre-encoded request bodies (so the generator spends no time on JSON): random histories of raw item ids
    ``1..n_items`` or, with ``--users``, user requests."""
    rng = random.Random(args.seed)
    if args.users:
        return [json.dumps({"user": str(rng.randint(1, args.users)), "k": args.k}).encode() for _ in range(1000)]
    out = []
    for _ in range(1000):
        history = [str(rng.randint(1, args.n_items)) for _ in range(rng.randint(1, args.history_len))]
        out.append(json.dumps({"history": history, "k": args.k}).encode())
    return out


class RawConnection:
    """A bare HTTP/1.1 keep-alive connection: ~20x less client CPU per request than httpx, which on a 2-core machine
    would otherwise spend more CPU than the server it measures."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = f"POST /recommend HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def connect(self) -> None:
        self.streams = await asyncio.open_connection(self.host, self.port)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        if self.streams is None:  # (re)connect after the server closed the connection
            await self.connect()
        assert self.streams is not None
        reader, writer = self.streams
        try:
            writer.write(f"{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            head = await reader.readuntil(b"\r\n\r\n")
            status, length, close = int(head[9:12]), 0, False
            for line in head.lower().split(b"\r\n")[1:]:
                if line.startswith(b"content-length:"):
                    length = int(line[15:])
                elif line.startswith(b"connection:") and b"close" in line:
                    close = True
            payload = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def worker(client: httpx.AsyncClient, raw: RawConnection | None, payloads: list[bytes], tally: Tally,
                 args: argparse.Namespace, deadline: float) -> None:
    """Send requests one after the other (over ``raw``, else ``client``) until the budget or the time is spent."""
    rng = random.Random()
    while tally.sent < args.requests + args.warmup and time.perf_counter() < deadline:
        tally.sent += 1
        counted = tally.sent > args.warmup
        body = rng.choice(payloads)
        start = time.perf_counter()
        try:
            if raw is not None:
                status, payload = await raw.post(body)
            else:
                reply = await client.post("/recommend", content=body, headers=JSON)
                status, payload = reply.status_code, reply.content
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError):
            tally.dropped += 1
            continue
        elapsed = time.perf_counter() - start
        tally.statuses[status] += 1
        if status == 200:
            tally.models[json.loads(payload)["model"]] += 1
            if counted:
                tally.latencies.append(elapsed)
    if raw is not None:
        raw.close()


async def reloader(client: httpx.AsyncClient, tally: Tally, args: argparse.Namespace) -> None:
    await asyncio.sleep(args.reload_at)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    body = {"ckpt_path": args.reload_path} if args.reload_path else None
    start = time.perf_counter()
    try:
        reply = await client.post("/reload", json=body, headers=headers, timeout=120)
        tally.reload = {"status": reply.status_code, "body": reply.json(), "seconds": time.perf_counter() - start}
    except httpx.HTTPError as err:
        tally.reload = {"status": None, "body": repr(err), "seconds": time.perf_counter() - start}


async def run(args: argparse.Namespace) -> tuple[Tally, float]:
    payloads = bodies(args)
    limits = httpx.Limits(max_connections=args.concurrency + 1, max_keepalive_connections=args.concurrency + 1)
    tally = Tally()
    async with httpx.AsyncClient(base_url=args.url, limits=limits, timeout=args.timeout) as client:
        (await client.get("/health")).raise_for_status()
        raws = [RawConnection(args.url) if args.client == "raw" else None for _ in range(args.concurrency)]
        await asyncio.gather(*(raw.connect() for raw in raws if raw is not None))  # no handshakes in the timings
        start = time.perf_counter()
        tasks = [worker(client, raw, payloads, tally, args, start + args.duration) for raw in raws]
        if args.reload_at is not None:
            tasks.append(reloader(client, tally, args))
        await asyncio.gather(*tasks)
        return tally, time.perf_counter() - start


def report(tally: Tally, wall: float, args: argparse.Namespace) -> dict:
    lat = np.asarray(tally.latencies) * 1e3
    errors = sum(n for status, n in tally.statuses.items() if status != 200)
    percentiles = {f"p{q}_ms": float(np.percentile(lat, q)) if len(lat) else None for q in (50, 90, 99)}
    return {
        "url": args.url, "concurrency": args.concurrency, "wall_s": wall, "sent": tally.sent,
        "ok": tally.statuses.get(200, 0), "errors": errors, "dropped": tally.dropped,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "requests_per_s": sum(tally.statuses.values()) / wall if wall else None, **percentiles,
        "max_ms": float(lat.max()) if len(lat) else None, "models": dict(tally.models), "reload": tally.reload,
        "settings": {k: v for k, v in vars(args).items() if k != "token"},
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="raw: bare keep-alive HTTP/1.1 over asyncio streams (cheap); httpx: httpx.AsyncClient")
    parser.add_argument("--requests", type=int, default=20000, help="at most this many (after the warm-up)")
    parser.add_argument("--duration", type=float, default=10.0, help="at most this many seconds")
    parser.add_argument("--warmup", type=int, default=50, help="first requests left out of the latencies")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--n-items", type=int, default=1682, help="histories draw raw ids 1..N (ml-100k: 1682)")
    parser.add_argument("--history-len", type=int, default=50, help="history lengths drawn from 1..this")
    parser.add_argument("--users", type=int, default=0, help="N > 0: user requests for raw ids 1..N instead")
    parser.add_argument("--reload-at", type=float, default=None, help="POST /reload after this many seconds")
    parser.add_argument("--reload-path", default=None, help="checkpoint to reload (default: the server's own)")
    parser.add_argument("--token", default=None, help="bearer token for /reload (the server's DIVREC_SERVE_TOKEN)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a request counts as dropped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the report here (JSON)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    tally, wall = asyncio.run(run(args))
    result = report(tally, wall, args)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    failed = result["errors"] or result["dropped"] or (tally.reload is not None and tally.reload["status"] != 200)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
