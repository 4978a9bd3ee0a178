"""What users run: the command line (:mod:`.cli`), the embedded demo, ``distill`` of a user's teacher,
CIFAR teacher training, the authors' presets, and the reports and comparisons of finished runs."""
