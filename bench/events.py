"""The benchmarks' FetchEvents: print nothing, time the detail phase, keep messages for the report."""

from __future__ import annotations

import time


class TimingEvents:
    """Times are `time.time()`, comparable with the simulator's request log."""

    def __init__(self) -> None:
        self.planned_s = 0.0
        self.last_detail_s = 0.0
        self.outcomes: dict[str, int] = {}
        self.warnings: list[str] = []
        self.infos: list[str] = []

    @property
    def details(self) -> int:
        return sum(self.outcomes.values())

    def info(self, message: str) -> None:
        self.infos.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def plan(self, plan: object, scheduler: object) -> None:
        pass

    def list_page(self, page: int, new_items: int, total: int) -> None:
        pass

    def details_planned(self, total: int, new: int, changed: int, *, who: str = "") -> None:
        self.planned_s = time.time()

    def streams_planned(self, total: int, *, who: str = "") -> None:
        pass

    def detail_done(self, activity_id: int, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.last_detail_s = time.time()

    def stream_done(self, activity_id: int, outcome: str) -> None:
        self.detail_done(activity_id, outcome)

    def waiting(self, info: object) -> None:
        pass

    def quota(self, scheduler: object) -> None:
        pass

    def request(self, done: object) -> None:
        pass
