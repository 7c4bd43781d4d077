"""The one exception tree of the library; data lives in attributes, not in message strings.

StashkitError
└── ConfigurationError      a required environment variable is missing or malformed
"""

from __future__ import annotations


class StashkitError(Exception):
    """Base of every error this library raises on purpose."""


class ConfigurationError(StashkitError):
    """The environment does not configure a service; `variable` names what to set."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable
        self.problem = problem
