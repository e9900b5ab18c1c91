"""The simulator's knobs: the athlete, the app's credentials and scope, Strava's limits, and fault rates."""

from __future__ import annotations

from dataclasses import dataclass

from bulkfetch.simulator.pace_model import DEFAULT_PACE_MODEL, PaceModel


@dataclass
class SimulatorSettings:
    """Everything a test or `bulkfetch simulate` can choose. Fault knobs are off by default; every random
    fault is drawn from a `random.Random(seed)`, so a run with the same requests is reproducible."""

    seed: int = 1
    activities: int = 300  # size of the synthetic history (of every athlete athlete_activities leaves out)
    athlete_id: int = 26462176  # the first athlete's; the others follow it: athlete_id + 1, + 2, ...
    client_id: str = "12345"
    client_secret: str = "sim-client-secret"
    refresh_token: str = "sim-refresh-0"  # the first athlete's initial valid refresh token
    # Scope the athlete grants: "read,activity:read" hides private activities; "read" -> 401 on activities.
    # Every athlete's, unless Simulator.set_athlete_scope gave one its own.
    scope: str = "read,activity:read_all"
    # Athletes of the one app: each with its own history, ids, tokens and scope; all share its quota.
    athletes: int = 1
    athlete_activities: tuple[int, ...] = ()  # history sizes of athletes 1, 2, ...; `activities` for the rest
    # Every activity lasts exactly this long (elapsed seconds) instead of its sport's usual range: a benchmark's
    # uniform export, or small fast ones for tests. None: the usual ranges.
    duration_s: int | None = None
    # Connected athletes the app accepts (Strava: 1 in single-player mode, 10 once upgraded); None: no cap.
    # The first `athlete_capacity` athletes start connected, the others must authorize when a slot is free.
    athlete_capacity: int | None = None
    access_token_lifetime_s: float = 21600
    short_limit: int = 100  # read ("non-upload") bucket
    daily_limit: int = 1000
    overall_short_limit: int = 200
    overall_daily_limit: int = 2000
    short_window_s: float = 900
    daily_window_s: float = 86400
    rate_limits: bool = True  # False: nothing rejected, headers still sent (with huge limits)
    error_rate: float = 0.0  # share of API requests answered 500 {"message":"error"}, 502 or 503
    drop_rate: float = 0.0  # share whose connection is closed without a response
    truncate_rate: float = 0.0  # share answered 200 with the JSON body cut off mid-way
    latency_s: float = 0.0  # per API request
    latency_jitter_s: float = 0.0  # uniform 0..jitter added to latency_s
    spike_rate: float = 0.0  # share of API requests delayed spike_s more
    spike_s: float = 0.0
    missing_rate: float = 0.0  # share of activity ids whose detail/streams/laps answer 404 (stable per id)
    app_inactive: bool = False  # every API request: 403 Application Inactive
    token_outage: bool = False  # /oauth/token answers 503 and rotates nothing (Strava's OAuth down)
    other_usage_per_window: int = 0  # requests another process of the app spends at the start of each short window
    pace_model: PaceModel = DEFAULT_PACE_MODEL  # how the athletes run (every athlete the same)
    mutate_rate: float = 0.0  # per list page: chance of a new newest activity, and chance of a deletion
