"""``python -m repro`` is the same as the ``repro`` command."""

from repro.cli import main

raise SystemExit(main())
