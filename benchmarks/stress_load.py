"""Mixed load generator for the stress suite (tests/hardening/test_stress.py, `make stress`):
runs in its own process against a running server and reports what it saw, so the test can
compare what the server acknowledged with what the database holds afterwards.

    python benchmarks/stress_load.py PLAN.json RESULT.json

PLAN: {"base": url, "seconds": n, "threads": n, "offering_ids": [...], "webhook_secret": s,
       "investors": [{"token": ..., "legal_name": ...}, ...], "seed": n}

Each thread loops until the deadline, picking by weight:
- browse (55%): the offerings list, one offering, its stats, anonymously or signed in;
- subscribe (25%): one of its investors subscribes for 1-3 units with a new Idempotency-Key;
  now and then (1 in 10) the same request is sent again and must replay the same subscription;
- fund (20%): one of the thread's reserved subscriptions is read, signed, funded and the
  simulated bank's signed confirmation posted (1 in 10 delivered twice, as providers do).

RESULT: per request kind the count, statuses and latencies; the subscriptions acknowledged
(201: id, key, investor), those confirmed funded, replays that did not match, transport errors.
Threads use plain `http.client` with a connection per request (gunicorn sync workers close
it anyway). Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import random
import statistics
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

WEIGHTS = (("browse", 55), ("subscribe", 25), ("fund", 20))


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Tally:
    """Everything one thread saw; merged at the end (no locks on the hot path)."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    acknowledged: list[dict[str, Any]] = field(default_factory=list)
    funded: list[int] = field(default_factory=list)
    replay_mismatches: list[str] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)


