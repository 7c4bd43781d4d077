"""`--route PREFIX=URL`: a public destination is delivered to a local address, signed for the public URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from qstash import Receiver

from tests.emulators.qstash_fixtures import Destination, EmulatorProcess, publish_one, start_emulator

PUBLIC = "https://myapp.example.com"


@pytest.fixture(scope="module")
def routed_server(destination: Destination) -> Iterator[EmulatorProcess]:
    server = start_emulator(
        "--route",
        f"{PUBLIC}={destination.url('/routed')}",
        "--route",
        f"{PUBLIC}/special={destination.url('/longest')}",
    )
    yield server
    server.stop()


def test_route_delivers_locally_and_keeps_the_public_url_in_the_signature(
    routed_server: EmulatorProcess, destination: Destination, receiver: Receiver
) -> None:
    client = routed_server.client()
    try:
        public_url = f"{PUBLIC}/api/hook?x=1"
        publish_one(client, public_url, body="routed")
        [got] = destination.wait_for("/routed/api/hook")
        assert got.path == "/routed/api/hook?x=1"
        receiver.verify(signature=got.headers["upstash-signature"], body="routed", url=public_url)
        assert client.message.get(got.headers["upstash-message-id"]).url == public_url

        publish_one(client, f"{PUBLIC}/special/x", body="longest prefix wins")
        [special] = destination.wait_for("/longest/x")
        assert special.text == "longest prefix wins"
    finally:
        client.http._client.close()


@pytest.mark.parametrize("bad", ["no-equals", "https://a.example=ftp://local", "relative=http://127.0.0.1:1"])
def test_a_malformed_route_stops_the_cli(bad: str) -> None:
    from emulators.qstash.__main__ import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--route", bad])
