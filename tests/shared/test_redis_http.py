"""shared/redis_http.py: the SDK's requests carried by pyreqwest, against the real gateway and against
servers that misbehave; auto-pipelining with its round trips counted; and the pin on the SDK's internals."""

from __future__ import annotations

import asyncio
import inspect
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import upstash_redis
from upstash_redis.asyncio import Redis
from upstash_redis.asyncio.client import AsyncPipeline
from upstash_redis.errors import UpstashError
from upstash_redis.http import AsyncHttpClient

from shared.config import RedisSettings
from shared.errors import RedisUnavailable
from shared.metrics import start_request
from shared.redis import RedisClients, pipelined, redis_deadline
from tests.conftest import Gateway, gateway_clients


def test_the_sdk_internals_we_replace_are_where_they_were() -> None:
    """`_Redis` sets what `Redis.__init__` sets and swaps `_http`, whose one method the SDK calls with
    keywords. If upstash-redis moves any of it, this fails before a caller does."""
    assert upstash_redis.__version__ == "1.8.0"
    sdk = Redis("http://127.0.0.1:1", "token", rest_retries=0)
    ours = RedisClients(RedisSettings("http://127.0.0.1:1", "token"), timeout_s=1)._new_client()
    assert isinstance(ours, Redis)
    assert set(vars(ours)) == set(vars(sdk))
    assert ours._headers == sdk._headers
    assert (ours._url, ours._read_your_writes, ours._allow_telemetry) == (sdk._url, True, True)
    assert isinstance(sdk._http, AsyncHttpClient)
    assert list(inspect.signature(AsyncHttpClient.execute).parameters) == [
        "self", "url", "headers", "command", "from_pipeline"
    ]  # fmt: skip
    for method in (Redis.execute, AsyncPipeline.exec):
        assert "self._http.execute(" in inspect.getsource(method)
    assert "self._http.close()" in inspect.getsource(Redis.close)


async def test_commands_pipelines_and_transactions_run_through_it(gateway: Gateway, tag: str) -> None:
    async with gateway_clients(gateway) as clients:
        redis = clients.get()
        assert await redis.set(f"{tag}k", "héllo") is True
        assert await redis.get(f"{tag}k") == "héllo"
        assert await redis.zadd(f"{tag}z", {"a": 1.5, "b": 1e20}) == 2
        assert await redis.zscore(f"{tag}z", "b") == 1e20
        pipeline = redis.pipeline()
        pipeline.incr(f"{tag}n")
        pipeline.get(f"{tag}k")
        assert await pipeline.exec() == [1, "héllo"]
        transaction = redis.multi()
        transaction.incr(f"{tag}n")
        transaction.incr(f"{tag}n")
        assert await transaction.exec() == [2, 3]


async def test_a_refused_transaction_is_an_upstash_error(gateway: Gateway, tag: str) -> None:
    async with gateway_clients(gateway) as clients:
        transaction = clients.get().multi()
        transaction.set(f"{tag}k", "v")
        transaction.execute(["GET"])  # Redis refuses it when queued (arity), so nothing runs
        with pytest.raises(UpstashError, match="EXECABORT"):
            await transaction.exec()
        assert await clients.get().get(f"{tag}k") is None


async def test_ten_gathered_gets_under_pipelined_are_one_round_trip(gateway: Gateway, tag: str) -> None:
    async with gateway_clients(gateway) as clients:
        redis = clients.get()
        for i in range(10):
            await redis.set(f"{tag}{i}", str(i))
        before = gateway.requests()
        metrics = start_request("gathered")
        async with pipelined():
            values = await asyncio.gather(*(redis.get(f"{tag}{i}") for i in range(10)))
        assert values == [str(i) for i in range(10)]
        assert metrics.redis_round_trips == 1
        assert gateway.requests() - before == 1  # the pipeline (/__stats does not count itself)


async def test_without_pipelining_each_command_is_its_own_round_trip(gateway: Gateway, tag: str) -> None:
    async with gateway_clients(gateway) as clients:
        redis = clients.get()
        metrics = start_request("separate")
        await asyncio.gather(*(redis.get(f"{tag}{i}") for i in range(10)))
        assert metrics.redis_round_trips == 10


async def test_each_caller_gets_its_own_result_or_error(gateway: Gateway, tag: str) -> None:
    async with gateway_clients(gateway) as clients:
        redis = clients.get()
        await redis.set(f"{tag}s", "a string")
        metrics = start_request("errors")
        async with pipelined():
            results = await asyncio.gather(
                redis.get(f"{tag}s"), redis.hgetall(f"{tag}s"), redis.incr(f"{tag}n"), return_exceptions=True
            )
        assert results[0] == "a string"
        assert isinstance(results[1], UpstashError) and "WRONGTYPE" in str(results[1])
        assert results[2] == 1
        assert metrics.redis_round_trips == 1


async def test_scripts_and_transactions_are_never_merged(gateway: Gateway, tag: str) -> None:
    async with gateway_clients(gateway) as clients:
        redis = clients.get()
        metrics = start_request("alone")
        transaction = redis.multi()
        transaction.incr(f"{tag}n")
        async with pipelined():
            script, txn, first, second = await asyncio.gather(
                redis.eval("return 7"), transaction.exec(), redis.get(f"{tag}n"), redis.exists(f"{tag}n")
            )
        assert (script, txn) == (7, [1])
        assert first in ("1", None) and second in (0, 1)
        assert metrics.redis_round_trips == 3  # the script, the transaction, the two reads together


