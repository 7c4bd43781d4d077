"""Locks with fencing tokens, Redlock over several endpoints, and leader election with terms:
`from shared.locks import FencedLock, Lease, Leadership, Term, fenced_set, FencedScript, StaleToken`."""

from shared.errors import LockNotAcquired, StaleToken
from shared.locks.fencing import FencedScript, fenced_set
from shared.locks.leader import Leadership, Term
from shared.locks.lock import FencedLock, Lease

__all__ = ["FencedLock", "FencedScript", "Leadership", "Lease", "LockNotAcquired", "StaleToken", "Term", "fenced_set"]
