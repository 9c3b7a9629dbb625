"""SIGINT and SIGTERM during a CLI run: a cancel, never an abandonment (the first), then a warning, then a way out."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any


class Interrupts:
    """SIGINT and SIGTERM during a CLI run, counted.

    The first asks the run to stop as a cancel does: it stops no further task, lets the replacements in
    flight finish, restores, releases the lock and reports cancelled (the run reads ``reason``). The second
    says the restore is under way and keeps going. The third leaves at once: the lock stays, and the next run
    repairs the service from it. A signal also ends the run's current sleep (``sleep``, on a self-pipe), so
    the run acts within a poll. The handler writes with os.write only: a print could re-enter a stream the
    run was writing to when the signal came.
    """

    def __init__(self, status: str) -> None:
        self.status = status
        self.signals: list[int] = []
        self._pipe: tuple[int, int] | None = None

    def reason(self) -> str | None:
        """The first signal's name once one came (the run is then a cancelled one), else None."""
        return signal.Signals(self.signals[0]).name if self.signals else None

    def exit_code(self) -> int | None:
        return 128 + self.signals[0] if self.signals else None

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """The handlers for the run (the previous ones back after it); none outside the main thread."""
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        self._pipe = (read, write)
        previous: dict[signal.Signals, Any] = {}
        try:
            if threading.current_thread() is threading.main_thread():
                for number in (signal.SIGINT, signal.SIGTERM):
                    previous[number] = signal.signal(number, self._on_signal)
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            self._pipe = None
            os.close(read)
            os.close(write)

    def sleep(self, seconds: float) -> None:
        """time.sleep, ended early by a signal that came during it (or since the last sleep)."""
        if self._pipe is None:
            time.sleep(seconds)
            return
        read = self._pipe[0]
        ready, _, _ = select.select([read], [], [], seconds)
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(read, 64):
                    pass

    def _on_signal(self, number: int, frame: Any) -> None:
        self.signals.append(number)
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                os.write(self._pipe[1], b"!")
        name = signal.Signals(number).name
        if len(self.signals) == 1:
            _say(
                f"{name}: stopping as a cancel does: no further task is stopped, the replacements in flight "
                "finish, then the service is restored and the lock released."
            )
        elif len(self.signals) == 2:
            _say(f"{name}: the restore is under way, keeping on with it. Interrupt once more to leave at once.")
        else:
            _say(
                f"{name}: leaving now, without finishing. The lock stays: the next run repairs the service "
                f"from it once it expires. Check it with: {self.status}"
            )
            os._exit(128 + self.signals[0])


def _say(line: str) -> None:
    """One line on stderr, from a signal handler: os.write, which takes no lock a print could hold."""
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), (line + "\n").encode())
