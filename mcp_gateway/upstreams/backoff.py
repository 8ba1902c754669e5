"""How long to wait before reconnecting to an upstream that went away.

Exponential with jitter: a crashing upstream is not respawned in a tight loop, and several gateway replicas that lost
the same upstream at the same moment do not all come knocking at once when it returns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Past this many doublings every delay is the cap anyway; stopping here keeps `factor ** attempt` finite.
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    # Each delay is scaled by a random factor in [1 - jitter, 1 + jitter].
    jitter: float = 0.2
    # A connection that stayed up this long counts as healthy: the next failure starts again from `initial`.
    stable_after: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect attempt number ``attempt`` (0 for the first)."""
        base = min(self.cap, self.initial * self.factor ** min(attempt, _MAX_EXPONENT))
        return base * random.uniform(1.0 - self.jitter, 1.0 + self.jitter)
