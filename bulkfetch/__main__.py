# The guard matters: a spawned worker process (the simulator's export writer) re-imports the main module.
if __name__ == "__main__":
    from bulkfetch.launch import main

    raise SystemExit(main())
