"""The test suite as a package: every folder of it has an ``__init__.py``, so pytest names each test module by
its path (``tests.apps.test_cli``), puts the repository root on ``sys.path``, and the shared helpers are
imported as ``tests.support``, by spawned processes too."""
