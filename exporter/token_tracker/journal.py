"""The journal's record format: one checksummed JSON array per line.

Journal file ``<ledger>.journal``, JSON Lines, UTF-8. Every line is a JSON array
whose last element is the CRC-32 (8 lowercase hex digits) of the line's bytes
before ``,"<crc>"]``. The first element names the record kind:

* ``["h", 2, generation, created_at, "<crc>"]`` opens a journal file. The
  generation numbers journals: compaction folds generation ``g`` into the
  snapshot and starts ``g + 1``.
* ``["r", ts, session_id, model, input, output, cached, cache_creation,
  cost_nanos, savings_nanos, unpriced, "<crc>"]`` is one request. Costs are
  integer nano-dollars fixed when recorded; ``unpriced`` is 1 when the model
  had no price.
* ``["x", ts, session_id, "<crc>"]`` resets a session (``reset_session_usage``).
* ``["t", ts, byte_count, "<crc>"]`` notes that a torn, never-acknowledged tail of
  ``byte_count`` bytes was cut off during recovery.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

JOURNAL_FORMAT = 2
_TAIL = len(',"00000000"]')
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_crc32 = zlib.crc32


def seal(payload: str) -> bytes:
    """Close ``payload`` (a JSON array missing its ``]``) with its checksum and newline."""
    data = payload.encode("utf-8")
    return b'%s,"%08x"]\n' % (data, _crc32(data))


def quote(text: str) -> str:
    """A JSON string literal for ``text``."""
    return _dumps(text)


def header(generation: int, created_at: float) -> bytes:
    """The first line of a journal file."""
    return seal(f'["h",{JOURNAL_FORMAT},{generation},{created_at!r}')


def request(
    ts: float,
    session_q: str,
    model_q: str,
    counts: tuple[int, int, int, int],
    cost_nanos: int,
    savings_nanos: int,
    unpriced: bool,
) -> bytes:
    """A request line; ``session_q``/``model_q`` are already JSON-quoted.

    ``counts`` is (input, output, cached, cache_creation).
    """
    i, o, c, w = counts
    return seal(
        f'["r",{ts!r},{session_q},{model_q},{i},{o},{c},{w},'
        f"{cost_nanos},{savings_nanos},{1 if unpriced else 0}"
    )


def reset(ts: float, session_id: str) -> bytes:
    """A session-reset line."""
    return seal(f'["x",{ts!r},{quote(session_id)}')


def torn(ts: float, byte_count: int) -> bytes:
    """A note that recovery cut a torn tail of ``byte_count`` bytes."""
    return seal(f'["t",{ts!r},{byte_count}')


def crc_ok(line: bytes) -> bool:
    """Whether a line (without its newline) carries a matching checksum."""
    if len(line) <= _TAIL or line[-_TAIL : -_TAIL + 2] != b',"' or line[-2:] != b'"]':
        return False
    try:
        return int(line[-10:-2], 16) == _crc32(line[:-_TAIL])
    except ValueError:
        return False


def decode(line: bytes) -> list[Any] | None:
    """One checked line (without newline) as a record, or None when it is damaged."""
    if not crc_ok(line):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, list) and record and isinstance(record[0], str) else None


def header_generation(data: bytes) -> int | None:
    """The generation in a journal's first line (``data`` starts the file), or None."""
    newline = data.find(b"\n")
    rec = decode(data[:newline]) if newline > 0 else None
    if rec is None or rec[0] != "h" or len(rec) < 4 or type(rec[2]) is not int:
        return None
    return rec[2]


def decode_many(lines: list[bytes]) -> list[list[Any]]:
    """Decode lines already known to pass ``crc_ok``, in one parser call."""
    return json.loads(b"[" + b",".join(lines) + b"]")  # type: ignore[no-any-return]


def salvage(line: bytes) -> tuple[int, list[Any]] | None:
    """Find a valid record that follows a torn fragment on the same line.

    A writer killed inside ``write()`` can leave a fragment with no newline; the
    next writer's record then lands on the same line. Returns the fragment's
    length and the record, or None when no valid record ends the line.
    """
    start = line.find(b'["', 1)
    while start != -1:
        record = decode(line[start:])
        if record is not None:
            return start, record
        start = line.find(b'["', start + 1)
    return None
