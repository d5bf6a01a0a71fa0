"""An ``h2`` connection tuned for many short streams, shared by the APNs client and the mock APNs.

Two costs of stock ``h2.connection.H2Connection`` dominate a push (one tiny request, one tiny reply):

- Before opening a stream (``send_headers``, or a peer's HEADERS), h2 counts the open streams
  by scanning every stream it holds, so each push costs O(streams in flight): at 1,000
  concurrent streams that scan alone was most of the CPU. Here the count is
  ``len(streams) - closed``: the owner reports each stream it sees close (``stream_closed``)
  and closed streams are pruned in bulk once enough have gathered (amortised O(1)). A stream
  that closes without being reported is counted as open until the next prune: conservative.
- h2's HPACK encoder Huffman-codes every literal in pure Python; the per-push literals (the
  device path, apns-id) are random hex, where Huffman saves little and costs more than the
  rest of the request. Here literals are sent plain (RFC 7541 allows either).

Header checks are off too (``config``): both sides build and check the few headers APNs uses.
"""

from __future__ import annotations

import h2.config
import h2.connection
import hpack


def config(*, client_side: bool) -> h2.config.H2Configuration:
    """Bytes in and out, no header validation or normalisation by h2."""
    return h2.config.H2Configuration(
        client_side=client_side, header_encoding=None, validate_inbound_headers=False,
        normalize_inbound_headers=False, validate_outbound_headers=False, normalize_outbound_headers=False,
    )


class _PlainEncoder(hpack.Encoder):
    def encode(self, headers, huffman: bool = False) -> bytes:  # type: ignore[override]
        return super().encode(headers, huffman=False)


class FastH2Connection(h2.connection.H2Connection):
    """``H2Connection`` with O(1) open-stream counts and plain HPACK literals (see module doc)."""

    PRUNE_SLACK = 64

    def __init__(self, *, client_side: bool) -> None:
        super().__init__(config=config(client_side=client_side))
        self.encoder = _PlainEncoder()
        self._closed = 0

    def _open_count(self) -> int:
        # One side only opens streams (no server push), so all streams count for that side.
        return len(self.streams) - self._closed

    open_outbound_streams = property(_open_count)  # type: ignore[assignment]
    open_inbound_streams = property(_open_count)  # type: ignore[assignment]

    def stream_closed(self) -> None:
        """The owner saw a stream end (both sides), get reset, or reset it itself."""
        self._closed += 1
        if self._closed > self.PRUNE_SLACK + (len(self.streams) >> 1):
            self.prune()

    def prune(self) -> None:
        """Drop closed streams from ``streams`` (h2's own scan); the count is exact again."""
        h2.connection.H2Connection.open_outbound_streams.fget(self)  # type: ignore[attr-defined]
        self._closed = 0
