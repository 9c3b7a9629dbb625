"""What one run works with, built once: the host's parts (clients, clock, runtime, settings, owner, lock table)
and, per run, the request, its service's gateway and when it started.

The engine's classes take a RunContext instead of a dozen loose parameters, so a part a host adds
reaches every class through one object, and none of them sets another's attributes.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from recycler.aws.eventbus import EventBus
from recycler.aws.gateway import ServiceGateway
from recycler.lock.store import DynamoLockStore
from recycler.model.progress import LiveProgress, ProgressSink
from recycler.model.request import RecycleRequest
from recycler.model.runtime import Clock, Runtime
from recycler.model.settings import RecycleSettings


@dataclass(frozen=True)
class AwsClients:
    """The boto3 clients a run reads and changes its service with (the lock table's is the store's)."""

    ecs: Any
    autoscaling: Any
    elbv2: Any = None
    cloudwatch: Any = None
    # Asked only for the account a not-found error names.
    sts: Any = None
    # EventBridge, in the function's own account: None puts no events.
    events: Any = None

    def gateway(self, request: RecycleRequest) -> ServiceGateway:
        return ServiceGateway(self.ecs, self.autoscaling, self.elbv2, request, cloudwatch=self.cloudwatch, sts=self.sts)

    def bus(self) -> EventBus | None:
        return EventBus(self.events) if self.events is not None else None

    @property
    def region(self) -> str | None:
        """The region the session reaches, until the service's own ARN says it (a first call may fail)."""
        return getattr(getattr(self.ecs, "meta", None), "region_name", None)


@dataclass(frozen=True)
class EngineSetup:
    """What a host hands the engine: the same for every run it makes."""

    clients: AwsClients
    clock: Clock
    runtime: Runtime
    settings: RecycleSettings = dataclasses.field(default_factory=RecycleSettings)
    owner_id: str = "local"
    # The lock table. Only a dry run may go without one.
    lock_store: DynamoLockStore | None = None
    # A person watching (the CLI's bar): told what the run learns as it goes. None: nobody is.
    progress: ProgressSink | None = None


@dataclass(frozen=True)
class RunContext:
    """One run: the host's setup, the request, the service's gateway, and when the run started."""

    setup: EngineSetup
    request: RecycleRequest
    gateway: ServiceGateway
    started: float

    @property
    def clock(self) -> Clock:
        return self.setup.clock

    @property
    def runtime(self) -> Runtime:
        return self.setup.runtime

    @property
    def settings(self) -> RecycleSettings:
        return self.setup.settings

    @property
    def owner_id(self) -> str:
        return self.setup.owner_id

    @property
    def lock_store(self) -> DynamoLockStore | None:
        return self.setup.lock_store

    def with_runtime(self, runtime: Runtime) -> RunContext:
        """The same run on another runtime (a live run's, which beats while it waits)."""
        return dataclasses.replace(self, setup=dataclasses.replace(self.setup, runtime=runtime))

    def log(self, level: int, message: str, **fields: Any) -> None:
        # Cluster and service are bound once for the whole run (Recycler.run), not passed on every line.
        self.runtime.log(level, message, **fields)
        if level >= logging.WARNING:
            # A warning (a task skipped, an alarm, a placement failure) is what a person watching should see.
            self.tell(LiveProgress(event=message))

    def tell(self, progress: LiveProgress) -> None:
        """Tell whoever watches what the run just learned. Only a local host watches: a durable replay tells no one."""
        sink = self.setup.progress
        if sink is not None:
            sink(progress)
