"""The exception hierarchy shared by the handler, the engine and the notifier.

Every error the tool raises on purpose is a RecycleError, so callers can tell
"the recycle refused or failed, and said why" from a genuine bug.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from recycler.model.states import Status

# How much of a user's key or value an error message repeats.
MAX_ECHO = 80


class RecycleError(Exception):
    """Base class for every error this tool raises deliberately."""


class ConfigError(RecycleError):
    """The event or input.json is invalid. Raised before any AWS call."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """Text from the input, as an error message repeats it: at most ``limit`` characters, then its length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def shown(value: Any) -> str:
    """A scalar's repr, clipped; for anything else only its type. Never raises."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        # str() of a huge int is slow, and refused beyond 4300 digits.
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    if value is None or isinstance(value, (str, int, float, bool)):
        return clip(repr(value))
    return type(value).__name__


class PreflightError(RecycleError):
    """The service is not in a state we may touch. Nothing was changed."""


class ServiceNotFound(PreflightError):
    """The cluster or service does not exist."""


class LockHolderFacts(TypedDict):
    """Who holds a lock, as a refused run reports it (recycler.lock.store.holder_facts); JSON in a checkpoint."""

    owner: str
    phase: str
    # ISO 8601 UTC.
    expires_at: str
    # What a refused run counts from: the live count may include the holder's surge.
    snapshot_desired_count: int | None
    # The holder's run_key (None: it was started without one), and how far it has got.
    run_key: NotRequired[str | None]
    recycled: NotRequired[int]
    total: NotRequired[int]


class LockHeld(PreflightError):
    """Another run holds an unexpired lock on the service."""

    def __init__(self, message: str, holder: LockHolderFacts | None = None) -> None:
        super().__init__(message)
        # Who holds it, its phase, its expiry and its snapshot's desired count (recycler.lock.store.holder_facts).
        self.holder = holder


class LockLost(RecycleError):
    """This run's lock expired and another run took the service over. Nothing more is touched."""


class ReplacementFailed(RecycleError):
    """Replacement tasks kept stopping (for example TaskFailedToStart)."""

    # The message ends with the last failed replacement's stoppedReason, after this.
    REASON = "last stoppedReason: "

    @property
    def stopped_reason(self) -> str | None:
        """Read back from the message: a durable replay rebuilds the error from its message alone."""
        _, marked, reason = str(self).rpartition(self.REASON)
        return reason if marked and reason else None


class PlacementFailed(RecycleError):
    """ECS kept reporting that it could not place a task, and none appeared within placement_timeout_seconds."""


class AlarmTriggered(RecycleError):
    """One of the gating CloudWatch alarms went into ALARM: no further task is stopped."""


class RecycleCancelled(RecycleError):
    """An operator asked the run to stop (action cancel): no further task is stopped, and it is not a failure."""


class ReplacementTimeout(RecycleError):
    """No healthy replacement appeared within replacement_timeout_seconds."""


class TimeBudgetExhausted(RecycleError):
    """The Lambda invocation has no time left for another replacement."""


class AwsCallFailed(RecycleError):
    """An AWS call failed; the botocore error is chained as __cause__."""


class RestoreFailed(RecycleError):
    """The service could not be put back. The lock is left so the next run repairs it."""


class LockCorrupt(PreflightError):
    """The lock item holds values this tool would never have written. Nothing is applied from it."""


def rebuilt(name: str, message: str, base: type[RecycleError] = RecycleError) -> RecycleError | None:
    """The error of this module called name (a kind of base) again, from its message; else None.

    A checkpoint keeps an error as its type's name and its message, on first run and on replay alike.
    ConfigError is never rebuilt here: it needs its field as well.
    """
    kind = globals().get(name)
    if isinstance(kind, type) and issubclass(kind, base) and kind is not ConfigError:
        return kind(message)
    return None


def outcome_of(error: Exception) -> Status:
    """The report's status for a run this error stopped."""
    if isinstance(error, TimeBudgetExhausted):
        return Status.INCOMPLETE
    if isinstance(error, RecycleCancelled):
        return Status.CANCELLED
    if isinstance(error, LockHeld):
        # Another run has the service: this one changed nothing and is not a failure of the recycle.
        return Status.REFUSED
    return Status.FAILED
