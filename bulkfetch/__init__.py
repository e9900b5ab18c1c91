"""bulkfetch: an athlete's whole Strava history, under Strava's quotas, into raw JSON and Parquet."""

__version__ = "0.1.0"
