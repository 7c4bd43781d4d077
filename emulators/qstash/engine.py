"""The emulator: publish, the life of a message, cancel. One instance per server, on one event loop.

A message's life (reference §5):

    publish -> CREATED -> due (now, or via the Timeline after Upstash-Delay / Not-Before / a retry)
      -> queue gate (a slot held from the first attempt until DELIVERED/FAILED/CANCELED)
      -> flow-control gate (a slot per attempt) -> global gate (a slot per attempt)
      -> ACTIVE: one signed HTTP attempt
      -> DELIVERED | ERROR -> RETRY (back to "due") | ERROR -> FAILED -> DLQ + failure callback
    with a callback message after every attempt when Upstash-Callback is set.
"""

from __future__ import annotations

import asyncio
import logging

from emulators.qstash.backoff import next_delay_ms
from emulators.qstash.callbacks import callback_body, callback_options
from emulators.qstash.clock import EmulatorClock, TimeScale
from emulators.qstash.config import EmulatorConfig
from emulators.qstash.dedup import dedup_key
from emulators.qstash.delivery import ClientLanes, Deliverer
from emulators.qstash.errors import NotFound
from emulators.qstash.flow_control import FlowControls
from emulators.qstash.gates import Gate
from emulators.qstash.model import (
    AttemptResult,
    Delivered,
    Message,
    MessageState,
    PublishOutcome,
    PublishRequest,
    Queue,
)
from emulators.qstash.options import CallbackOptions
from emulators.qstash.routing import is_url
from emulators.qstash.scheduler import Scheduler
from emulators.qstash.signing import SigningKeys
from emulators.qstash.store import Store, new_id
from emulators.qstash.timeline import Due, Timeline

log = logging.getLogger("emulators.qstash")

# Concurrent deliveries server-wide (the real service has a per-plan global parallelism too); it also
# bounds the outgoing HTTP clients and sockets.
GLOBAL_PARALLELISM = 256


