"""URL groups (the API still calls them topics): upsert and remove endpoints, get, list, delete
(reference §3). Removing the last endpoint deletes the group; deleting an unknown group succeeds (G23)."""

from __future__ import annotations

from typing import Any

from emulators.qstash.api.http import HttpRequest, Params, Reply, Route
from emulators.qstash.api.publish import valid_name
from emulators.qstash.engine import Emulator
from emulators.qstash.errors import BadRequest, NotFound
from emulators.qstash.model import Endpoint, UrlGroup
from emulators.qstash.routing import is_url
from emulators.qstash.wire_resources import url_group_json


def _group(emulator: Emulator, name: str) -> UrlGroup:
    group = emulator.store.url_groups.get(name)
    if group is None:
        raise NotFound(f"url group {name!r} not found")
    return group


def _endpoints(request: HttpRequest, need_url: bool) -> list[dict[str, Any]]:
    payload = request.json()
    endpoints = payload.get("endpoints") if isinstance(payload, dict) else None
    if not isinstance(endpoints, list) or not endpoints or not all(isinstance(e, dict) for e in endpoints):
        raise BadRequest('the body must be {"endpoints": [{"url": ..., "name"?: ...}, ...]}')
    for endpoint in endpoints:
        url, name = endpoint.get("url"), endpoint.get("name")
        if url is not None and (not isinstance(url, str) or not is_url(url)):
            raise BadRequest(f"endpoint url {url!r} is not an http:// or https:// URL")
        if name is not None and not isinstance(name, str):
            raise BadRequest("endpoint name must be a string")
        if (need_url and url is None) or (url is None and name is None):
            raise BadRequest("each endpoint needs a url" + ("" if need_url else " or a name"))
    return endpoints


def upsert_endpoints(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    name = valid_name(params.text("name"), "URL group name")
    endpoints = _endpoints(request, need_url=True)
    now_ms = emulator.clock.now_ms()
    group = emulator.store.url_groups.setdefault(name, UrlGroup(name, now_ms, now_ms))
    for item in endpoints:
        existing = next((e for e in group.endpoints if e.url == item["url"]), None)
        if existing is None:
            group.endpoints.append(Endpoint(item["url"], item.get("name")))
        else:
            existing.name = item.get("name", existing.name)
    group.updated_ms = now_ms
    return Reply(200)


def remove_endpoints(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    group = _group(emulator, params.text("name"))
    for item in _endpoints(request, need_url=False):
        group.endpoints = [e for e in group.endpoints if not _same(e, item)]
    group.updated_ms = emulator.clock.now_ms()
    if not group.endpoints:
        del emulator.store.url_groups[group.name]
    return Reply(200)


def _same(endpoint: Endpoint, item: dict[str, Any]) -> bool:
    if "url" in item and item["url"] is not None:
        return bool(endpoint.url == item["url"])
    return endpoint.name is not None and endpoint.name == str(item.get("name"))


def get_group(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    return Reply(200, url_group_json(_group(emulator, params.text("name"))))


def list_groups(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    return Reply(200, [url_group_json(g) for g in emulator.store.url_groups.values()])


def delete_group(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    emulator.store.url_groups.pop(params.text("name"), None)
    return Reply(200)


ROUTES = [
    Route.of("GET", r"/v2/topics", list_groups),
    Route.of("POST", r"/v2/topics/(?P<name>[^/]+)/endpoints", upsert_endpoints),
    Route.of("DELETE", r"/v2/topics/(?P<name>[^/]+)/endpoints", remove_endpoints),
    Route.of("GET", r"/v2/topics/(?P<name>[^/]+)", get_group),
    Route.of("DELETE", r"/v2/topics/(?P<name>[^/]+)", delete_group),
]
