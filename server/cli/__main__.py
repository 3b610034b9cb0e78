"""`python -m server.cli`: the `reqo` command line."""

from server.cli.main import main

raise SystemExit(main())
