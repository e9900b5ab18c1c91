"""`bulkfetch demo`: the real pipeline against the embedded simulator, no Strava account needed.

The simulator runs in the same event loop on 127.0.0.1 (a free port) with seeded synthetic athletes
and compressed quota windows, so a one-minute run shows what a multi-day real run does: listing,
details, at least one quota wait, compaction. With `--athletes N` one app serves N athletes of very
different sizes under its one quota, in one run, fairly. The same seed makes a rerun incremental.

With `--export` the demo follows the README's recipe: the simulator first writes its (first) athlete's
account export into the demo's folder, `bulkfetch import` takes it in, and the fetch is `fetch --since
<a year before the simulated now> --streams all`: details, and the streams the export's files do not
hold, for the last year alone; the older activities' streams, splits and laps come from their files.
`quota_saving` compares what the export's athlete was sent with fetching its whole history from the API
alone (see `from_api_alone`). Every recording then lasts DEMO_EXPORT_DURATION_S, to keep the files quick
to write (see there).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bulkfetch.auth import Tokens
from bulkfetch.config import STREAM_TYPES, Config, FetchConfig, LimitsConfig, StorageConfig, StravaConfig
from bulkfetch.errors import ConfigError
from bulkfetch.export_paths import has_export
from bulkfetch.interleaving import Interleaving, interleave
from bulkfetch.paging import list_pages_needed
from bulkfetch.pipeline import FetchEvents, FetchOptions, FetchSummary
from bulkfetch.plan import Filters, is_manual, start_epoch
from bulkfetch.roster import Roster
from bulkfetch.run import fetch_history
from bulkfetch.simulator import RequestRecord, Simulator, SimulatorSettings
from bulkfetch.simulator.export import ExportSummary, write_export, written_before
from bulkfetch.store import atomic_write

DEMO_SEED = 2026
# 100 requests per 6-second window: a few hundred activities need several windows, so the demo waits
# for a reset at least once, like a real run does every 15 minutes.
DEMO_SHORT_LIMIT = 100
DEMO_SHORT_WINDOW_S = 6
DEMO_DAILY_LIMIT = 100_000
# The athletes an upgraded Strava app accepts (a new one accepts only its owner; more than 10 only after
# Strava's review): a demo beyond it would show what no real app can do.
DEMO_MAX_ATHLETES = 10
# With --export every recording lasts 20 minutes: the default 300 activities are then about 340,000 records,
# which the simulator writes as device files in about 24 CPU seconds (measured: 14,000 records per CPU
# second, Garmin's FIT SDK encoding most of them) and the import decodes in about 10; the sports' usual
# durations would be four times as many records. Runs still have three or four 1 km splits.
DEMO_EXPORT_DURATION_S = 1200
# The README's recipe fetches details for the last year alone: the year before the simulated now.
RECIPE_RECENT_S = 365 * 86400
DEMO_DATA_DIR = "demo-data"
REPORT_CONFIG_NAME = "report-config.toml"  # names the demo's data_dir alone, for `bulkfetch report`
# The race the demo's report command predicts: a half marathon on a rolling course (the simulated athlete races
# 5 km to the marathon).
REPORT_COURSE = "21.0975km+150m"
DEMO_EXPORT_DATA_DIR = "demo-export-data"  # another history (see check_demo_data_dir): a folder of its own
EXPORT_FOLDER = "simulated-export"  # in the demo's data_dir: the zip Strava would e-mail, and its sidecar
# The requests of a fetch, by the path they asked (the simulator's log holds them with the API's prefix).
REQUEST_KINDS = {"list pages": re.compile(r"/athlete/activities$"), "details": re.compile(r"/activities/\d+$"),
                 "streams": re.compile(r"/activities/\d+/streams$")}


def check_demo_size(activities: int, athletes: int) -> None:
    """ConfigError (exit 2) naming the flag when the demo cannot be that size."""
    if activities < 1:
        raise ConfigError(f"--activities must be at least 1 (got {activities})")
    if not 1 <= athletes <= DEMO_MAX_ATHLETES:
        raise ConfigError(f"--athletes must be from 1 to {DEMO_MAX_ATHLETES}, the athletes an upgraded Strava app "
                          f"accepts (got {athletes})")


def athlete_sizes(activities: int, athletes: int) -> tuple[int, ...]:
    """The first athlete has `activities`, each next one half of the one before (at least 1): a big
    backfill beside small histories, the case fairness is about. A size never depends on how many
    athletes the demo has, so a rerun with another --athletes finds the same histories."""
    return tuple(max(1, activities >> index) for index in range(athletes))


def demo_settings(activities: int, athletes: int = 1, *, export: bool = False) -> SimulatorSettings:
    return SimulatorSettings(
        seed=DEMO_SEED, activities=activities, athletes=athletes,
        athlete_activities=athlete_sizes(activities, athletes),
        duration_s=DEMO_EXPORT_DURATION_S if export else None,
        short_limit=DEMO_SHORT_LIMIT, daily_limit=DEMO_DAILY_LIMIT,
        overall_short_limit=2 * DEMO_SHORT_LIMIT, overall_daily_limit=2 * DEMO_DAILY_LIMIT,
        short_window_s=DEMO_SHORT_WINDOW_S, latency_s=0.02, latency_jitter_s=0.02,
    )


def demo_config(simulator: Simulator, data_dir: Path, streams: tuple[str, ...] = ()) -> Config:
    """A config for this simulator, seeded with its first athlete's refresh token (the benches fetch with
    it alone; the demo connects every athlete itself, which makes the seed unused), asking `streams`."""
    settings = simulator.settings
    return Config(
        strava=StravaConfig(api_url=simulator.api_url, oauth_url=simulator.oauth_url,
                            client_id=settings.client_id, client_secret=settings.client_secret,
                            refresh_token=simulator.current_refresh_token),
        limits=LimitsConfig(short_requests=settings.short_limit, daily_requests=settings.daily_limit,
                            short_window_s=settings.short_window_s, daily_window_s=settings.daily_window_s),
        fetch=FetchConfig(max_rate_per_s=500.0, backoff_base_s=0.1, backoff_cap_s=2.0, streams=streams),
        storage=StorageConfig(data_dir=data_dir, parquet_dir=data_dir / "parquet"),
    )


def check_demo_data_dir(simulator: Simulator, data_dir: Path, *, export: bool) -> None:
    """ConfigError (exit 2) before anything in `data_dir` moves when it is not this kind of demo's: it
    holds an athlete the demo does not simulate (a real one), an export imported by `bulkfetch import`, or
    the other kind of demo's data. A plain demo and `demo --export` simulate different histories (every
    recording 20 minutes long with the export): a run on the other's folder would fetch every activity
    again and mix the two."""
    first = simulator.settings.athlete_id
    demo_ids = range(first, first + DEMO_MAX_ATHLETES)
    athletes = Roster(data_dir).athletes()
    default = DEMO_EXPORT_DATA_DIR if export else DEMO_DATA_DIR
    if foreign := [a for a in athletes if a.athlete_id not in demo_ids]:
        raise ConfigError(f"{data_dir} holds {foreign[0].label}, not one of the demo's simulated athletes",
                          hint=f"pass another --data-dir (the demo writes into a folder of its own, default "
                               f"./{default})")
    holds_export = (data_dir / EXPORT_FOLDER).is_dir()
    if not holds_export and any(has_export(a.folder) for a in athletes):  # an export the demo did not simulate
        raise ConfigError(f"{data_dir} holds the data of a 'bulkfetch import', not of a demo",
                          hint=f"pass another --data-dir (the demo writes into a folder of its own, default "
                               f"./{default})")
    if athletes and holds_export != export:
        kind, rerun = ("'bulkfetch demo --export'", "with") if holds_export else ("a plain 'bulkfetch demo'", "without")
        raise ConfigError(f"{data_dir} holds the data of {kind}, another simulated history",
                          hint=f"rerun it {rerun} --export there, or pass another --data-dir (default ./{default})")


def connect_demo_athletes(simulator: Simulator, data_dir: Path) -> None:
    """Store each simulated athlete's first refresh token, as `auth` would (the caller holds the lock and
    has checked the data_dir). The simulator is new each run, so the token chain a previous run stored is
    one it never issued: the fresh tokens replace it, for every athlete alike."""
    roster = Roster(data_dir)
    roster.migrate()
    for athlete in simulator.athletes:
        roster.connect(Tokens(refresh_token=simulator.refresh_token_of(athlete.athlete_id),
                              athlete_id=athlete.athlete_id))


def recipe_since_s(now_s: float) -> int:
    """The recipe's `fetch --since` (epoch s, UTC): one year before `now_s`, the simulated now."""
    return int(now_s) - RECIPE_RECENT_S


