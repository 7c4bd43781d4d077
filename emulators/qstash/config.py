"""The emulator's settings, with the official dev server's defaults (reference §7.2).

An app configured for `qstash dev` (QSTASH_URL=http://localhost:8080 and the default user's token and
signing keys) works with this server unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emulators.qstash.routing import RouteTable

# The dev server's documented default user: public test credentials, not secrets.
DEFAULT_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="
DEFAULT_CURRENT_SIGNING_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEFAULT_NEXT_SIGNING_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
DEFAULT_PORT = 8080


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    token: str = DEFAULT_TOKEN
    current_signing_key: str = DEFAULT_CURRENT_SIGNING_KEY
    next_signing_key: str = DEFAULT_NEXT_SIGNING_KEY
    time_scale: float = 1.0
    routes: RouteTable = field(default_factory=RouteTable)
    max_body_bytes: int = 10 * 1024 * 1024
    connection_close: bool = False