class Emulator:
    def __init__(self, config: EmulatorConfig, clock: EmulatorClock, lanes: ClientLanes) -> None:
        self.config = config
        self.clock = clock
        self.scale = TimeScale(config.time_scale)
        self.store = Store(clock)
        self.keys = SigningKeys(config.current_signing_key, config.next_signing_key)
        self.timeline = Timeline(clock, self._on_due)
        self.flow = FlowControls(clock, self.scale, self._flow_admitted)
        self.global_gate: Gate[Message] = Gate(self._start_attempt, clock, parallelism=GLOBAL_PARALLELISM)
        self.scheduler = Scheduler(self.store, clock, self.timeline, self.publish)
        self._deliverer = Deliverer(lanes, self.keys, config.routes)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- publishing -------------------------------------------------------------------------------

    def publish(self, request: PublishRequest) -> PublishOutcome:
        """Create the message(s) for one publish; NotFound for an unknown URL group."""
        targets, to_group = self._targets(request.destination)
        key = dedup_key(request.destination, request.body, request.options)
        if key is not None:
            seen = self.store.dedup.lookup(key)
            if seen is not None:
                self.store.stats.deduplicated += 1
                return PublishOutcome(seen, to_group, deduplicated=True)
        delivered = tuple(self._create(request, url, topic, endpoint) for url, topic, endpoint in targets)
        self.store.stats.published += len(delivered)
        if key is not None:
            self.store.dedup.remember(key, delivered)
        return PublishOutcome(delivered, to_group, deduplicated=False)

    def _targets(self, destination: str) -> tuple[list[tuple[str, str | None, str | None]], bool]:
        if is_url(destination):
            return [(destination, None, None)], False
        group = self.store.url_groups.get(destination)
        if group is None:
            raise NotFound(f"url group {destination!r} not found")
        return [(e.url, group.name, e.name) for e in group.endpoints], True

    def _create(self, request: PublishRequest, url: str, topic: str | None, endpoint: str | None) -> Delivered:
        options = request.options
        now_ms = self.clock.now_ms()
        wanted_ms = options.not_before_ms if options.not_before_ms is not None else now_ms + options.delay_ms
        message = Message(
            message_id=new_id("msg_"),
            url=url,
            body=request.body,
            options=options,
            created_ms=now_ms,
            not_before_ms=wanted_ms,
            due_ms=now_ms + self.scale.wait_ms(wanted_ms - now_ms),
            caller_ip=request.caller_ip,
            topic_name=topic,
            endpoint_name=endpoint,
            queue_name=request.queue_name,
            schedule_id=request.schedule_id,
        )
        if request.queue_name is not None:
            self.ensure_queue(request.queue_name)
        if options.flow_control is not None:
            self.flow.configure(options.flow_control)
        self.store.add_message(message)
        self.store.log("CREATED", message)
        self._schedule(message)
        return Delivered(message.message_id, url)

    def ensure_queue(self, name: str) -> Queue:
        queue = self.store.queues.get(name)
        if queue is None:
            now_ms = self.clock.now_ms()
            gate: Gate[Message] = Gate(self._queue_admitted, self.clock, parallelism=1)
            queue = self.store.queues[name] = Queue(name, now_ms, now_ms, gate)
        return queue

    # -- the way to an attempt --------------------------------------------------------------------

    def _schedule(self, message: Message) -> None:
        if message.due_ms <= self.clock.now_ms():
            self._admit(message)
        else:
            self.timeline.add(Due("message", message.message_id, message.due_ms))

    def _on_due(self, due: Due) -> None:
        if due.kind == "schedule":
            self.scheduler.tick(due)
            return
        message = self.store.messages.get(due.key)
        if message is not None and message.is_pending and message.due_ms == due.due_ms:
            self._admit(message)

    def _admit(self, message: Message) -> None:
        if message.queue_name is None or message.holds_queue_slot:
            self._admit_flow(message)
        else:
            self.ensure_queue(message.queue_name).gate.offer(message)

    def _queue_admitted(self, message: Message) -> None:
        message.holds_queue_slot = True
        self._admit_flow(message)

    def _admit_flow(self, message: Message) -> None:
        spec = message.options.flow_control
        if spec is None:
            self.global_gate.offer(message)
        else:
            self.flow.ensure(spec.key).gate.offer(message)

    def _flow_admitted(self, message: Message) -> None:
        message.holds_flow_slot = True
        self.global_gate.offer(message)

    def _start_attempt(self, message: Message) -> None:
        message.state = "ACTIVE"
        self.store.stats.attempts += 1
        self.store.log("ACTIVE", message)
        task = asyncio.create_task(self._run_attempt(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_attempt(self, message: Message) -> None:
        try:
            result = await self._deliverer.attempt(message)
        finally:
            self.global_gate.release()
            self._release_flow_slot(message)
        try:
            self._settle(message, result)
        except Exception:  # a bug here must not leave the message ACTIVE silently
            log.exception("settling message %s failed", message.message_id)

    # -- after an attempt -------------------------------------------------------------------------

    def _settle(self, message: Message, result: AttemptResult) -> None:
        if message.options.callback is not None:
            self._publish_callback(message, result, message.options.callback, message.options.callback_options)
        if message.cancel_requested:
            self._finish(message, "CANCELED")
        elif result.ok:
            self.store.stats.delivered += 1
            self.store.log("DELIVERED", message)  # the response is logged for ERROR only (openapi LogEntry)
            self._finish(message, "DELIVERED")
        elif result.non_retryable or message.retried >= message.options.retries:
            self._fail(message, result)
        else:
            self._retry(message, result)

    def _retry(self, message: Message, result: AttemptResult) -> None:
        self.store.log("ERROR", message, error=_describe(result), response=result)
        delay_ms = next_delay_ms(message.options.retry_delay, result, message.retried)
        message.retried += 1
        message.state = "RETRY"
        message.due_ms = self.clock.now_ms() + self.scale.wait_ms(delay_ms)
        self.store.stats.retried += 1
        self.store.log("RETRY", message, next_delivery_ms=message.due_ms)
        self._schedule(message)

    def _fail(self, message: Message, result: AttemptResult) -> None:
        self.store.log("ERROR", message, error=_describe(result), response=result)
        self.store.stats.failed += 1
        entry = self.store.add_dlq(message, result)
        self.store.log("FAILED", message, error=_describe(result))
        failure_url = message.options.failure_callback
        if failure_url is not None:
            options = message.options.failure_callback_options
            self._publish_callback(message, result, failure_url, options, entry.dlq_id)
        self._finish(message, "FAILED")

    def _publish_callback(
        self, source: Message, result: AttemptResult, url: str, options: CallbackOptions, dlq_id: str | None = None
    ) -> None:
        body = callback_body(source, result, dlq_id)
        request = PublishRequest(url, body, callback_options(source.options, options), source.caller_ip)
        self._create(request, url, None, None)
        self.store.stats.callbacks += 1

    def _finish(self, message: Message, state: MessageState) -> None:
        if state == "CANCELED":
            self.store.stats.canceled += 1
            self.store.log("CANCELED", message)
        message.state = state
        self._release_flow_slot(message)
        if message.holds_queue_slot:
            message.holds_queue_slot = False
            queue = self.store.queues.get(message.queue_name or "")
            if queue is not None:
                queue.gate.release()
        self.store.mark_finished(message)

    def _release_flow_slot(self, message: Message) -> None:
        spec = message.options.flow_control
        if message.holds_flow_slot and spec is not None:
            message.holds_flow_slot = False
            self.flow.ensure(spec.key).gate.release()

    # -- cancel, clock, shutdown ------------------------------------------------------------------

    def cancel(self, message: Message) -> bool:
        """Cancel a pending message; one in flight is cancelled when its attempt returns."""
        if not message.is_pending:
            return False
        message.cancel_requested = True
        self.store.log("CANCEL_REQUESTED", message)
        if message.state != "ACTIVE":  # waiting: drop it (gates skip it) and free the slots it holds
            self._finish(message, "CANCELED")
        return True

    def advance_clock(self, seconds: float) -> int:
        """Move the clock forward and fire whatever became due; returns how many entries fired."""
        self.clock.advance(seconds)
        fired = self.timeline.fire_due()
        self.flow.pump_all()
        return fired

    @property
    def in_flight(self) -> int:
        return self.global_gate.in_flight

    async def aclose(self) -> None:
        self.timeline.close()
        self.flow.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _describe(result: AttemptResult) -> str:
    return (result.error or "no response") if result.status is None else f"destination answered {result.status}"
