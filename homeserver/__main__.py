"""`python -m homeserver` is the `homeserver` command."""

from homeserver.cli import main

raise SystemExit(main())
