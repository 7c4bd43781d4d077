"""A jobs deployment on loopback: our QStash emulator routing `PUBLIC_URL` to the functions server, which
runs the jobs of tests/functions/sample_jobs.py against the real gateway and Redis.

Deliveries carry signatures for `PUBLIC_URL/...` (the emulator's `--route` keeps the published URL in
`sub`), so the functions verify them exactly as in production.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from tests.conftest import ADMIN_TOKEN, PUBLIC_URL, Functions, Gateway, function_environment
from tests.emulators.qstash_fixtures import CURRENT_KEY, EmulatorProcess, start_emulator
from tests.servers import free_port, python_module

SAMPLE_JOBS = "tests.functions.sample_jobs"
FINAL = {"succeeded", "dead", "skipped"}


@dataclass
class JobsStack:
    functions: Functions
    qstash: EmulatorProcess
    http: httpx.Client

    def enqueue(self, job: str, payload: Any, **options: Any) -> str:
        response = self.http.post(f"/api/jobs/{job}/enqueue", json={"payload": payload, **options})
        assert response.status_code == 200, response.text
        message_id: str = response.json()["message_id"]
        return message_id

    def status(self, message_id: str) -> dict[str, Any] | None:
        response = self.http.get(f"/api/jobs/messages/{message_id}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        record: dict[str, Any] = response.json()
        return record

    def wait_until_final(self, message_id: str, timeout_s: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            record = self.status(message_id)
            if record is not None and record["state"] in FINAL:
                return record
            time.sleep(0.02)
        raise AssertionError(f"{message_id} did not finish in {timeout_s} s: {self.status(message_id)}")

    def events(self, message_id: str, until_state: str, timeout_s: float = 10) -> list[dict[str, Any]]:
        """The emulator's log of a message, once it shows `until_state` (QStash logs after the answer)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found: list[dict[str, Any]] = self.qstash.call(
                "GET", "/v2/events", params={"messageId": message_id}
            ).json()["events"]
            if any(event["state"] == until_state for event in found) or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def stop(self) -> None:
        self.http.close()
        self.functions.process.stop()
        self.qstash.stop()


def start_jobs_stack(gateway: Gateway, *emulator_args: str, **env: str) -> JobsStack:
    port = free_port()
    functions_url = f"http://127.0.0.1:{port}"
    qstash = start_emulator("--route", f"{PUBLIC_URL}={functions_url}", *emulator_args)
    environment = function_environment(gateway, qstash) | {"STASHKIT_JOB_MODULES": SAMPLE_JOBS, **env}
    process = python_module("emulators.functions_server", port, env=environment).start()
    http = httpx.Client(base_url=functions_url, timeout=10, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    return JobsStack(Functions(functions_url, process), qstash, http)


def signature(url: str, body: bytes, key: str = CURRENT_KEY, **claims: Any) -> str:
    """An Upstash-Signature as QStash makes it (reference qstash.md §6.1); `claims` override fields."""
    now = int(time.time())
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
    payload = {"iss": "Upstash", "sub": url, "iat": now, "nbf": now, "exp": now + 300,
               "jti": f"jwt_{uuid.uuid4().hex}", "body": digest} | claims  # fmt: skip
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm="HS256")


def delivery_headers(url: str, body: bytes, message_id: str, retried: int = 0, **claims: Any) -> dict[str, str]:
    return {
        "Upstash-Signature": signature(url, body, **claims),
        "Upstash-Message-Id": message_id,
        "Upstash-Retried": str(retried),
        "Content-Type": "application/json",
    }
