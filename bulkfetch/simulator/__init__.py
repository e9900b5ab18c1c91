"""An embedded Strava API v3 simulator: seeded synthetic history, Strava's rate limits, OAuth and faults.

Modules: `history` (the synthetic athlete, pure), `motion` (each recording second by second: what its
summary, streams, splits, laps and device file all come from, pure), `route` (where it goes: positions by
arc length and the elevation profile, pure), `ratelimit` (window counting, pure), `tokens` (OAuth state,
pure), `athletes` (the app's athletes and its athlete capacity, pure), `settings` (the knobs), `app` (the
aiohttp server), `run` (thread and foreground runners), `devicefiles` (FIT, GPX and TCX of a recording),
`export_csv` and `export` (the athlete's account export zip).
"""

from bulkfetch.simulator.app import RequestRecord, Simulator
from bulkfetch.simulator.run import SimulatorThread, serve_forever
from bulkfetch.simulator.settings import SimulatorSettings

__all__ = ["RequestRecord", "Simulator", "SimulatorSettings", "SimulatorThread", "serve_forever"]
