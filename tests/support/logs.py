"""Reading the log lines the ``captured_logs`` fixture collected."""

from __future__ import annotations

import io
import json
from typing import Any


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
