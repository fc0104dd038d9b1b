"""Load test of `edgespec serve`: N concurrent clients x M requests on loopback, then a report.

    PYTHONPATH=. python benchmarks/scripts/serve_load.py --clients 8 --requests 20 \
        --json benchmarks/serve-smollm2-135m.json --markdown benchmarks/serve.md

Starts its own server (free loopback port, --max-waiting W), runs the clients (mixed prompt
lengths; some streaming; some streaming clients hang up after a few tokens), samples the
server's RSS, then checks what the issue asks: no 5xx, every non-200 is an intended 429
(queue_full, Retry-After, counted by the server too), no session left behind, RSS bounded.
It always stops: each request has a timeout and the run a deadline. Exit code 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx  # the HTTP client the openai package brings
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.serve_util import health, running_server  # noqa: E402

MODEL = "smollm2-135m"
SHORT = "Name a colour."
PROSE = Path(__import__("pydoc_data.topics").topics.__file__).read_text(encoding="utf-8")[20_000:]


def prompt_for(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["short", "short", "medium", "long"])
    if kind == "short":
        return kind, SHORT
    start = rng.randrange(0, 100_000)
    chars = 600 if kind == "medium" else 2000  # ~150 / ~500 tokens
    return kind, f"Summarise this in one sentence:\n{PROSE[start:start + chars]}"


class Client(threading.Thread):
    def __init__(self, index: int, base: str, requests: int, seed: int, shared: dict):
        super().__init__(daemon=True)
        self.index, self.base, self.requests, self.rng = index, base, requests, random.Random(seed + index)
        self.shared, self.records = shared, []

    def run(self) -> None:
        with httpx.Client(timeout=600) as http:
            for _ in range(self.requests):
                self.one(http)

    def one(self, http: httpx.Client) -> None:
        kind, prompt = prompt_for(self.rng)
        stream = self.rng.random() < 0.5
        hang_up = stream and self.rng.random() < 0.3
        body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
                "max_tokens": 256 if hang_up else self.rng.choice([16, 32, 64]), "stream": stream,
                "stream_options": {"include_usage": True}}
        record = {"client": self.index, "prompt": kind, "stream": stream, "hang_up": hang_up, "status_429": 0}
        while True:  # retried after Retry-After while the server is full
            start = time.perf_counter()
            status, outcome = self.send(http, body, stream, hang_up, start)
            # a hung-up request stays in the server until its next pass notices: count it 2 s longer
            end = time.perf_counter() + (2.0 if outcome.get("hung_up") else 0.0)
            with self.shared["lock"]:
                self.shared["attempts"].append((start, end, status))
            if status != 429:
                break
            record["status_429"] += 1
            time.sleep(outcome["retry_after"])
        record.update(status=status, latency=time.perf_counter() - start, **outcome)
        self.records.append(record)

    def send(self, http, body, stream, hang_up, start) -> tuple[int, dict]:
        if not stream:
            r = http.post(f"{self.base}/v1/chat/completions", json=body)
            if r.status_code != 200:
                return r.status_code, _error_outcome(r)
            usage = r.json()["usage"]
            return 200, {"tokens": usage["completion_tokens"], "ttft": None}
        with http.stream("POST", f"{self.base}/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                r.read()
                return r.status_code, _error_outcome(r)
            ttft, tokens, pieces = None, 0, 0
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    return 500, {"error": chunk["error"]}
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    ttft = ttft or time.perf_counter() - start
                    pieces += 1
                    if hang_up and pieces >= 3:
                        return 200, {"tokens": pieces, "ttft": ttft, "hung_up": True}
            return 200, {"tokens": tokens, "ttft": ttft}


def _error_outcome(r: httpx.Response) -> dict:
    try:
        error = r.json()["error"]
    except (ValueError, KeyError):
        error = {"message": r.text[:200]}
    return {"error": error, "retry_after": float(r.headers.get("retry-after", "nan"))}


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def run(clients: int, requests: int, max_waiting: int, seed: int, extra_args: list[str]) -> dict:
    with running_server("--max-waiting", str(max_waiting), *extra_args, model=MODEL) as (base, proc):
        server = psutil.Process(proc.pid)
        rss_ready = server.memory_info().rss
        ready = health(base)[1]
        samples, stop = [], threading.Event()

        def sample() -> None:
            while not stop.wait(0.2):
                samples.append(server.memory_info().rss)

        shared = {"lock": threading.Lock(), "attempts": []}
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        threads = [Client(i, base, requests, seed, shared) for i in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=3600)
        wall = time.perf_counter() - start
        idle_deadline = time.monotonic() + 60
        while (after := health(base)[1])["queue"]["active"] or after["queue"]["waiting"]:
            if time.monotonic() > idle_deadline:
                break
            time.sleep(0.1)
        stop.set()
        rss_after = server.memory_info().rss
    records = [r for t in threads for r in t.records]
    return report(records, shared["attempts"], wall, ready, after, rss_ready, max(samples + [rss_ready]), rss_after,
                  clients, requests, max_waiting, extra_args, alive=[t.name for t in threads if t.is_alive()])


def overlapping(attempts: list[tuple], rejected: tuple) -> int:
    """Admitted requests in flight at some moment of a rejected one's life: the server held `capacity`
    requests when it refused, each of them in flight then, so this is at least `capacity` if the 429 was
    intended (the converse is not implied: the check can only catch 429s that were not)."""
    start, end, _ = rejected
    return sum(1 for s, e, status in attempts if status != 429 and s <= end and e >= start)


def report(records, attempts, wall, ready, after, rss_ready, rss_peak, rss_after, clients, requests, max_waiting,
           extra_args, alive) -> dict:
    ok = [r for r in records if r["status"] == 200]
    rejected = sum(r["status_429"] for r in records)
    at_429 = [overlapping(attempts, a) for a in attempts if a[2] == 429]
    ttft = [r["ttft"] for r in ok if r.get("ttft") is not None]
    tokens = sum(r["tokens"] for r in ok)
    queue = after["queue"]
    hung_up = sum(1 for r in ok if r.get("hung_up"))
    capacity = 1 + max_waiting
    checks = {
        "all clients finished": not alive and len(records) == clients * requests,
        "no 5xx and no error but 429": all(r["status"] == 200 for r in records),
        "every 429 said queue_full with Retry-After": all(r.get("retry_after", 1) >= 1 for r in records),
        "server counted the same 429s": queue["rejected"] == rejected,
        f"429 only with >= {capacity} admitted requests in flight": all(n >= capacity for n in at_429),
        "no session left (queue empty)": queue["active"] == 0 and queue["waiting"] == 0,
        "every admitted request completed or was cancelled":
            queue["completed"] + queue["cancelled"] == len(ok) and queue["failed"] == 0,
        "every hang-up cancelled its generation": queue["cancelled"] == hung_up,
        "RSS bounded (peak <= ready + 256 MB)": rss_peak <= rss_ready + 256 * 2**20,
    }
    from edgespec.sysinfo import machine_info

    return {
        "model": MODEL, "server": {k: ready[k] for k in ("backend", "spec", "context")},
        "clients": clients, "requests_per_client": requests, "max_waiting": max_waiting, "extra_args": extra_args,
        "requests": len(records), "ok": len(ok), "hung_up": hung_up, "status_429": rejected,
        "wall_s": round(wall, 1), "completion_tokens": tokens, "aggregate_tok_s": round(tokens / wall, 2),
        "ttft_s": {"n": len(ttft), "p50": round(percentile(ttft, 0.5), 3), "p95": round(percentile(ttft, 0.95), 3)},
        "latency_s": {"p50": round(percentile([r["latency"] for r in ok], 0.5), 3),
                      "p95": round(percentile([r["latency"] for r in ok], 0.95), 3)},
        "latency_by_prompt_s": {k: round(statistics.median([r["latency"] for r in ok if r["prompt"] == k]), 3)
                                for k in ("short", "medium", "long") if any(r["prompt"] == k for r in ok)},
        "rss_mb": {"ready": round(rss_ready / 2**20), "peak": round(rss_peak / 2**20),
                   "after": round(rss_after / 2**20)},
        "admitted_in_flight_at_429": {"min": min(at_429, default=None),
                                      "histogram": {n: at_429.count(n) for n in sorted(set(at_429))}},
        "server_counts": queue, "checks": checks, "machine": machine_info(0),
        "command": "python benchmarks/scripts/serve_load.py " + " ".join(sys.argv[1:]),
    }


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"### serve load: {r['clients']} clients x {r['requests_per_client']} requests, {r['model']} "
             f"({r['server']['backend']}, --spec {r['server']['spec']}), --max-waiting {r['max_waiting']}",
             "", f"Machine: {m.get('cpu')}, threads {m.get('threads')}; shared with other jobs while measured. "
                 f"Command: `{r['command']}`", "",
             "| requests | ok | hung up | 429s | tokens | wall s | aggregate tok/s | TTFT p50 / p95 s | "
             "latency p50 / p95 s | RSS ready / peak / after MB |", "|---|---|---|---|---|---|---|---|---|---|",
             f"| {r['requests']} | {r['ok']} | {r['hung_up']} | {r['status_429']} | {r['completion_tokens']} | "
             f"{r['wall_s']} | {r['aggregate_tok_s']} | {r['ttft_s']['p50']} / {r['ttft_s']['p95']} | "
             f"{r['latency_s']['p50']} / {r['latency_s']['p95']} | {r['rss_mb']['ready']} / {r['rss_mb']['peak']} / "
             f"{r['rss_mb']['after']} |", "", "Checks: " + ", ".join(
                 f"{name}: {'yes' if passed else 'NO'}" for name, passed in r["checks"].items())]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--max-waiting", type=int, default=4)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    parser.add_argument("server_args", nargs="*", help="extra `edgespec serve` flags (after --)")
    args = parser.parse_args()
    result = run(args.clients, args.requests, args.max_waiting, args.seed, args.server_args)
    text = markdown(result)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write(text + "\n\n")
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