def demo_requests(log: list[RequestRecord]) -> Interleaving:
    """The requests the app's quota counted, athlete by athlete, window by window."""
    return interleave((r.athlete_id, r.short_window) for r in _counted(log))


def requests_by_kind(log: list[RequestRecord], athlete_id: int) -> Counter[str]:
    """The athlete's requests the app's quota counted, by REQUEST_KINDS (others, e.g. GET /athlete, as "other")."""
    return Counter(next((kind for kind, pattern in REQUEST_KINDS.items() if pattern.search(r.path)), "other")
                   for r in _counted(log) if r.athlete_id == athlete_id)


def _counted(log: Iterable[RequestRecord]) -> Iterable[RequestRecord]:
    return (r for r in log if r.counted and not r.others and r.athlete_id is not None)


@dataclass(frozen=True)
class SavingRow:
    kind: str
    sent: int
    without_export: int


def from_api_alone(history: Iterable[tuple[int, int | None]], per_page: int, *, manual: int = 0) -> Counter[str]:
    """The requests of fetching the whole `history` ((id, start) pairs, `manual` of them manual) from the
    API alone, the way to the same activities without the export: `fetch --streams all` into an empty
    data_dir sends a full listing, a detail for every activity and a stream request for every one but the
    manual ones (see plan.is_manual)."""
    pairs = list(history)
    return Counter({"list pages": list_pages_needed(pairs, per_page), "details": len(pairs),
                    "streams": len(pairs) - manual})


