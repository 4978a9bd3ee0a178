"""Benchmarks of the library's own code paths: the case registry (:mod:`.cases`), step and
meta-gradient throughput against DFAD and ``higher`` (:mod:`.steps`, ``lrwa-fast bench``) and the
per-phase profile of an iteration (:mod:`.profiling`, ``lrwa-fast profile``). The scripts in
``benchmarks/`` build their tables on these."""
