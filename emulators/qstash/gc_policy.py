"""Keep the garbage collector's full passes from stalling deliveries.

A full (generation 2) pass walks every tracked object; with the history the emulator keeps (10,000
finished messages, the event log) that took 40-110 ms on a 2-CPU machine, and every timer due meanwhile
fired that much late. After each full pass the survivors are moved to the permanent generation with
`gc.freeze()`, so the next full pass walks only what was created since.

The trade-off: a frozen object that later becomes garbage inside a reference cycle is never reclaimed.
The emulator's records (messages, events, DLQ entries) hold no cycles and are freed by reference
counting as usual; what can be lost is cyclic garbage of the few requests in flight at a freeze.
Only the server entry point installs this; importing the package changes nothing.
"""

from __future__ import annotations

import gc
from typing import Any


def _after_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def install() -> None:
    gc.collect()
    gc.freeze()  # the modules and startup objects: never garbage
    if _after_collection not in gc.callbacks:
        gc.callbacks.append(_after_collection)
