"""Run several recycles at once on one virtual clock, switching between them at every AWS call.

Each participant runs in its own thread, but only one thread runs at a time:
the participant holding the baton. A participant gives the baton up

- before each of its AWS calls (a botocore ``before-call`` hook), and the next
  ready participant gets it (strict alternation while two are ready). Each
  call also costs ``call_seconds`` of virtual time, as a real round trip
  does, so a run started a second later meets the first mid-pre-flight;
- when it sleeps on the clock: it becomes ready again at now + seconds.

When nobody is ready, the clock jumps to the earliest wake-up. So two runs
interleave call by call where they overlap, and wait for each other's virtual
time where they do not, deterministically. moto is not thread-safe, but it
never sees two threads at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dev.simulator import VirtualClock


@dataclass
class _Participant:
    name: str
    run: Callable[[], Any]
    wake: float
    done: bool = False
    result: Any = None
    error: BaseException | None = None
    threads: set[int] = field(default_factory=set)


class Interleaver:
    def __init__(self, clock: VirtualClock, call_seconds: float = 0.25) -> None:
        self.clock = clock
        self.call_seconds = call_seconds
        self.cond = threading.Condition()
        self.participants: dict[str, _Participant] = {}
        self.current: str | None = None
        self.switches = 0
        self._last = ""

    def add(self, name: str, run: Callable[[], Any], start_after: float = 0.0) -> None:
        self.participants[name] = _Participant(name, run, self.clock.now() + start_after)

    def adopt(self, name: str) -> None:
        """The current thread works for `name` from now on (the durable runner's worker threads)."""
        with self.cond:
            self.participants[name].threads.add(threading.get_ident())

    def participant(self) -> str | None:
        ident = threading.get_ident()
        return next((p.name for p in self.participants.values() if ident in p.threads), None)

    # ---------------------------------------------------------------- yielding

    def pause(self, name: str, until: float) -> None:
        """`name` gives up the baton, and takes it back once scheduled at virtual time >= until."""
        with self.cond:
            self.participants[name].wake = until
            self._hand_over(prefer_not=name)
            self.cond.wait_for(lambda: self.current == name)

    def before_call(self, **_: Any) -> None:
        name = self.participant()
        if name is not None:
            self.pause(name, self.clock.now() + self.call_seconds)

    def sleep(self, seconds: float) -> bool:
        """A participant's sleep; False when the caller is not a participant (sleep as usual)."""
        name = self.participant()
        if name is None:
            return False
        self.pause(name, self.clock.now() + max(0.0, seconds))
        return True

    def interleave_clients_of(self, monkeypatch: Any, module: Any) -> None:
        """Every client `module.create_client` makes from now on yields at each call."""
        real_create_client = module.create_client

        def interleaved_client(session: Any, service: str) -> Any:
            client = real_create_client(session, service)
            client.meta.events.register("before-call.*.*", self.before_call)
            return client

        monkeypatch.setattr(module, "create_client", interleaved_client)

    def _hand_over(self, prefer_not: str) -> None:
        waiting = [p for p in self.participants.values() if not p.done]
        if not waiting:
            self.current = None
            self.cond.notify_all()
            return
        ready = [p for p in waiting if p.wake <= self.clock.t]
        if not ready:
            earliest = min(p.wake for p in waiting)
            self.clock.slept += earliest - self.clock.t
            self.clock.t = earliest
            ready = [p for p in waiting if p.wake <= earliest]
        others = [p for p in ready if p.name != prefer_not]
        chosen = (others or ready)[0].name
        if chosen != self._last:
            self.switches += 1
        self.current = self._last = chosen
        self.cond.notify_all()

    # ---------------------------------------------------------------- running

    def run(self) -> dict[str, _Participant]:
        threads = [threading.Thread(target=self._body, args=(p,), daemon=True) for p in self.participants.values()]
        with self.cond:
            self._hand_over(prefer_not="")
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
            assert not thread.is_alive(), "an interleaved run hung"
        return self.participants

    def _body(self, participant: _Participant) -> None:
        participant.threads.add(threading.get_ident())
        with self.cond:
            self.cond.wait_for(lambda: self.current == participant.name)
        try:
            participant.result = participant.run()
        except BaseException as e:
            participant.error = e
        finally:
            with self.cond:
                participant.done = True
                self._hand_over(prefer_not=participant.name)


@contextmanager
def interleaving(clock: VirtualClock, *clients: Any) -> Iterator[Interleaver]:
    """An Interleaver whose participants yield at every call of these clients and at every sleep of the clock."""
    interleaver = Interleaver(clock)
    for client in clients:
        client.meta.events.register("before-call.*.*", interleaver.before_call)
    original = clock.sleep

    def sleep(seconds: float) -> None:
        if not interleaver.sleep(seconds):
            original(seconds)

    clock.sleep = sleep  # type: ignore[method-assign]
    try:
        yield interleaver
    finally:
        clock.sleep = original  # type: ignore[method-assign]
        for client in clients:
            client.meta.events.unregister("before-call.*.*", interleaver.before_call)
