"""Where a request waits or is refused: one bounded gate per resource, each a ``Slots`` or a bounded queue.

| resource                          | gate (setting)                                     | refused with              |
|-----------------------------------|----------------------------------------------------|---------------------------|
| open connections                  | ``server.connections`` (max_connections)           | 503, connection closed    |
| images decoded/detected at once   | ``Pipeline.images`` (max_concurrent_images)        | 503 overloaded            |
| faces waiting for the classifier  | ``DynamicBatcher``'s queue (queue_size)            | 503 overloaded            |
| open WS /stream connections       | ``server.stream`` (stream_max_connections)         | close 1013                |

The image gate is read twice: ``server.admission`` checks it from a request's headers (a refusal then costs no
upload and no parse), and ``Pipeline.analyze`` takes a slot, the check that holds. A slot is held until the work
it stands for has ended, not until the request has: a request that times out leaves its decode running, and that
work keeps counting. Nothing waits in line for a slot: a full gate answers at once with Retry-After, so latency
stays bounded for the requests already admitted.
"""

from __future__ import annotations

from collections.abc import Callable

from deepfer.errors import Overloaded


class Slots:
    """``limit`` units of work in progress; ``take`` beyond it raises ``Overloaded`` naming the setting.

    ``what`` names the units as a refusal counts them ("images in progress", "streams open").
    """

    def __init__(
        self,
        what: str,
        limit: int,
        *,
        setting: str,
        retry_after_s: int = 1,
        on_change: Callable[[int], None] | None = None,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        self._what = what
        self._limit = limit
        self._setting = setting
        self._retry_after_s = retry_after_s
        self._on_change = on_change
        self._on_refused = on_refused
        self._taken = 0

    @property
    def taken(self) -> int:
        return self._taken

    def check(self) -> None:
        """Raise ``Overloaded`` while every slot is taken (taking none)."""
        if self._taken >= self._limit:
            if self._on_refused is not None:
                self._on_refused()
            raise Overloaded(
                f"{self._taken} {self._what} ({self._setting}={self._limit}, DEEPFER_{self._setting.upper()})",
                self._retry_after_s,
            )

    def take(self) -> None:
        self.check()
        self._change(+1)

    def give_back(self) -> None:
        self._change(-1)

    def _change(self, by: int) -> None:
        self._taken += by
        if self._on_change is not None:
            self._on_change(self._taken)
