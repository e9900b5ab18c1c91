"""The simulated app's athletes: who each one is (id, history, first refresh token, all derived from the
settings), its OAuth state and scope, and the app's athlete capacity. Pure: no I/O, no clock."""

from __future__ import annotations

import random
from dataclasses import dataclass

from bulkfetch.simulator.history import FIRST_ACTIVITY_ID, History
from bulkfetch.simulator.settings import SimulatorSettings
from bulkfetch.simulator.tokens import TokenBook, parse_scope

# Each athlete's activity ids lie in a range of their own, so they never collide across athletes; a range
# holds 500,000 activities (ids grow by at most 20,000,000 each) and 900 ranges stay below 2**53.
ATHLETE_ID_SPAN = 10**13


@dataclass
class Athlete:
    index: int  # place among the app's athletes, 0 for the first
    athlete_id: int
    history: History
    tokens: TokenBook
    connected: bool  # holds one of the app's capacity slots: authorized and not since deauthorized
    scope: str | None = None  # what the athlete allows; None: the settings' `scope`

    def allowed_scope(self, settings: SimulatorSettings) -> frozenset[str]:
        return parse_scope(settings.scope if self.scope is None else self.scope)

    def disconnect(self) -> None:
        """The app lost the athlete (deauthorized by the app or revoked on strava.com): no token works."""
        self.tokens.revoke()
        self.connected = False


def check_roster(settings: SimulatorSettings) -> None:
    """ValueError naming the knob when the athletes' settings cannot describe an app."""
    if settings.athletes < 1:
        raise ValueError(f"athletes must be at least 1 (got {settings.athletes})")
    if len(settings.athlete_activities) > settings.athletes:
        raise ValueError(f"athlete_activities has {len(settings.athlete_activities)} sizes for "
                         f"{settings.athletes} athletes")
    if settings.athlete_capacity is not None and settings.athlete_capacity < 1:
        raise ValueError(f"athlete_capacity must be at least 1 or None (got {settings.athlete_capacity})")


def history_size(settings: SimulatorSettings, index: int) -> int:
    sizes = settings.athlete_activities
    return sizes[index] if index < len(sizes) else settings.activities


def history_seed(settings: SimulatorSettings, index: int) -> int:
    """The first athlete's history is the settings' seed (as with one athlete); the others' derive from it."""
    return settings.seed if index == 0 else random.Random(f"{settings.seed}:athlete:{index}").getrandbits(31)


def first_refresh_token(settings: SimulatorSettings, athlete_id: int, index: int) -> str:
    return settings.refresh_token if index == 0 else f"{settings.refresh_token}.{athlete_id}"


def starts_connected(settings: SimulatorSettings, index: int) -> bool:
    return settings.athlete_capacity is None or index < settings.athlete_capacity


def build_athletes(settings: SimulatorSettings, now_s: float) -> list[Athlete]:
    """Every athlete of the app, the first exactly as a one-athlete simulator has it."""
    check_roster(settings)
    athletes = []
    for index in range(settings.athletes):
        athlete_id = settings.athlete_id + index
        connected = starts_connected(settings, index)
        seed = history_seed(settings, index)
        tokens = TokenBook(
            refresh_token=first_refresh_token(settings, athlete_id, index) if connected else None,
            refresh_scope=parse_scope(settings.scope), lifetime_s=settings.access_token_lifetime_s,
            rng=random.Random(f"{settings.seed}:tokens" + (f":{index}" if index else "")))
        history = History.build(seed=seed, count=history_size(settings, index), athlete_id=athlete_id, now_s=now_s,
                                first_id=FIRST_ACTIVITY_ID + index * ATHLETE_ID_SPAN, duration_s=settings.duration_s,
                                pace_model=settings.pace_model)
        athletes.append(Athlete(index=index, athlete_id=athlete_id, history=history, tokens=tokens,
                                connected=connected))
    return athletes


def has_room_for(athletes: list[Athlete], athlete: Athlete, capacity: int | None) -> bool:
    """Whether `athlete` may authorize: a connected one re-authorizes freely, a new one needs a free slot."""
    connected = sum(1 for a in athletes if a.connected)
    return athlete.connected or capacity is None or connected < capacity


def approving_athlete(signed_in: Athlete, chosen: Athlete | None, *, force: bool) -> Athlete:
    """Who approves on the authorize page. With approval_prompt=auto Strava skips the prompt for an athlete
    who already authorized the app, so the browser's signed-in athlete is authorized again without anyone
    choosing; with a prompt (`force`, or a signed-in athlete new to the app) the person at the browser may
    sign in as `chosen` first."""
    if chosen is None or (signed_in.connected and not force):
        return signed_in
    return chosen
