"""The soak's clients: each owns a context with a counter in it and runs a random mix.

Every answer is checked against the API contract's shapes; a 500, an answer past its
timeout, or a counter found reset without the server having said that the state was lost
is a failure. Outcomes are tallied by operation and kind.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from typing import Any

import httpx
import orjson

MARGIN_S = 30.0  # past its own timeout (+ kill grace), an answer this late is a hang
# 429: past the context limit; 503: the new context's worker was killed while it started
CREATED = (201, 429, 503)
LOST = ("state was lost", "its state", "state cleared")
CODE = {
    "python": {
        "init": "n = 0",
        "step": "n += 1\nn",
        "read": "n",
        "sleep": "import time\ntime.sleep(5)",
        "stream": "import time\nfor i in range(40):\n    print(i, flush=True)\n    time.sleep(0.05)",
        "short": "print('hello')\n21 * 2",
        "unknown_name": "NameError",
    },
    "typescript": {
        "init": "let n = 0;",
        "step": "n += 1; n",
        "read": "n",
        "sleep": "await new Promise(r => setTimeout(r, 5000));",
        "stream": "for (let i = 0; i < 40; i++) { console.log(i); await new Promise(r => setTimeout(r, 50)); }",
        "short": "console.log('hello'); 21 * 2",
        "unknown_name": "ReferenceError",
    },
}
BOMBS = {
    "memory": ("hog = []\nwhile True:\n    hog.append(b'x' * (16 << 20))", 20000),
    "fork": (
        "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)",
        2000,
    ),
}


class Tally:
    """Outcomes and failures of all clients (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.requests = 0

    def count(self, op: str, kind: str) -> None:
        with self.lock:
            self.requests += 1
            self.outcomes[f"{op}: {kind}"] += 1

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)


class Bad(Exception):
    """An answer outside the contract."""


def check_body(body: Any) -> None:
    """Raise ``Bad`` unless ``body`` is a well-formed ``POST /execute`` answer."""
    if not isinstance(body, dict) or not isinstance(body.get("context_id"), str):
        raise Bad(f"no context_id: {body!r:.200}")
    items, logs, error = body.get("items"), body.get("logs"), body.get("error")
    if not isinstance(items, list) or not all(isinstance(i.get("is_primary"), bool) for i in items):
        raise Bad(f"bad items: {items!r:.200}")
    if not isinstance(logs, dict) or not all(
        isinstance(logs.get(k), list) and all(isinstance(x, str) for x in logs[k])
        for k in ("stdout", "stderr")
    ):
        raise Bad(f"bad logs: {logs!r:.200}")
    if error is not None and not all(
        isinstance(error.get(k), str) for k in ("name", "value", "traceback")
    ):
        raise Bad(f"bad error: {error!r:.200}")
    if not isinstance(body.get("execution_count"), int) or body["execution_count"] < 0:
        raise Bad(f"bad execution_count: {body.get('execution_count')!r}")


def check_event(event: Any) -> None:
    kind = event.get("type") if isinstance(event, dict) else None
    if kind in ("stdout", "stderr") and isinstance(event.get("data"), str):
        return
    if kind == "result" and isinstance(event.get("data"), dict):
        return
    if kind == "error" and all(
        isinstance(event.get(k), str) for k in ("name", "value", "traceback")
    ):
        return
    if (
        kind == "exit"
        and event.get("code") in (0, 1)
        and isinstance(event.get("execution_count"), int)
    ):
        return
    raise Bad(f"bad event: {event!r:.200}")


