"""The CLI's live view of a run on a terminal: a progress bar, with the run's log lines printed above it.

The bar is rich's (requirements-cli.txt): it redraws one line in place, takes custom columns (batch,
serving/desired, the last event) and prints other output above itself, which a bar that only counts
cannot. It is a CLI-only dependency, imported only when a terminal is watching: the Lambda package
never needs it. Piped, or with ``--json``, the CLI writes JSON lines as the function does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from recycler.model.progress import LiveProgress
from recycler.model.states import Status
from recycler.observability import logs

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

# Outcomes as a person reads them at the end of the bar.
_OUTCOME_STYLE = {Status.SUCCEEDED: "green", Status.CANCELLED: "yellow", Status.INCOMPLETE: "yellow"}
# An event line longer than this is clipped on the bar (the log line above it has it whole).
_EVENT_CHARS = 60


def wants_bar(stream: IO[str], json_lines: bool) -> bool:
    """A bar for a person at a terminal; JSON lines for a pipe, a file, or when asked for."""
    return not json_lines and stream.isatty()


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -"
    minutes, secs = divmod(int(seconds), 60)
    return f"ETA {minutes}m{secs:02d}s" if minutes else f"ETA {secs}s"


@dataclass(frozen=True)
class Columns:
    """The bar's text columns."""

    count: str
    batch: str
    serving: str
    eta: str
    event: str


def describe(progress: LiveProgress) -> Columns:
    """The bar's text columns for this progress."""
    batch = f"batch {progress.batch}/{progress.batches}" if progress.batches else "batch -"
    serving = f"serving {progress.serving}/{progress.desired}" if progress.desired is not None else "serving -"
    event = progress.event or ""
    if len(event) > _EVENT_CHARS:
        event = event[: _EVENT_CHARS - 1] + "…"
    count = f"{progress.recycled or 0}/{progress.total}" if progress.total else "-/-"
    return Columns(count, batch, serving, _eta(progress.eta_seconds), event)


class _ConsoleLines(logging.Handler):
    """Log lines as a person reads them, printed above the bar: the level and the message."""

    def __init__(self, console: Console, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.console = console
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        style = "red" if record.levelno >= logging.ERROR else "yellow" if record.levelno >= logging.WARNING else ""
        text = self.format(record) if self.formatter else f"{record.levelname:<7} {record.getMessage()}"
        self.console.print(text, style=style, markup=False, highlight=False)


class ProgressBar:
    """A live bar for one run: recycled/total, percent, batch, serving/desired, ETA, and the last event."""

    def __init__(
        self, title: str, stream: IO[str], width: int | None = None, formatter: logging.Formatter | None = None
    ) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        # width None: the terminal's own.
        self.console = Console(file=stream, width=width)
        self.progress: Progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TaskProgressColumn(),
            TextColumn("{task.fields[batch]}"),
            TextColumn("{task.fields[serving]}"),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[event]}"),
            console=self.console,
            transient=False,
            # The log handler prints through the console; nothing else writes to the stream meanwhile.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.latest = LiveProgress()
        # The lines above the bar: the level and the message, or as the formatter given writes them.
        self.lines = _ConsoleLines(self.console, formatter)
        self.stream = stream
        # The JSON handlers the bar stands in for while it is shown.
        self.replaced: list[logging.Handler] = []
        columns = describe(self.latest)
        self.task: TaskID = self.progress.add_task(
            title,
            total=None,
            count=columns.count,
            batch=columns.batch,
            serving=columns.serving,
            eta=columns.eta,
            event=columns.event,
        )

    def __enter__(self) -> ProgressBar:
        # The run's log lines go above the bar, as a person reads them: not as JSON, nor straight onto its stream.
        root = logging.getLogger()
        self.replaced = [
            h for h in root.handlers if getattr(h, "_recycle_json", False) or getattr(h, "stream", None) is self.stream
        ]
        for handler in self.replaced:
            root.removeHandler(handler)
        logs.attach(self.lines)
        root.addHandler(self.lines)
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()
        root = logging.getLogger()
        root.removeHandler(self.lines)
        for handler in self.replaced:
            root.addHandler(handler)

    def __call__(self, update: LiveProgress) -> None:
        """A run's update (recycler.model.progress.ProgressSink)."""
        self.latest = self.latest.updated(update)
        latest = self.latest
        columns = describe(latest)
        self.progress.update(
            self.task,
            total=latest.total,
            completed=latest.recycled or 0,
            count=columns.count,
            batch=columns.batch,
            serving=columns.serving,
            eta=columns.eta,
            event=columns.event,
        )

    def finish(self, status: str) -> None:
        """The outcome, on the bar's own line."""
        self(LiveProgress(status=status, eta_seconds=0))
        style = _OUTCOME_STYLE.get(Status(status), "red") if status in set(Status) else ""
        self.progress.update(self.task, description=f"{self.progress.tasks[0].description} [{status}]")
        self.console.print(f"recycle {status}", style=style, markup=False, highlight=False)
