"""A dead-letter deployment on loopback: its own QStash emulator routing `PUBLIC_URL` to its own
functions server (the jobs of tests/functions/dlq_jobs.py), against a gateway and Redis.

Deliveries and failure callbacks carry signatures for `PUBLIC_URL/...` (the emulator's `--route`
keeps the published URL in `sub`), so the functions verify them exactly as in production; `sign`
makes such signatures for the tests that call the callback themselves.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from tests.conftest import ADMIN_TOKEN, PUBLIC_URL, Functions, Gateway, function_environment
from tests.emulators.qstash_fixtures import CURRENT_KEY, EmulatorProcess, start_emulator
from tests.functions.toolchain import ROOT, clean_env
from tests.servers import free_port, python_module

CALLBACK_URL = PUBLIC_URL + "/api/dlq/callback"
JOB_MODULES = "tests.functions.dlq_jobs"
WAIT_S = 30.0  # generous: a loaded 2-core machine runs the whole suite beside these


@dataclass
class DlqStack:
    functions: Functions
    qstash: EmulatorProcess
    gateway: Gateway
    http: httpx.Client  # to the functions, with the admin token
    env: dict[str, str]

    def stop(self) -> None:
        self.http.close()
        self.functions.process.stop()
        self.qstash.stop()

    def enqueue(self, job: str, payload: Any) -> str:
        response = self.http.post(f"/api/jobs/{job}/enqueue", json={"payload": payload})
        assert response.status_code == 200, response.text
        message_id: str = response.json()["message_id"]
        return message_id

    def entry(self, entry_id: str) -> dict[str, Any] | None:
        response = self.http.get(f"/api/dlq/entries/{entry_id}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def wait_for_entry(self, entry_id: str, status: str = "dead") -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            found = self.entry(entry_id)
            if found is not None and found["status"] == status:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {status} entry {entry_id} within {WAIT_S} s: {self.entry(entry_id)}")

    def job_state(self, message_id: str) -> str | None:
        response = self.http.get(f"/api/jobs/messages/{message_id}")
        return str(response.json()["state"]) if response.status_code == 200 else None

    def wait_for_job_state(self, message_id: str, state: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while self.job_state(message_id) != state:
            if time.monotonic() > deadline:
                raise AssertionError(f"{message_id} is {self.job_state(message_id)!r}, not {state!r}")
            time.sleep(0.05)

    def cli(self, *argv: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """`python -m shared ...` configured like the functions."""
        env = clean_env(**self.env, **extra_env)
        return subprocess.run([sys.executable, "-m", "shared", *argv], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip


def start_dlq_stack(gateway: Gateway, *emulator_args: str, **extra_env: str) -> DlqStack:
    port = free_port()
    qstash = start_emulator("--route", f"{PUBLIC_URL}=http://127.0.0.1:{port}", *emulator_args)
    env = function_environment(gateway, qstash) | {"STASHKIT_JOB_MODULES": JOB_MODULES, **extra_env}
    try:
        process = python_module("emulators.functions_server", port, env=env).start()
    except BaseException:
        qstash.stop()
        raise
    functions = Functions(f"http://127.0.0.1:{port}", process)
    http = httpx.Client(base_url=functions.url, timeout=30, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    return DlqStack(functions, qstash, gateway, http, env)


def sign(body: bytes, url: str = CALLBACK_URL, key: str = CURRENT_KEY, **claims: Any) -> str:
    """An `Upstash-Signature` as QStash makes it (reference qstash.md §6.1)."""
    now = int(time.time())
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")
    payload = {"iss": "Upstash", "sub": url, "iat": now, "nbf": now, "exp": now + 300,
               "jti": f"jwt_{uuid.uuid4().hex}", "body": digest} | claims  # fmt: skip
    return jwt.encode(payload, key, algorithm="HS256")


def failure_callback(message_id: str, job: str = "dlq.fails", **fields: Any) -> dict[str, Any]:
    """A failure callback's body as QStash sends it (reference qstash.md §5.5)."""
    problem = b'{"type":"urn:stashkit:problem:job-failed","title":"Job failed","status":500,"detail":"ValueError: x"}'
    body = {
        "status": 500,
        "header": {"Content-Type": ["application/problem+json"]},
        "body": base64.b64encode(problem).decode(),
        "retried": 3,
        "maxRetries": 3,
        "sourceMessageId": message_id,
        "url": f"{PUBLIC_URL}/api/jobs/{job}",
        "method": "POST",
        "sourceHeader": {"Content-Type": ["application/json"]},
        "sourceBody": base64.b64encode(b'{"to": "a@b"}').decode(),
        "notBefore": str(int(time.time() * 1000)),
        "createdAt": str(int(time.time() * 1000)),
        "callerIP": "127.0.0.1",
        "dlqId": f"{int(time.time() * 1000)}-0",
    }
    return body | fields
