"""What every computation runs under, below the memories, the updates and the trainer: the runtime a
trainer builds once and hands to its parts (:mod:`.services`), the process group and its collectives
(:mod:`.distributed`), named step phases (:mod:`.phases`), mixed precision
(:mod:`.precision`), the non-finite policy (:mod:`.guard`), random streams (:mod:`.randomness`),
device-side metrics (:mod:`.metrics`), checkpoint files (:mod:`.checkpoint`), and the rules every
fallback follows (:mod:`.envvars`, :mod:`.warn_once`)."""
