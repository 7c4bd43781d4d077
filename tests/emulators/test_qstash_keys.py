"""Signing keys: configurable, served by `GET /v2/keys`, rotated by `POST /v2/keys/rotate`; deliveries
after a rotation verify with receivers holding either the old pair or the new one (reference §6.4)."""

from __future__ import annotations

from collections.abc import Iterator

import jwt
import pytest
from qstash import Receiver
from qstash.errors import SignatureError

from tests.emulators.qstash_fixtures import Destination, EmulatorProcess, publish_one, start_emulator

OLD_CURRENT = "sig_" + "A" * 28
OLD_NEXT = "sig_" + "B" * 28


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[EmulatorProcess]:
    server = start_emulator("--current-signing-key", OLD_CURRENT, "--next-signing-key", OLD_NEXT)
    yield server
    server.stop()


def test_keys_are_configurable_and_rotate(keyed_server: EmulatorProcess, destination: Destination, path: str) -> None:
    client = keyed_server.client()
    try:
        keys = client.signing_key.get()
        assert (keys.current, keys.next) == (OLD_CURRENT, OLD_NEXT)
        url = destination.url(path + "/before")
        publish_one(client, url, body="before")
        [before] = destination.wait_for(path + "/before")
        Receiver(OLD_CURRENT, OLD_NEXT).verify(signature=before.headers["upstash-signature"], body="before", url=url)

        rotated = client.signing_key.rotate()
        assert rotated.current == OLD_NEXT
        assert rotated.next not in (OLD_CURRENT, OLD_NEXT)
        assert len(rotated.next) == 32
        assert rotated.next.startswith("sig_")
        assert client.signing_key.get() == rotated

        url = destination.url(path + "/after")
        publish_one(client, url, body="after")
        [after] = destination.wait_for(path + "/after")
        signature = after.headers["upstash-signature"]
        jwt.decode(signature, OLD_NEXT, algorithms=["HS256"], issuer="Upstash")  # signed with the new current
        Receiver(OLD_CURRENT, OLD_NEXT).verify(signature=signature, body="after", url=url)  # via its next key
        Receiver(rotated.current, rotated.next).verify(signature=signature, body="after", url=url)
        with pytest.raises(SignatureError):
            Receiver(OLD_CURRENT, rotated.next).verify(signature=signature, body="after", url=url)
    finally:
        client.http._client.close()
