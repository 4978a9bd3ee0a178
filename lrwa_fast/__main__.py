"""``python -m lrwa_fast`` runs the command line (see :mod:`lrwa_fast.apps.cli`)."""

from .apps.cli import main

raise SystemExit(main())
