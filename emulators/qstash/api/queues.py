"""Queues: upsert, get, list, delete, pause, resume (reference §3; upstash/docs queues.mdx).

A queue delivers FIFO with at most `parallelism` messages in progress; a message in progress keeps its
slot through its retries. Deleting a queue cancels the messages still waiting in it.
"""

from __future__ import annotations

from typing import Any

from emulators.qstash.api.http import HttpRequest, Params, Reply, Route
from emulators.qstash.api.publish import valid_name
from emulators.qstash.engine import Emulator
from emulators.qstash.errors import BadRequest, NotFound
from emulators.qstash.model import Queue
from emulators.qstash.wire_resources import queue_json

MAX_PARALLELISM = 1000


def _queue(emulator: Emulator, name: str) -> Queue:
    queue = emulator.store.queues.get(name)
    if queue is None:
        raise NotFound(f"queue {name!r} not found")
    return queue


def _lag(emulator: Emulator, queue: Queue) -> int:
    return sum(1 for m in emulator.store.messages.values() if m.queue_name == queue.name and m.is_pending)


def upsert_queue(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    payload: Any = request.json()
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    name = payload.get("queueName")
    if not isinstance(name, str):
        raise BadRequest("queueName must be a string")
    parallelism = payload.get("parallelism", 1)
    if type(parallelism) is not int or not 1 <= parallelism <= MAX_PARALLELISM:
        raise BadRequest(f"parallelism must be an integer from 1 to {MAX_PARALLELISM}")
    paused = payload.get("paused", False)
    if not isinstance(paused, bool):
        raise BadRequest("paused must be true or false")
    queue = emulator.ensure_queue(valid_name(name, "queue name"))
    queue.gate.parallelism, queue.gate.paused = parallelism, paused
    queue.updated_ms = emulator.clock.now_ms()
    queue.gate.pump()
    return Reply(200)


def get_queue(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    queue = _queue(emulator, params.text("name"))
    return Reply(200, queue_json(queue, _lag(emulator, queue)))


def list_queues(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    return Reply(200, [queue_json(q, _lag(emulator, q)) for q in emulator.store.queues.values()])


def delete_queue(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    queue = _queue(emulator, params.text("name"))
    for message in list(emulator.store.messages.values()):
        if message.queue_name == queue.name:
            emulator.cancel(message)
    queue.gate.close()
    del emulator.store.queues[queue.name]
    return Reply(200)


def pause_queue(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    return _set_paused(emulator, params.text("name"), paused=True)


def resume_queue(emulator: Emulator, request: HttpRequest, params: Params) -> Reply:
    return _set_paused(emulator, params.text("name"), paused=False)


def _set_paused(emulator: Emulator, name: str, paused: bool) -> Reply:
    queue = _queue(emulator, name)
    queue.gate.paused = paused
    queue.updated_ms = emulator.clock.now_ms()
    queue.gate.pump()
    return Reply(200)


ROUTES = [
    Route.of("POST", r"/v2/queues", upsert_queue),
    Route.of("GET", r"/v2/queues", list_queues),
    Route.of("GET", r"/v2/queues/(?P<name>[^/]+)", get_queue),
    Route.of("DELETE", r"/v2/queues/(?P<name>[^/]+)", delete_queue),
    Route.of("POST", r"/v2/queues/(?P<name>[^/]+)/pause", pause_queue),
    Route.of("POST", r"/v2/queues/(?P<name>[^/]+)/resume", resume_queue),
]
