"""The per-client cap: how many WebSocket connections (/ws in every mode, /v1/realtime) each client holds
open, and at most MAX_CONNECTIONS_PER_CLIENT of them, so that one client cannot hold every slot of
MAX_CONNECTIONS or MAX_STREAMS while the others wait. Who a client is: access.client_of.

A connection is counted from its admission (WebSocketManager.admission checks, `hold` counts, in the same
step) until it closes; one beyond the cap is refused with close 1013 and `retry_after`.
"""

from __future__ import annotations

from collections import Counter


class ClientFull(Exception):
    """A client already holds its cap of connections: the message says so; `retry_after` is the hint."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class Held:
    """One connection counted for its client, given back once (`release`)."""

    def __init__(self, connections: "ClientConnections | None", client: str) -> None:
        self._connections = connections
        self._client = client

    def release(self) -> None:
        if self._connections is not None:
            self._connections._release(self._client)
            self._connections = None


class ClientConnections:
    def __init__(self, cap: int, retry_after: float = 5.0) -> None:
        self.cap = cap  # 0: no cap (connections are still counted)
        self.retry_after = retry_after
        self._held: Counter[str] = Counter()

    def held(self, client: str) -> int:
        return self._held[client]

    def refusal(self, client: str) -> ClientFull | None:
        """Why `client` may not open one more connection now, if it may not."""
        if self.cap and self._held[client] >= self.cap:
            return ClientFull(
                f"this client already holds {self._held[client]} connections, the limit per client "
                f"(MAX_CONNECTIONS_PER_CLIENT): try again in {self.retry_after:g} s", self.retry_after,
            )
        return None

    def hold(self, client: str) -> Held:
        """Count one connection for `client` (or ClientFull)."""
        refused = self.refusal(client)
        if refused is not None:
            raise refused
        self._held[client] += 1
        return Held(self, client)

    def _release(self, client: str) -> None:
        self._held[client] -= 1
        if self._held[client] <= 0:
            del self._held[client]