class SoakClient(threading.Thread):
    """One client: a context of ``language`` with a counter, and a random mix of calls."""

    def __init__(
        self,
        index: int,
        language: str,
        url: str,
        key: str,
        tally: Tally,
        seed: int,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"client-{index}", daemon=True)
        self.language = language
        self.code = CODE[language]
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        self.tally = tally
        self.random = random.Random(seed)
        self.stop = stop
        self.context: str | None = None
        self.expected: int | None = None  # None: the context must be (re)initialised
        self.history: deque[str] = deque(maxlen=12)  # the last answers, for a failure report

    # -- plumbing ---------------------------------------------------------------------

    def call(
        self,
        op: str,
        method: str,
        path: str,
        allowed: tuple[int, ...],
        timeout_s: float = 10,
        **kwargs: Any,
    ) -> httpx.Response | None:
        try:
            response = self.http.request(method, path, timeout=timeout_s + MARGIN_S, **kwargs)
        except httpx.TimeoutException:
            self.tally.count(op, "hang")
            self.tally.fail(f"{op}: no answer within {timeout_s + MARGIN_S:.0f} s")
            return None
        except httpx.HTTPError as exc:
            self.tally.count(op, "connection error")
            self.tally.fail(f"{op}: {exc!r}")
            return None
        kind = str(response.status_code)
        if (
            response.status_code == 200
            and path.startswith("/execute")
            and not path.endswith("async")
        ):
            error = response.json().get("error")
            kind += f" {error['name']}" if error else " ok"
        self.tally.count(op, kind)
        self.history.append(f"{op}: {kind}")
        if response.status_code not in allowed:
            self.tally.fail(f"{op}: status {response.status_code}: {response.text[:200]}")
            return None
        if response.status_code >= 400:
            body = response.json()
            if not isinstance(body.get("message"), str):
                self.tally.fail(f"{op}: {response.status_code} without a message: {body!r:.200}")
            return None
        return response

    def execute(
        self, op: str, code: str, timeout_ms: int = 10000, allowed: tuple[int, ...] = (200, 404)
    ) -> dict[str, Any] | None:
        body = {"code": code, "context_id": self.context, "timeout_ms": timeout_ms}
        response = self.call(op, "POST", "/execute", allowed, timeout_ms / 1000, json=body)
        if response is None:
            return None
        try:
            check_body(data := response.json())
        except Bad as exc:
            self.tally.fail(f"{op}: {exc}")
            return None
        if data["error"] and any(words in data["error"]["value"] for words in LOST):
            self.expected = None  # told: the state is gone
        elif data["error"] and data["error"]["name"] in ("ContextDied", "WorkerStartError"):
            self.expected = None
        return data

    def new_context(self) -> bool:
        response = self.call(
            "create", "POST", "/contexts", CREATED, json={"language": self.language}
        )
        if response is None:
            return False
        self.context = response.json()["id"]
        self.expected = None
        return True

    # -- the mix ----------------------------------------------------------------------

    def run(self) -> None:
        ops = [
            (self.step, 30),
            (self.timeout, 3),
            (self.interrupt, 3),
            (self.stream_dropped, 3),
            (self.stream_whole, 3),
            (self.restart, 2),
            (self.delete, 1),
            (self.burst, 1),
            (self.bomb, 1 if self.language == "python" else 0),
        ]
        weights = [w for _, w in ops]
        while not self.stop.is_set():
            if self.context is None and not self.new_context():
                self.stop.wait(0.5)
                continue
            if self.expected is None:
                self.initialise()
                continue
            self.random.choices([op for op, _ in ops], weights)[0]()
            self.stop.wait(self.random.uniform(0.02, 0.2))
        self.finish()

    def finish(self) -> None:
        if self.context is not None:
            self.call("delete", "DELETE", f"/contexts/{self.context}", (204, 404))
            self.context = None
        self.http.close()

    def initialise(self) -> None:
        data = self.execute("init", self.code["init"])
        if data is None:
            self.context = None  # gone (404) or broken: start over with a new one
        elif data["error"] is None:
            self.expected = 0

    def step(self) -> None:
        data = self.execute("step", self.code["step"], timeout_ms=3000)
        if data is None:
            self.context = None
            return
        if data["error"] is None:
            value = int(data["items"][0]["text"])
            if self.expected is not None and value != self.expected + 1:
                self.tally.fail(
                    f"silent state change in {self.context}: n={value}, expected {self.expected + 1}"
                )
            self.expected = value if self.expected is not None else None
        elif data["error"]["name"] == self.code["unknown_name"] and self.expected is not None:
            self.silent_loss(data["error"]["value"])
            self.expected = None
        elif self.expected is not None:
            self.resync()

    def silent_loss(self, error: str) -> None:
        self.tally.fail(
            f"SILENT STATE LOSS in {self.context} ({self.language}): {error}; "
            f"the answers before: {list(self.history)}"
        )

    def resync(self) -> None:
        """After an interrupted step (state kept, n maybe counted): read n back."""
        data = self.execute("read", self.code["read"])
        if data is None:
            self.context = None
        elif data["error"] is None:
            self.expected = int(data["items"][0]["text"])
        elif data["error"]["name"] == self.code["unknown_name"] and self.expected is not None:
            self.silent_loss(data["error"]["value"])
            self.expected = None

    def timeout(self) -> None:
        self.execute("timeout", self.code["sleep"], timeout_ms=300)

    def interrupt(self) -> None:
        context = self.context
        later = threading.Timer(
            0.3,
            lambda: self.call("interrupt", "POST", f"/contexts/{context}/interrupt", (200, 404)),
        )
        later.start()
        self.execute("interrupted", self.code["sleep"])
        later.join()

    def stream_dropped(self) -> None:
        self.stream("stream-dropped", self.code["stream"], keep=self.random.randint(0, 3))

    def stream_whole(self) -> None:
        self.stream("stream", self.code["short"], keep=None)

    def stream(self, op: str, code: str, keep: int | None) -> None:
        body = {"code": code, "context_id": self.context, "timeout_ms": 10000}
        try:
            with self.http.stream(
                "POST", "/execute/async", json=body, timeout=10 + MARGIN_S
            ) as response:
                self.tally.count(op, str(response.status_code))
                if response.status_code != 200:
                    response.read()
                    if response.status_code not in (404,):
                        self.tally.fail(
                            f"{op}: status {response.status_code}: {response.text[:200]}"
                        )
                    return
                events = self.events(response, keep)
        except httpx.TimeoutException:
            self.tally.fail(f"{op}: no end of stream within {10 + MARGIN_S:.0f} s")
            return
        except (httpx.HTTPError, Bad) as exc:
            self.tally.fail(f"{op}: {exc!r}")
            return
        if keep is None and (not events or events[-1]["type"] != "exit"):
            self.tally.fail(f"{op}: stream ended without exit: {events!r:.200}")
        for event in events:  # what was read was told, even from a stream dropped then
            if event["type"] == "error" and (
                event["name"] == "ContextDied" or any(w in event["value"] for w in LOST)
            ):
                self.expected = None

    def events(self, response: httpx.Response, keep: int | None) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        buffer = b""
        for chunk in response.iter_bytes():
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                if not block.startswith(b"data: "):
                    raise Bad(f"not an SSE data line: {block[:100]!r}")
                event = orjson.loads(block[6:])
                check_event(event)
                events.append(event)
                if keep is not None and len(events) > keep:
                    return events  # drop the rest: the server must cope
        return events

    def restart(self) -> None:
        if (
            self.call("restart", "POST", f"/contexts/{self.context}/restart", (200, 404))
            is not None
        ):
            self.expected = None
        else:
            self.context = None

    def delete(self) -> None:
        self.call("delete", "DELETE", f"/contexts/{self.context}", (204, 404))
        self.context = None

    def burst(self) -> None:
        """Create many contexts at once, past the limit (429 expected), then delete them."""
        made: list[str] = []

        def create() -> None:
            response = self.call(
                "burst-create", "POST", "/contexts", CREATED, json={"language": self.language}
            )
            if response is not None:
                made.append(response.json()["id"])

        threads = [threading.Thread(target=create) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for context in made:
            self.call("burst-delete", "DELETE", f"/contexts/{context}", (204, 404))

    def bomb(self) -> None:
        """A memory or fork bomb in a throwaway context: a clear error, nothing else hurt."""
        kind = self.random.choice(sorted(BOMBS))
        code, timeout_ms = BOMBS[kind]
        response = self.call(
            "bomb-create", "POST", "/contexts", CREATED, json={"language": "python"}
        )
        if response is None:
            return
        context = response.json()["id"]
        body = {"code": code, "context_id": context, "timeout_ms": timeout_ms}
        answer = self.call(f"{kind}-bomb", "POST", "/execute", (200,), timeout_ms / 1000, json=body)
        if answer is not None:
            data = answer.json()
            if data["error"] is None:
                self.tally.fail(f"{kind} bomb ended without an error")
        self.call("bomb-delete", "DELETE", f"/contexts/{context}", (204, 404))
