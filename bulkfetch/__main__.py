from bulkfetch.cli import main

# The guard matters: compaction's worker process re-imports the main module.
if __name__ == "__main__":
    raise SystemExit(main())
