"""The named states a run passes through, as StrEnums: each is its own string in JSON, logs, the lock item and a
durable checkpoint, so a value written by an older run reads back the same."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """How a run ended: the report's, the email's and the metrics' status."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INCOMPLETE = "incomplete"
    CANCELLED = "cancelled"
    REFUSED = "refused"
    DRY_RUN = "dry_run"
    HANDED_OFF = "handed_off"
    # A second start of a run that is still going (the same run_key): it answers with that run's status.
    ALREADY_RUNNING = "already_running"
    # The expired-lock repair's own report, folded into the run's: never a run's outcome.
    REPAIR = "repair"


# The outcomes raised as RecycleNotCompleted (and a non-zero exit on the CLI); all others are what was asked for.
# A refused run changed nothing (another run holds the service, or the event was invalid); it still raises.
NOT_COMPLETED = (Status.FAILED, Status.INCOMPLETE, Status.REFUSED)


class Action(StrEnum):
    """What an event asks for."""

    RECYCLE = "recycle"
    STATUS = "status"
    CANCEL = "cancel"
    HISTORY = "history"


class Phase(StrEnum):
    """Where a run is in changing and restoring the service. Each is written before the change it announces."""

    ACQUIRED = "acquired"  # snapshot taken, nothing changed yet
    SURGING = "surging"  # about to suspend scaling and raise desiredCount (it may or may not have landed)
    SURGED = "surged"  # the surge's UpdateService succeeded
    RESTORING = "restoring"  # about to set desiredCount from restore_from to restore_to
    DESIRED_RESTORED = "desired_restored"  # desiredCount is back; the scalable target may still be changed
    TARGET_RESTORED = "target_restored"  # the service is as it was; only the release is left
    RELEASED = "released"  # idle: no run holds the service


PHASES = tuple(Phase)
# Phases in which desiredCount may still be above what it should be.
DESIRED_PENDING = (Phase.SURGING, Phase.SURGED, Phase.RESTORING)


class OnServiceFailure(StrEnum):
    """What a fleet does once one of its services ends failed (or refused)."""

    CONTINUE = "continue"  # the other services go on
    STOP = "stop"  # start no further service; those in flight finish and restore
