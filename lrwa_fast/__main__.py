"""``python -m lrwa_fast`` runs the command line (see :mod:`lrwa_fast.cli`)."""

from .cli import main

raise SystemExit(main())
