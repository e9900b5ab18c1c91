"""`bulkfetch demo`: the real pipeline against the embedded simulator, no Strava account needed.

The simulator runs in the same event loop on 127.0.0.1 (a free port) with a seeded synthetic athlete
and compressed quota windows, so a one-minute run shows what a multi-day real run does: listing,
details, at least one quota wait, compaction. The same seed makes a rerun incremental.
"""

from __future__ import annotations

from pathlib import Path

from bulkfetch.config import Config, FetchConfig, LimitsConfig, StorageConfig, StravaConfig
from bulkfetch.pipeline import FetchEvents, FetchOptions, FetchSummary
from bulkfetch.run import fetch_history
from bulkfetch.simulator import Simulator, SimulatorSettings

DEMO_SEED = 2026
# 100 requests per 6-second window: a few hundred activities need several windows, so the demo waits
# for a reset at least once, like a real run does every 15 minutes.
DEMO_SHORT_LIMIT = 100
DEMO_SHORT_WINDOW_S = 6
DEMO_DAILY_LIMIT = 100_000


def demo_settings(activities: int) -> SimulatorSettings:
    return SimulatorSettings(
        seed=DEMO_SEED, activities=activities,
        short_limit=DEMO_SHORT_LIMIT, daily_limit=DEMO_DAILY_LIMIT,
        overall_short_limit=2 * DEMO_SHORT_LIMIT, overall_daily_limit=2 * DEMO_DAILY_LIMIT,
        short_window_s=DEMO_SHORT_WINDOW_S, latency_s=0.02, latency_jitter_s=0.02,
    )


def demo_config(simulator: Simulator, data_dir: Path) -> Config:
    settings = simulator.settings
    return Config(
        strava=StravaConfig(api_url=simulator.api_url, oauth_url=simulator.oauth_url,
                            client_id=settings.client_id, client_secret=settings.client_secret,
                            refresh_token=simulator.current_refresh_token),
        limits=LimitsConfig(short_requests=settings.short_limit, daily_requests=settings.daily_limit,
                            short_window_s=settings.short_window_s, daily_window_s=settings.daily_window_s),
        fetch=FetchConfig(max_rate_per_s=500.0, backoff_base_s=0.1, backoff_cap_s=2.0),
        storage=StorageConfig(data_dir=data_dir, parquet_dir=data_dir / "parquet"),
    )


async def run_demo(data_dir: Path, activities: int, events: FetchEvents) -> FetchSummary:
    async with Simulator(demo_settings(activities)) as simulator:
        events.info(f"simulated Strava on {simulator.base_url}: {activities:,} activities, "
                    f"{DEMO_SHORT_LIMIT} requests per {DEMO_SHORT_WINDOW_S}-second window")
        # The simulated app lives for this run only: its quota ledger stays with the demo's data.
        return await fetch_history(demo_config(simulator, data_dir), FetchOptions(ledger_dir=data_dir / "quota"),
                                   events)
