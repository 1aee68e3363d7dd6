"""Singleflight for the response cache: concurrent identical requests in one process make one
upstream call.

The first request that misses a key leads: it registers a flight and goes upstream. Identical
non-stream requests that miss while the flight is out follow: they wait for the leader's answer
and are served it as a hit. The leader lands the flight with its stored value as soon as it has
one, or with None (the answer was an error, not cacheable, or the client left), after which the
followers go upstream themselves. The flight stays registered until the leader's answer is in the
store, so a request that arrives in between follows rather than calling upstream again.

Most misses are never followed, so a flight is a plain dict entry until its first follower makes
it a future.
"""

from __future__ import annotations

import asyncio

OUT = object()  # a flight with no follower yet


class Flights:
    def __init__(self) -> None:
        # OUT, a future the followers wait on, or (landed before any follower) the leader's value.
        self._flights: dict[str, object] = {}
        self.following = 0  # requests waiting for a leader now

    def __len__(self) -> int:
        return len(self._flights)

    def __contains__(self, key: str) -> bool:
        return key in self._flights

    def lead(self, key: str) -> bool:
        """Register a flight for ``key``; False when one is out already (then ``follow``)."""
        if key in self._flights:
            return False
        self._flights[key] = OUT
        return True

    async def follow(self, key: str) -> bytes | None:
        """The leader's value, once it lands; None when there is no flight or it brought nothing."""
        flight = self._flights.get(key)
        if flight is None or isinstance(flight, bytes):
            return flight
        if flight is OUT:
            flight = self._flights[key] = asyncio.get_running_loop().create_future()
        assert isinstance(flight, asyncio.Future)
        self.following += 1
        try:
            # Shielded: a follower whose client leaves must not cancel the flight for the others.
            return await asyncio.shield(flight)
        finally:
            self.following -= 1

    def land(self, key: str, value: bytes | None) -> None:
        """Hand the followers the leader's value (None: go upstream yourselves)."""
        flight = self._flights.get(key)
        if flight is OUT:
            self._flights[key] = value
        elif isinstance(flight, asyncio.Future) and not flight.done():
            flight.set_result(value)

    def end(self, key: str) -> None:
        """The leader is done (its value stored, or none to store): forget the flight."""
        flight = self._flights.pop(key, None)
        if isinstance(flight, asyncio.Future) and not flight.done():
            flight.set_result(None)
