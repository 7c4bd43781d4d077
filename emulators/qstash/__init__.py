"""A QStash-compatible local server: the official `qstash` SDK works against it unchanged.

Run it with `python -m emulators.qstash --port P`; the wire rules it follows are in
shared/reference/qstash.md (section numbers cited in the modules). Everything lives in memory, on
one event loop:

    __main__.py       the CLI (defaults: the official dev server's port, token and keys)
    app.py            ASGI entry: auth, routing on the raw path, JSON errors, lifespan
    api/              one module per REST resource: publish (+enqueue, batch), messages, queues,
                      schedules, url_groups, keys, events, dlq, flow_control, control (/__clock, /__stats)
    engine.py         the emulator: publish, the life of a message, cancel, clock advance
    options.py        `Upstash-*` request headers -> PublishOptions (400 names the header); flow_spec.py
    gates.py          FIFO admission with parallelism / rate / pause (queues, flow control, global cap)
    flow_control.py   flow-control keys (configure, pin, pause); scheduler.py runs cron schedules
    timeline.py       the due-time heap driven by one `loop.call_later` timer
    delivery.py       one signed HTTP attempt (httpx); signing.py builds the JWT
    backoff.py        the delay before the next attempt; retry_expr.py parses `Upstash-Retry-Delay`
    callbacks.py      callback and failure-callback bodies
    cron.py           5-field cron with CRON_TZ; durations.py parses `1h30m`, `500ms`
    model.py          the records; store.py keeps them (bounded); dedup.py the 10-minute window
    wire.py           messages, DLQ, events as the SDK's JSON; wire_resources.py queues, groups, schedules
    clock.py          the controllable clock and the time scale; gc_policy.py keeps GC pauses short
    config.py, errors.py, routing.py (`--route`)

Product code (functions/, shared/) never imports this package.
"""
