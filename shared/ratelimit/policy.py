"""Rate-limit policies, declared in one place: JSON in `STASHKIT_RATELIMIT_POLICIES`, or the defaults
below. Policy names are 1-64 letters, digits, `_`, `.` or `-`. The same msgspec types validate the JSON
and document it.

    {"api": {"limits": [{"algorithm": "sliding_window", "limit": 10, "window_s": 1},
                        {"algorithm": "fixed_window", "limit": 1000, "window_s": 86400}],
             "tiers": {"pro": [{"algorithm": "sliding_window", "limit": 100, "window_s": 1}]},
             "tier_prefixes": {"pk_pro_": "pro"}, "deny": ["abuser"], "outage": "fail_open"},
     "signup": {"limits": [{"algorithm": "fixed_window", "limit": 5, "window_s": 3600}], "public": true}}

`public: true` lets anonymous callers of the rate-limit service check the policy, for their own
address only (the key is derived from the request, never chosen by the caller: functions/ratelimit.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from shared.config import RATELIMIT_POLICIES_VAR, ratelimit_settings
from shared.errors import ConfigurationError

_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
Algorithm = Literal["fixed_window", "sliding_window", "token_bucket"]
KIND: dict[str, int] = {"fixed_window": 1, "sliding_window": 2, "token_bucket": 3}
Positive = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=366 * 86_400)]


class Limit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`limit` requests per `window_s`; for a token bucket, `limit` is the burst (bucket size) and
    `refill` tokens come back every `window_s`."""

    algorithm: Algorithm
    limit: Positive
    window_s: Seconds
    refill: Positive | None = None

    @property
    def window_ms(self) -> int:
        return max(1, round(self.window_s * 1000))

    def wire(self) -> list[int]:
        return [KIND[self.algorithm], self.limit, self.window_ms, self.refill or self.limit]

    def header(self) -> str:  # RateLimit-Policy item (draft-ietf-httpapi-ratelimit-headers)
        return f"{self.limit};w={max(1, round(self.window_s))}"


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    limits: Annotated[list[Limit], msgspec.Meta(min_length=1, max_length=8)]
    # Per-tier limits, chosen by identifier prefix (`tier_prefixes`); the default tier uses `limits`.
    tiers: dict[str, Annotated[list[Limit], msgspec.Meta(min_length=1, max_length=8)]] = {}
    tier_prefixes: dict[str, str] = {}
    concurrency: Positive | None = None  # at most this many requests in flight per identifier
    lease_ttl_s: Seconds = 30.0  # a lease of a function that died mid-request expires after this
    deny: frozenset[str] = frozenset()
    outage: Literal["fail_open", "fail_closed"] = "fail_open"
    timeout_ms: Annotated[int, msgspec.Meta(ge=10, le=30_000)] = 1000
    max_cost: Positive = 1000
    public: bool = False  # anonymous service callers may check it, keyed by their own address

    def __post_init__(self) -> None:
        unknown = set(self.tier_prefixes.values()) - set(self.tiers)
        if unknown:
            raise ValueError(f"tier_prefixes name tiers that are not declared: {sorted(unknown)}")

    def tier_of(self, identifier: str) -> str:
        for prefix, tier in self.tier_prefixes.items():
            if identifier.startswith(prefix):
                return tier
        return "default"

    def limits_for(self, tier: str) -> list[Limit]:
        return self.tiers.get(tier, self.limits)


DEFAULT_POLICIES: dict[str, Policy] = {
    # A public API: a burst guard and a daily quota; paying keys get more.
    "api": Policy(
        limits=[Limit("sliding_window", 10, 1), Limit("fixed_window", 1000, 86_400)],
        tiers={"pro": [Limit("sliding_window", 100, 1), Limit("fixed_window", 100_000, 86_400)]},
        tier_prefixes={"pk_pro_": "pro"},
    ),
    # Login and payment routes refuse rather than guess when Redis is down.
    "login": Policy(limits=[Limit("fixed_window", 5, 60)], outage="fail_closed", timeout_ms=500),
    # Uploads: bursts of 5, one more every 2 s, and at most 2 at once per user.
    "uploads": Policy(limits=[Limit("token_bucket", 5, 2, refill=1)], concurrency=2, lease_ttl_s=60),
    # Leaderboard submissions, per board and member (shared/leaderboards): a game posts a score when a
    # round ends, so 5 in 10 s with at most 120 an hour passes any honest player and stops a flood.
    "leaderboard_submit": Policy(limits=[Limit("sliding_window", 5, 10), Limit("fixed_window", 120, 3600)]),
}


def load_policies(source: str | None = None) -> dict[str, Policy]:
    """Policies from JSON (`STASHKIT_RATELIMIT_POLICIES` when `source` is None), else the defaults."""
    raw = ratelimit_settings().policies_json if source is None else source
    if raw is None:
        return DEFAULT_POLICIES
    try:
        policies = msgspec.json.decode(raw, type=dict[Annotated[str, msgspec.Meta(pattern=_NAME)], Policy])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigurationError(RATELIMIT_POLICIES_VAR, f"is not a valid policy map: {exc}") from exc
    if not policies:
        raise ConfigurationError(RATELIMIT_POLICIES_VAR, "declares no policy")
    return policies
