"""Dead letters: job runs whose retries ran out, kept in Redis to be read, redriven once, or purged.

    from shared.jobs.dlq import DeadLetter, DeadLetters

The store is shared/jobs/dlq/store.py (scripts beside it in scripts.py), the redrive-once rules are
redrive.py, reading QStash's failure callback is callback.py, and reconcile.py fills in what QStash's
own DLQ holds and a lost callback never brought. The HTTP API is functions/dlq.py.
"""

from shared.jobs.dlq.model import DeadLetter, Entry, EntryFilter, Page, Status
from shared.jobs.dlq.store import DeadLetters

__all__ = ["DeadLetter", "DeadLetters", "Entry", "EntryFilter", "Page", "Status"]
