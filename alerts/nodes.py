"""Node heartbeats for heartbeat alert rules: ``guardians.fleet.Fleet`` adapted to ``NodeSource``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any


class FleetNodes:
    """Every node that ever beat into the control DB, with its last heartbeat time.

    A node that stopped beating stays in the answer (its age keeps growing, so
    ``NodeHeartbeatMissing`` fires) until it is removed from the fleet (``Fleet.forget``).
    """

    def __init__(self, fleet: Any) -> None:
        self.fleet = fleet

    @classmethod
    def from_url(cls, control_db_url: str) -> FleetNodes:
        from guardians.fleet import Fleet

        return cls(Fleet(control_db_url))

    def last_heartbeats(self, now: datetime) -> Mapping[str, datetime]:
        return {n.instance: n.last_beat_at for n in self.fleet.nodes(now)}

    def close(self) -> None:
        self.fleet.close()
