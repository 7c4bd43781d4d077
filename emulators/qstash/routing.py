"""`--route PREFIX=URL`: deliver messages for a public URL to a local address instead.

A message for `https://myapp.vercel.app/api/x?y=1` with `--route https://myapp.vercel.app=http://127.0.0.1:3000`
is sent to `http://127.0.0.1:3000/api/x?y=1`; its signature's `sub` keeps the published URL, so the
app verifies it exactly as it would in production. The longest matching prefix wins.
"""

from __future__ import annotations

from dataclasses import dataclass


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    target: str

    @classmethod
    def parse(cls, text: str) -> Route:
        prefix, equals, target = text.partition("=")
        if not equals or not is_url(prefix) or not is_url(target):
            raise ValueError(f"--route wants PREFIX=URL with two http(s) URLs, got {text!r}")
        return cls(prefix, target)


@dataclass(frozen=True, slots=True)
class RouteTable:
    routes: tuple[Route, ...] = ()

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.routes, key=lambda r: len(r.prefix), reverse=True))
        object.__setattr__(self, "routes", ordered)

    def rewrite(self, url: str) -> str:
        for route in self.routes:
            if url.startswith(route.prefix):
                return route.target + url[len(route.prefix) :]
        return url
