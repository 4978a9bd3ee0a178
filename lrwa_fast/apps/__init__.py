"""What users run: the command line (:mod:`.cli`); the run engine on the embedded benchmarks (:mod:`.runs`)
behind the demo (:mod:`.demo`), the study (:mod:`.study`) and its sweeps (:mod:`.sweep`); the authors' recipe
(:mod:`.recipe`) and the CIFAR presets built from it; ``distill`` of a user's teacher; CIFAR teacher training;
and the reports and comparisons of finished runs."""
