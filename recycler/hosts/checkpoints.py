"""How a durable execution writes what it checkpoints: step results and a wait's state as compact JSON,
compressed when large (a checkpoint holds at most 256 KB)."""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_durable_execution_sdk_python.serdes import SerDes, SerDesContext

from recycler.model.runtime import PollState

try:
    import lzma as _lzma
except ImportError:  # a Python built without liblzma: zlib then, whose window is too short for 5,000 tasks
    _lzma = None  # type: ignore[assignment]


S = TypeVar("S", bound=PollState)

# A checkpoint holds at most 256 KB. The pre-flight step's result lists every task ARN twice,
# which passes that at about 1,400 tasks as plain JSON. Compressed (LZMA, whose window spans
# both lists), 5,000 tasks, the most ECS runs in one service, take about 136 KB.
COMPRESS_ABOVE_BYTES = 32 * 1024
_LZMA, _ZLIB = "x:", "z:"


class CompactJsonSerDes(SerDes[Any]):
    """Step results and polling state as plain JSON, compressed when large.

    The engine's step results are JSON by contract (dicts, lists, floats,
    strings). Plain JSON is also what the execution history shows, except for
    the few large results, which are compressed and base64-encoded behind an
    "x:" (LZMA) or "z:" (zlib) prefix that no JSON text starts with.
    """

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        text = json.dumps(value, separators=(",", ":"))
        if len(text) <= COMPRESS_ABOVE_BYTES:
            return text
        if _lzma is not None:
            return _LZMA + base64.b64encode(_lzma.compress(text.encode())).decode("ascii")
        return _ZLIB + base64.b64encode(zlib.compress(text.encode(), 9)).decode("ascii")

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        if data.startswith(_LZMA):
            data = _lzma.decompress(base64.b64decode(data[len(_LZMA) :])).decode()
        elif data.startswith(_ZLIB):
            data = zlib.decompress(base64.b64decode(data[len(_ZLIB) :])).decode()
        return json.loads(data)


SERDES = CompactJsonSerDes()


@dataclass
class PollStateSerDes(SerDes[S]):
    """A wait's state as SERDES writes its to_dict(): the same checkpoint text as when the engine passed JSON."""

    kind: type[S]

    def serialize(self, value: S, serdes_context: SerDesContext) -> str:
        return SERDES.serialize(value.to_dict(), serdes_context)

    def deserialize(self, data: str, serdes_context: SerDesContext) -> S:
        return self.kind.from_dict(SERDES.deserialize(data, serdes_context))