def quota_saving(sent: Counter[str], alone: Counter[str]) -> list[SavingRow]:
    """Requests sent by kind against fetching the whole history from the API alone (`from_api_alone`);
    other requests (GET /athlete) alike in both; the total last."""
    rows = [SavingRow(kind, sent[kind], alone[kind]) for kind in REQUEST_KINDS]
    rows += [SavingRow(kind, n, n) for kind, n in sorted(sent.items()) if kind not in REQUEST_KINDS]
    return [*rows, SavingRow("total", sum(r.sent for r in rows), sum(r.without_export for r in rows))]


@dataclass
class DemoRun:
    """One demo: its simulated app (new every run), and what the simulator saw (for the report tables)."""

    data_dir: Path
    activities: int
    athletes: int = 1
    export: bool = False
    requests: Interleaving = field(default_factory=lambda: interleave([]))
    sent: Counter[str] = field(default_factory=Counter)  # the export's athlete's requests, by kind
    per_page: int = FetchConfig.per_page  # the list's page size: demo_config keeps the default
    simulator: Simulator = field(init=False)

    def __post_init__(self) -> None:
        self.simulator = Simulator(demo_settings(self.activities, self.athletes, export=self.export))

    @property
    def export_athlete(self) -> int:
        """Whose export the demo imports: the first athlete's (`bulkfetch simulate --export` writes the same)."""
        return self.simulator.settings.athlete_id

    @property
    def since(self) -> str:
        """The recipe's `--since` date (with --export), a year before the simulated now, as a user types it."""
        return time.strftime("%Y-%m-%d", time.gmtime(recipe_since_s(self.simulator.history_now_s)))

    @property
    def export_path(self) -> Path:
        return self.data_dir / EXPORT_FOLDER / f"export_{self.export_athlete}.zip"

    def connect(self) -> None:
        """Connect the simulated athletes (the caller holds the data_dir's lock). A real athlete's data_dir,
        or the other kind of demo's, is refused; an --export one is marked as such first."""
        check_demo_data_dir(self.simulator, self.data_dir, export=self.export)
        if self.export:
            self.export_path.parent.mkdir(parents=True, exist_ok=True)
        connect_demo_athletes(self.simulator, self.data_dir)

    def export_written(self) -> bool:
        """Whether the export a run before wrote (the same day: the same history) is there."""
        return written_before(self.export_path, self.simulator.history)

    def write_export(self, workers: int) -> ExportSummary:
        """The first athlete's account export, its device files encoded in `workers` processes."""
        return write_export(self.export_path, self.simulator.history, workers=workers)

    async def fetch(self, events: FetchEvents) -> FetchSummary:
        async with self.simulator as simulator:
            sizes = ", ".join(f"{n:,}" for n in athlete_sizes(self.activities, self.athletes))
            who = f"{self.athletes} athletes ({sizes} activities)" if self.athletes > 1 else f"{sizes} activities"
            events.info(f"simulated Strava on {simulator.base_url}: {who}, "
                        f"{DEMO_SHORT_LIMIT} requests per {DEMO_SHORT_WINDOW_S}-second window")
            # The simulated app lives for this run only: its quota ledger stays with the demo's data. Only
            # this run's athletes: a previous demo with more of them left tokens nobody accepts now.
            filters = Filters(since=recipe_since_s(simulator.history_now_s)) if self.export else Filters()
            if self.export:
                events.info(f"the recipe: fetch --since {self.since} --streams all (details and the streams the "
                            "export lacks, for the last year and for the files older than Strava's version; the "
                            "other older activities from the export's files)")
            options = FetchOptions(filters=filters, ledger_dir=self.data_dir / "quota",
                                   athletes=frozenset(simulator.athlete_ids))
            config = demo_config(simulator, self.data_dir, STREAM_TYPES if self.export else ())
            try:
                return await fetch_history(config, options, events)
            finally:
                self.requests = demo_requests(simulator.request_log)
                self.sent = requests_by_kind(simulator.request_log, self.export_athlete)

    def report_config(self) -> Path:
        """A config naming only this data_dir (relative to itself), for `bulkfetch --config it report`: the
        demo keeps its simulated app's settings to itself, so it has no config.toml to point at."""
        path = self.data_dir / REPORT_CONFIG_NAME
        atomic_write(path, b'[storage]\ndata_dir = "."\n')
        return path

    def saving(self) -> list[SavingRow]:
        """`quota_saving` of the export's athlete: this fetch against its whole history from the API alone."""
        catalog = Roster(self.data_dir).athlete(self.export_athlete).store.catalog()
        history = ((activity_id, start_epoch(summary)) for activity_id, summary in catalog.items())
        return quota_saving(self.sent, from_api_alone(history, self.per_page,
                                                      manual=sum(map(is_manual, catalog.values()))))
