"""Jobs over QStash: `from shared.jobs import job, schedule, Retry, PermanentFailure, JobContext`.

Only the declarations load here (no QStash SDK): a module that declares jobs imports this cheaply, and
the SDK loads when something is published (shared/jobs/publish.py).
"""

from shared.errors import PermanentFailure, Retry
from shared.jobs.registry import JobContext, job, schedule

__all__ = ["JobContext", "PermanentFailure", "Retry", "job", "schedule"]
