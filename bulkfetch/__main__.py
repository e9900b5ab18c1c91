# The guard matters: a spawned worker process (the simulator's export writer) re-imports the main module.
if __name__ == "__main__":
    import sys

    from bulkfetch.early_start import start_for

    start_for(sys.argv[1:])  # before the command line's own imports, which it overlaps (bulkfetch.early_start)

    from bulkfetch.cli import main

    raise SystemExit(main())
