from bulkfetch.cli import main

raise SystemExit(main())
