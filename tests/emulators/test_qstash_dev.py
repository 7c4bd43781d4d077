"""Issue #15: `python -m emulators.qstash dev` and the `qstash` launcher stand in for the official dev
binary: its flags, its "running at" banner on stdout (what the JS SDK's dev mode waits for), and the
default user's keys at `GET /v2/keys` (its health probe, reference §7.3)."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from emulators.qstash.dev import parse_dev_args
from emulators.qstash.launcher import main as write_launcher
from tests.emulators.qstash_fixtures import CURRENT_KEY, NEXT_KEY, TOKEN
from tests.servers import free_port

RUNNING_AT = re.compile(r"runn+ing at (http://\S+)")  # the JS SDK's regex takes any number of n's


def read_until(process: subprocess.Popen[str], lines: list[str], pattern: re.Pattern[str]) -> list[str]:
    """Wait until a thread filling `lines` from stdout has read a line matching `pattern`."""
    deadline = time.monotonic() + 20.0
    while not any(pattern.search(line) for line in list(lines)):
        assert process.poll() is None, f"the server exited; stdout was {lines}"
        assert time.monotonic() < deadline, f"no line matching {pattern.pattern} on stdout; got {lines}"
        time.sleep(0.02)
    return list(lines)


def test_the_launcher_runs_dev_mode_with_the_binarys_banner_on_stdout(tmp_path: Path) -> None:
    launcher = tmp_path / "qstash"
    write_launcher([str(launcher)])
    port = free_port()
    process = subprocess.Popen(
        [str(launcher), "dev", f"-port={port}", "-quota", "pro", "--time-scale", "0.001"],
        cwd=tmp_path,  # the launcher works from anywhere
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    stdout, received = process.stdout, list[str]()
    reader = threading.Thread(target=lambda: received.extend(line.rstrip("\n") for line in stdout), daemon=True)
    reader.start()
    try:
        lines = read_until(process, received, re.compile(r"QSTASH_NEXT_SIGNING_KEY="))
        [url] = [m.group(1) for line in lines if (m := RUNNING_AT.search(line))]
        assert url == f"http://localhost:{port}"
        assert f"QSTASH_TOKEN={TOKEN}" in lines and f"QSTASH_CURRENT_SIGNING_KEY={CURRENT_KEY}" in lines
        with httpx.Client(trust_env=False, timeout=5) as client:
            keys = client.get(f"{url}/v2/keys", headers={"Authorization": f"Bearer {TOKEN}"})
        assert keys.json() == {"current": CURRENT_KEY, "next": NEXT_KEY}
    finally:
        process.terminate()
        process.wait(timeout=10)
        reader.join(timeout=10)  # it ends at EOF; only then is closing the pipe safe
        stdout.close()


@pytest.mark.parametrize(
    ("argv", "env", "port"),
    [
        ([], {}, 8080),
        (["-port", "9001"], {}, 9001),
        (["-port=9002"], {}, 9002),
        (["--port", "9003"], {}, 9003),
        ([], {"QSTASH_DEV_PORT": "9004"}, 9004),
        (["-port", "9005"], {"QSTASH_DEV_PORT": "9004"}, 9005),
    ],
)
def test_dev_takes_the_binarys_flags_and_environment(argv: list[str], env: dict[str, str], port: int) -> None:
    dev, rest = parse_dev_args([*argv, "-log-port", "9100", "--time-scale", "0.5"], env)
    assert (dev.port, dev.log_port, dev.quota, rest) == (port, 9100, "payg", ["--time-scale", "0.5"])


@pytest.mark.parametrize(
    "argv",
    [["--token", "t"], ["--current-signing-key=k"], ["-quota", "free"], ["-port", "http"], ["-port", "0"]],
)
def test_dev_refuses_other_credentials_and_bad_flags(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_dev_args(argv, {})