class Client:
    def __init__(self, base: str, tally: Tally) -> None:
        parsed = urlparse(base)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.tally = tally

    def call(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply | None:
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Content-Type": "application/json", **(headers or {})}
        started = time.perf_counter()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(method, f"/api/v1{path}", body=payload, headers=sent)
            response = connection.getresponse()
            data = response.read()
            reply_headers = {k.lower(): v for k, v in response.getheaders()}
        except (OSError, http.client.HTTPException) as error:
            self.tally.transport_errors.append(f"{kind} {method} {path}: {error!r}")
            return None
        finally:
            connection.close()
        self.tally.latencies[kind].append(time.perf_counter() - started)
        self.tally.statuses[kind][response.status] += 1
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data.decode(errors="replace")
        return Reply(response.status, parsed, reply_headers)


class Worker(threading.Thread):
    def __init__(self, number: int, plan: dict[str, Any], deadline: float) -> None:
        super().__init__(name=f"load-{number}")
        self.plan = plan
        self.deadline = deadline
        self.random = random.Random(plan.get("seed", 0) * 1_000 + number)
        self.tally = Tally()
        self.client = Client(plan["base"], self.tally)
        # Each thread has its own investors, so its subscriptions are its own to fund.
        self.investors = plan["investors"][number :: plan["threads"]]
        self.reserved: list[tuple[dict[str, Any], int]] = []

    def run(self) -> None:
        kinds = [kind for kind, _ in WEIGHTS]
        weights = [weight for _, weight in WEIGHTS]
        while time.monotonic() < self.deadline:
            kind = self.random.choices(kinds, weights)[0]
            if kind == "fund" and not self.reserved:
                kind = "subscribe"
            getattr(self, kind)()

    def _auth(self, investor: dict[str, Any]) -> dict[str, str]:
        return {"Authorization": f"Bearer {investor['token']}"}

    def browse(self) -> None:
        offering_id = self.random.choice(self.plan["offering_ids"])
        investor = self.random.choice(self.investors)
        headers = self._auth(investor) if self.random.random() < 0.5 else {}
        path = self.random.choice(
            ["/offerings", f"/offerings/{offering_id}", f"/offerings/{offering_id}/stats"]
        )
        self.client.call("browse", "GET", path, headers=headers)

    def subscribe(self) -> None:
        investor = self.random.choice(self.investors)
        offering_id = self.random.choice(self.plan["offering_ids"])
        key = f"stress-{uuid.uuid4().hex}"
        body = {"units": str(self.random.randint(1, 3))}
        headers = {**self._auth(investor), "Idempotency-Key": key}
        path = f"/offerings/{offering_id}/subscriptions"
        reply = self.client.call("subscribe", "POST", path, body=body, headers=headers)
        if reply is None or reply.status != 201:
            return
        subscription_id = int(reply.body["id"])
        self.tally.acknowledged.append(
            {"id": subscription_id, "key": key, "investor": investor["token"][:10]}
        )
        if reply.body["status"] == "reserved":
            self.reserved.append((investor, subscription_id))
        if self.random.random() < 0.1:
            again = self.client.call("subscribe", "POST", path, body=body, headers=headers)
            if again is not None and (
                again.status != 201 or again.body.get("id") != subscription_id
            ):
                self.tally.replay_mismatches.append(f"{key}: {again.status} {again.body}")

    def fund(self) -> None:
        investor, subscription_id = self.reserved.pop(self.random.randrange(len(self.reserved)))
        auth = self._auth(investor)
        base = f"/subscriptions/{subscription_id}"
        agreement = self.client.call("fund", "GET", f"{base}/agreement", headers=auth)
        if agreement is None or agreement.status != 200:
            return
        signature = {
            "typed_name": investor["legal_name"],
            "agreement_sha256": agreement.body["document_sha256"],
        }
        signed = self.client.call("fund", "POST", f"{base}/sign", body=signature, headers=auth)
        if signed is None or signed.status != 200:
            return
        payment = self.client.call("fund", "POST", f"{base}/fund", headers=auth)
        if payment is None or payment.status not in (200, 201):
            return
        deliveries = 2 if self.random.random() < 0.1 else 1
        event = self._confirmation(payment.body)
        for _ in range(deliveries):
            confirmed = self._deliver(event)
            if (
                confirmed is not None
                and confirmed.status == 200
                and not confirmed.body.get("duplicate")
            ):
                self.tally.funded.append(subscription_id)

    def _confirmation(self, payment: dict[str, Any]) -> bytes:
        event = {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "payment.confirmed",
            "data": {
                "reference": payment["reference"],
                "payer_account": "SIM-PAYER-0001",
                "amount": payment["amount_expected"],
            },
        }
        return json.dumps(event).encode()

    def _deliver(self, raw: bytes) -> Reply | None:
        timestamp = str(int(time.time()))
        digest = hmac.new(
            self.plan["webhook_secret"].encode(), timestamp.encode() + b"." + raw, hashlib.sha256
        ).hexdigest()
        headers = {"X-Payments-Timestamp": timestamp, "X-Payments-Signature": digest}
        return self.client.call("webhook", "POST", "/payments/webhook", raw=raw, headers=headers)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarize(tallies: list[Tally], seconds: float) -> dict[str, Any]:
    latencies: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    for tally in tallies:
        for kind, values in tally.latencies.items():
            latencies[kind].extend(values)
        for kind, counts in tally.statuses.items():
            statuses[kind].update(counts)
    every = [value for values in latencies.values() for value in values]
    per_kind = {
        kind: {
            "requests": len(values),
            "statuses": {str(code): n for code, n in sorted(statuses[kind].items())},
            "p50_ms": round(percentile(values, 0.50) * 1000, 1),
            "p99_ms": round(percentile(values, 0.99) * 1000, 1),
            "mean_ms": round(statistics.fmean(values) * 1000, 1) if values else 0.0,
        }
        for kind, values in sorted(latencies.items())
    }
    return {
        "seconds": round(seconds, 1),
        "requests": len(every),
        "requests_per_second": round(len(every) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentile(every, 0.50) * 1000, 1),
        "p99_ms": round(percentile(every, 0.99) * 1000, 1),
        "server_errors": sum(
            n for counts in statuses.values() for code, n in counts.items() if code >= 500
        ),
        "per_kind": per_kind,
        "acknowledged": [ack for tally in tallies for ack in tally.acknowledged],
        "funded": [sid for tally in tallies for sid in tally.funded],
        "replay_mismatches": [m for tally in tallies for m in tally.replay_mismatches],
        "transport_errors": [e for tally in tallies for e in tally.transport_errors],
    }


def run(plan: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    workers = [Worker(number, plan, started + plan["seconds"]) for number in range(plan["threads"])]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return summarize([worker.tally for worker in workers], time.monotonic() - started)


def main() -> None:
    plan_path, result_path = sys.argv[1:3]
    with open(plan_path) as handle:
        plan = json.load(handle)
    result = run(plan)
    with open(result_path, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
