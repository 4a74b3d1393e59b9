#!/usr/bin/python3
"""Streams completions with Python's httpx and aiohttp (Debian's packages), one
at a time, and prints one JSON line per request: the SSE data events it read,
the token chunks, the usage and the times (seconds since the request began).

  python_stream.py httpx|aiohttp BASE_URL MODEL REQUESTS.json

With KVLB_GATE=1 in the environment, every request after the first waits for a
line on stdin (the keep-alive test decides when the pooled connection is used
again). Each line names the replica that answered (X-Kvlb-Replica).

BASE_URL includes the API path (http://127.0.0.1:8000/v1); the key comes from
OPENAI_API_KEY. REQUESTS.json as for openai_sdk_stream.mjs.
"""

import asyncio
import json
import os
import sys
import time


def body(model, r):
    return {"model": model, "prompt": [1000 + k % 30000 for k in range(r["input_tokens"])],
            "max_tokens": r["output_tokens"], "min_tokens": r["output_tokens"],
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}


class Events:
    """SSE 'data:' lines -> token chunks, usage, [DONE]."""

    def __init__(self, t0):
        self.t0, self.first, self.chunks, self.usage, self.done = t0, -1.0, 0, None, False

    def line(self, line):
        if not line.startswith("data: "):
            return
        data = line[6:].strip()
        if data == "[DONE]":
            self.done = True
            return
        event = json.loads(data)
        if event.get("usage"):
            self.usage = event["usage"]
        if event.get("choices") and event["choices"][0].get("text"):
            if self.first < 0:
                self.first = time.monotonic() - self.t0
            self.chunks += 1


def report(i, r, ev, t0, status, replica=None, error=None):
    print(json.dumps({"i": i, "expected": r["output_tokens"], "chunks": ev.chunks,
                      "ttft": ev.first, "e2e": time.monotonic() - t0, "usage": ev.usage,
                      "done": ev.done, "status": status, "replica": replica,
                      "error": error}), flush=True)


def gate(i):
    if i > 0 and os.environ.get("KVLB_GATE") == "1":
        sys.stdin.readline()


async def agate(i):
    # The event loop keeps running while the gate waits, as in any asyncio
    # application: a pooled connection closed meanwhile is noticed then.
    if i > 0 and os.environ.get("KVLB_GATE") == "1":
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def run_httpx(base, model, reqs, headers):
    import httpx
    with httpx.Client(timeout=120, headers=headers) as client:
        for i, r in enumerate(reqs):
            gate(i)
            t0 = time.monotonic()
            ev = Events(t0)
            with client.stream("POST", base + "/completions", json=body(model, r)) as resp:
                for line in resp.iter_lines():
                    ev.line(line)
                report(i, r, ev, t0, resp.status_code, resp.headers.get("x-kvlb-replica"))


async def run_aiohttp(base, model, reqs, headers):
    import aiohttp
    async with aiohttp.ClientSession(headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=120)) as s:
        for i, r in enumerate(reqs):
            await agate(i)
            t0 = time.monotonic()
            ev = Events(t0)
            async with s.post(base + "/completions", json=body(model, r)) as resp:
                async for raw in resp.content:
                    ev.line(raw.decode())
                report(i, r, ev, t0, resp.status, resp.headers.get("x-kvlb-replica"))


def main():
    lib, base, model, path = sys.argv[1:5]
    with open(path) as f:
        reqs = json.load(f)
    key = os.environ.get("OPENAI_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if lib == "httpx":
        run_httpx(base, model, reqs, headers)
    else:
        asyncio.run(run_aiohttp(base, model, reqs, headers))


if __name__ == "__main__":
    main()