async def test_auto_pipelining_per_client_and_across_concurrent_requests(gateway: Gateway, tag: str) -> None:
    """Two requests on one loop (Vercel Fluid) share a batch: each counts the one round trip it waited for."""
    clients = RedisClients(RedisSettings(gateway.url, gateway.token), timeout_s=10, auto_pipeline=True)
    redis = clients.get()

    async def handler(name: str) -> int:
        metrics = start_request(name)
        await asyncio.gather(redis.set(f"{tag}{name}", name), redis.get(f"{tag}other"))
        return metrics.redis_round_trips

    before = gateway.requests()
    assert await asyncio.gather(handler("a"), handler("b")) == [1, 1]
    assert gateway.requests() - before == 1
    assert await redis.mget(f"{tag}a", f"{tag}b") == ["a", "b"]
    await clients.aclose()


async def test_a_caller_that_gives_up_leaves_the_others_their_answers(gateway: Gateway, tag: str) -> None:
    async with gateway_clients(gateway) as clients:
        redis = clients.get()
        await redis.set(f"{tag}k", "v")

        async def impatient() -> None:
            async with redis_deadline(0):
                await redis.get(f"{tag}k")

        async with pipelined():
            gave_up, answered = await asyncio.gather(impatient(), redis.get(f"{tag}k"), return_exceptions=True)
        assert isinstance(gave_up, RedisUnavailable)
        assert answered == "v"


# Servers that misbehave: a raw asyncio server answering each request its own way --------------------

Respond = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


@dataclass
class Stub:
    clients: RedisClients
    connections: list[asyncio.StreamWriter]


@asynccontextmanager
async def misbehaving(respond: Respond) -> AsyncIterator[Stub]:
    """A server on a free port answering with `respond`, and a client for it (timeout 0.5 s)."""
    connections: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        try:
            await respond(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = RedisClients(RedisSettings(f"http://127.0.0.1:{port}", "token"), timeout_s=0.5)
    try:
        yield Stub(clients, connections)
    finally:
        await clients.aclose()
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n%s"
        % (
            len(body),
            body,
        )
    )


async def test_a_server_that_never_answers_is_unavailable_within_the_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.Event().wait()

    async with misbehaving(silent) as stub:
        clients = stub.clients
        with pytest.raises(RedisUnavailable, match="did not answer"):
            async with asyncio.timeout(5):  # the client's own 0.5 s deadline must fire first
                await clients.get().get("k")


async def test_chunked_bodies_are_read_and_the_connection_kept_alive() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            chunks = [b'{"res', b'ult":"dg', b'=="}']
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
                + b"0\r\n\r\n"
            )
            await writer.drain()

    async with misbehaving(chunked) as stub:
        clients = stub.clients
        for _ in range(3):
            assert await clients.get().get("k") == "v"
        assert len(stub.connections) == 1


async def test_an_idle_connection_closed_by_the_server_is_replaced() -> None:
    async def one_answer_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b'{"result":"dg=="}', b"Connection: keep-alive\r\n"))
        await writer.drain()
        await asyncio.sleep(0.05)  # then close while the client keeps the connection pooled

    async with misbehaving(one_answer_per_connection) as stub:
        clients = stub.clients
        assert await clients.get().get("k") == "v"
        await asyncio.sleep(0.2)
        assert await clients.get().get("k") == "v"


async def test_garbage_and_5xx_are_outages_and_a_non_json_200_is_an_error() -> None:
    answers = iter(
        [
            b"this is not HTTP\r\n\r\n",
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n<html>hi!",
        ]
    )

    async def next_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # keeps the connection, unless the client drops it
            await read_request(reader)
            writer.write(next(answers))
            await writer.drain()

    async with misbehaving(next_answer) as stub:
        clients = stub.clients
        with pytest.raises(RedisUnavailable):
            await clients.get().get("k")
        with pytest.raises(RedisUnavailable, match="HTTP 502"):
            await clients.get().get("k")
        with pytest.raises(UpstashError, match="not JSON"):
            await clients.get().get("k")


async def test_an_outage_reaches_every_caller_of_a_batch() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with misbehaving(hang_up) as stub:
        clients = stub.clients
        redis = clients.get()
        async with pipelined():
            results = await asyncio.gather(*(redis.get(f"k{i}") for i in range(3)), return_exceptions=True)
        assert all(isinstance(result, RedisUnavailable) for result in results)


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A key and a self-signed certificate for `localhost`."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


async def test_tls_is_verified_against_ssl_cert_file(
    self_signed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, gateway: Gateway, tag: str
) -> None:
    """A TLS endpoint (as Upstash is) is reached and its certificate verified; one the client cannot
    verify is refused as an outage, never used."""
    key, cert = self_signed
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                writer.write(ok(b'{"result":"dg=="}'))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_tls)
    url = f"https://localhost:{server.sockets[0].getsockname()[1]}"
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        async with gateway_clients(Gateway(url, "token", gateway.process, gateway.redis_url)) as clients:
            assert await clients.get().get(f"{tag}k") == "v"
            assert await clients.get().get(f"{tag}k") == "v"
        monkeypatch.delenv("SSL_CERT_FILE")  # certifi's bundle does not know this certificate
        async with gateway_clients(Gateway(url, "token", gateway.process, gateway.redis_url)) as clients:
            with pytest.raises(RedisUnavailable, match="SSLCertVerificationError"):
                await clients.get().get(f"{tag}k")
    finally:
        server.close()
        await server.wait_closed()
