"""Command line: ``lrwa-fast doctor | demo | study | distill | teacher | check-teacher | presets | compare | bench |
profile`` (also ``python -m lrwa_fast``).

``demo``, ``distill`` and ``teacher`` train data-parallel when launched with torchrun (one process
per GPU): ``torchrun --nproc_per_node=8 -m lrwa_fast distill --preset NAME ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from ..bench.cases import CASES
from ..choices import LOSS_KINDS, PRECISIONS
from ..config import parse_override
from ..data.images import IMAGE_SETS
from .embedded import BENCHMARKS
from .study import DEFAULT_METHODS, StudySettings
from .study import METHODS as STUDY_METHODS

BENCHMARK_NAMES = tuple(BENCHMARKS)
ALLOW_PICKLE = ("also load a teacher file holding a whole pickled model: this RUNS CODE FROM THE FILE, only for a "
                "file you trust (its class must be importable); the safe way is to convert it (docs/teachers.md)")


def _default_cache() -> str:
    return os.environ.get("LRWA_FAST_CACHE", str(Path.home() / ".cache" / "lrwa_fast"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lrwa-fast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser("doctor", help="run first on any machine: the environment, and each fast path's verdict "
                                           "against the PyTorch reference here (exit 1 when one is wrong or broken)")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON (for a bug report)")
    doctor.add_argument("--no-speed", action="store_true", help="skip timing each fast path against its reference")
    doctor.add_argument("--paths", default="kd_loss,grad_alignment,replay_cpp,replay_cuda", metavar="P1,P2,...",
                        help="only these fast paths")

    demo = sub.add_parser("demo", help="LRwA vs DFAD on an embedded benchmark (no download)")
    demo.add_argument("--benchmark", default="digits", choices=BENCHMARK_NAMES,
                      help="scikit-learn's 8×8 digits (default) or MNIST-1D, generated locally")
    demo.add_argument("--iterations", type=int, default=None,
                      help="iterations per run (default: the benchmark's, 600 on digits, 1000 on mnist1d)")
    demo.add_argument("--seeds", type=int, default=1, help="seeds per method (3 for the full comparison)")
    demo.add_argument("--eval-every", type=int, default=None, help="iterations between evaluations")
    demo.add_argument("--out", default="lrwa_runs/demo", help="output folder (report.json, accuracy.png)")
    demo.add_argument("--cache-dir", default=_default_cache(), help="where the trained teacher is cached")
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="METHOD.KEY=VALUE",
                      help="override a method's config, e.g. LRwA.inner_lr=0.1 (repeatable)")
    demo.add_argument("--fast", action="store_true", help="tiny budget (smoke test)")
    demo.add_argument("--resume", action="store_true",
                      help="keep finished runs in --out and resume unfinished ones from their checkpoints")
    demo.add_argument("--jobs", type=int, default=1, help="parallel runs (processes, one thread each)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")

    study = sub.add_parser("study", help="every mitigation of forgetting against its twin without memory on an "
                                            "embedded benchmark, paired by seed (--sweep: at each value of a setting)")
    study.add_argument("--benchmark", default="mnist1d", choices=BENCHMARK_NAMES)
    study.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                       help=f"comma-separated, each with its twin (dfad, authors_dfad), of {', '.join(STUDY_METHODS)} "
                            f"(default: {', '.join(DEFAULT_METHODS)})")
    study.add_argument("--seeds", type=int, default=5, help="seeds per method (at least 2)")
    study.add_argument("--first-seed", type=int, default=0, help="the seeds are first-seed, first-seed + 1, ...")
    study.add_argument("--iterations", type=int, default=None, help="iterations per run (default: the benchmark's)")
    study.add_argument("--teacher-seed", type=int, default=None,
                       help="train (and cache) another teacher from this seed (default: the benchmark's)")
    study.add_argument("--jobs", type=int, default=1, help="parallel runs (processes, one thread each)")
    study.add_argument("--out", default="lrwa_runs/study", help="output folder (study.json, study.md, plots)")
    study.add_argument("--cache-dir", default=_default_cache(), help="where teachers and generated data are cached")
    study.add_argument("--fresh", action="store_true", help="discard the finished runs in --out instead of reusing "
                                                            "them")
    study.add_argument("--sweep", default=None, metavar="KEY=V1,V2,...",
                       help="run the study at each value of one config key every method shares (e.g. "
                            "generator_optimizer.lr=1e-3,3e-3,1e-2) into --out/KEY=VALUE, then sweep.json, sweep.md "
                            "and sweep.png")
    study.add_argument("--fast", action="store_true", help="tiny budget (smoke test): 6 iterations, a 2-epoch teacher")
    study.add_argument("--quiet", action="store_true", help="no progress")
    study.add_argument("--preset", default="",
                       help="a CIFAR LRwA preset (lrwa-fast presets): the study on your --data and --teacher "
                            "instead of --benchmark (the authors' methods are the preset and its DFAD twin)")
    study.add_argument("--data", default="", help="with --preset: the dataset's files (CIFAR root, folder or "
                                                   ".tar.gz; SVHN's .mat folder; tiny-imagenet-200)")
    study.add_argument("--teacher", default="", help="with --preset: the teacher's file, in any supported layout "
                                                      "(docs/teachers.md)")
    study.add_argument("--allow-pickle", action="store_true", help=ALLOW_PICKLE)
    study.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="a setting every method shares, e.g. batch_size=256 (repeatable; with --preset, "
                            "generator.KEY for the generator, teacher.mean / teacher.std for the teacher's "
                            "normalisation)")
    study.add_argument("--executor", default="local", choices=("local", "slurm"),
                       help="where the runs run: here (--jobs processes) or on a Slurm cluster through submitit "
                            "(the teacher's job, then the runs as one job array that depends on it)")
    study.add_argument("--slurm", default="", metavar="KEY=VALUE,...",
                       help="each Slurm job's resources and site settings: partition, time (minutes or D-H:M:S), "
                            "gpus_per_task, cpus_per_task, mem, account, qos, constraint")
    study.add_argument("--slurm-setup", action="append", default=[], metavar="LINE",
                       help="a line each Slurm job runs first, e.g. 'module load cuda' (repeatable)")
    study.add_argument("--slurm-array-parallelism", type=int, default=256,
                       help="how many of the runs' array tasks run at once")
    study.add_argument("--no-wait", action="store_true",
                       help="with --executor slurm: submit, print the job ids and exit; the same command again, or "
                            "--collect OUT, reports the runs' states and aggregates once all have finished")
    study.add_argument("--collect", default=None, metavar="OUT",
                       help="report the study in OUT from its folders: the runs' states (finished, pending, "
                            "running, failed with their logs), and the report once all have finished (a sweep: "
                            "each value's folder, or the sweep's command again)")
    study.add_argument("--plan", default=None, metavar="OUT",
                       help="from the finished (pilot) study in OUT (its folder or study.json): per comparison, the "
                            "paired seeds needed to detect each --delta with 80%% power, and what they cost")
    study.add_argument("--delta", default="1,2.5", metavar="D1,D2,...",
                       help="with --plan: the differences to detect, in points of μ[acc] (and of forgetting)")

    distill = sub.add_parser("distill", help="distil your own teacher (config file or preset)")
    distill.add_argument("--config", help="JSON or YAML file (docs/cli.md: the distill config file)")
    distill.add_argument("--preset", help="a named setup (lrwa-fast presets lists them)")
    distill.add_argument("--data", default="", help="with --preset: the dataset's files (CIFAR root, folder or "
                                                     ".tar.gz; SVHN's .mat folder; tiny-imagenet-200)")
    distill.add_argument("--teacher", default="", help="with --preset: the teacher's file, in any supported "
                                                        "layout (docs/teachers.md)")
    distill.add_argument("--allow-pickle", action="store_true", help=ALLOW_PICKLE)
    distill.add_argument("--out", default="", help="with --preset: the run's folder")
    distill.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config value, e.g. trainer.inner_lr=0.1 (repeatable)")
    distill.add_argument("--resume", metavar="PATH", default=None,
                         help="resume from a checkpoint file, or the newest checkpoint in a folder")
    distill.add_argument("--quiet", action="store_true", help="no progress bar")
    teacher = sub.add_parser("teacher", help="train a teacher with the standard recipe (writes teacher.pt)")
    teacher.add_argument("--dataset", required=True, choices=tuple(IMAGE_SETS))
    teacher.add_argument("--data", required=True, help="the dataset's files (docs/datasets.md)")
    teacher.add_argument("--arch", default=None, help="model name (default resnet34)")
    teacher.add_argument("--out", required=True, help="folder for teacher.pt, report.json and checkpoints")
    teacher.add_argument("--epochs", type=int, default=None, help="default 200")
    teacher.add_argument("--batch-size", type=int, default=None, help="default 128")
    teacher.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a recipe value, e.g. lr=0.05 or precision=bf16 (repeatable)")
    teacher.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    teacher.add_argument("--quiet", action="store_true", help="no progress bar")

    check = sub.add_parser("check-teacher", help="a teacher file's test accuracy on your data, beside the published "
                                                  "one (writes nothing)")
    check.add_argument("--teacher", required=True, help="the teacher's file, in any supported layout")
    check.add_argument("--dataset", required=True, choices=tuple(IMAGE_SETS))
    check.add_argument("--data", required=True, help="the dataset's files (docs/datasets.md)")
    check.add_argument("--arch", default=None, help="the architecture it must be (default: recognised from the file)")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="mean=[r,g,b] and std=[r,g,b]: the normalisation to score it with (wins over what the "
                            "file and its code base say)")
    check.add_argument("--allow-pickle", action="store_true", help=ALLOW_PICKLE)
    check.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    check.add_argument("--json", action="store_true", help="print the report as JSON")

    presets = sub.add_parser("presets", help="list the presets: sources and full resolved configs")
    presets.add_argument("names", nargs="*", help="only these presets")

    bench = sub.add_parser("bench", help="step throughput: DFAD vs LRwA meta-steps vs higher")
    bench.add_argument("--cases", default="cnn,wrn16_1", help=f"comma-separated: {', '.join(CASES)}")
    bench.add_argument("--batch", type=int, default=None, help="acquisition batch (default: the case's)")
    bench.add_argument("--memory-batch", type=int, default=None, help="memory batch (default: the case's)")
    bench.add_argument("--loss", default=None, choices=LOSS_KINDS, help="student loss (default l1)")
    bench.add_argument("--precision", default=None, choices=PRECISIONS,
                       help="mixed precision of the trainers (default fp32)")
    bench.add_argument("--full", action="store_true", help="the grid: batch {64, 256} × memory {16, 64}")
    bench.add_argument("--repeats", type=int, default=20)
    bench.add_argument("--warmup", type=int, default=3)
    bench.add_argument("--no-iterations", action="store_true", help="skip whole-iteration timings")
    bench.add_argument("--compile", action="store_true",
                       help="also time the steps and meta-gradients that can run with compile_student=True "
                            "(all but exact)")
    bench.add_argument("--gradient-repeats", type=int, default=None,
                       help="repeats of the meta-gradients alone on one fixed batch (default: --repeats; 0: none)")
    bench.add_argument("--methods", action="store_true",
                       help="instead: one iteration of DFAD, LRwA and each method papers compare against (DAFL, "
                            "ZSKT, DFQ, DeepInversion, CMI, Fast), as ratios to DFAD's")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--json", default=None, help="write the results here")

    compare = sub.add_parser("compare", help="side-by-side table and accuracy curves of finished runs")
    compare.add_argument("runs", nargs="+", metavar="DIR", help="run folders holding report.json")
    compare.add_argument("--plot", default="lrwa_runs/compare.png", help="where to draw the curves together")

    prof = sub.add_parser("profile", help="where a meta-step's time goes, next to a DFAD step")
    prof.add_argument("--case", default="cnn", choices=tuple(CASES), help="the benchmark case")
    prof.add_argument("--batch", type=int, default=None)
    prof.add_argument("--memory-batch", type=int, default=None)
    prof.add_argument("--rounds", type=int, default=None,
                      help="round-robin rounds: timed blocks per variant (default 15)")
    prof.add_argument("--block", type=int, default=None, help="timed iterations per block (default 1)")
    prof.add_argument("--block-warmup", type=int, default=None,
                      help="untimed iterations at the start of every block (default 1)")
    prof.add_argument("--generator-steps", type=int, default=None,
                      help="generator steps per iteration (default: DFADConfig's, 1)")
    prof.add_argument("--student-steps", type=int, default=None,
                      help="student steps per iteration (default: DFADConfig's, 5)")
    prof.add_argument("--methods", action="store_true",
                      help="profile DFAD, LRwA and each method papers compare against instead of the meta steps")
    prof.add_argument("--device", default="auto")
    prof.add_argument("--out", default="lrwa_runs/profile", help="Chrome traces and profile.json go here")
    return parser


def _sizes(args: argparse.Namespace) -> dict[str, int | str]:
    sizes = {"batch": args.batch, "memory_batch": args.memory_batch, "loss": getattr(args, "loss", None),
             "precision": getattr(args, "precision", None)}
    return {k: v for k, v in sizes.items() if v is not None}


def _bench(args: argparse.Namespace) -> int:
    from ..bench.steps import bench, format_results, higher_available
    from ..runtime import selfcheck

    if args.methods:
        return _bench_methods(args)
    results = bench([c.strip() for c in args.cases.split(",") if c.strip()], args.device, args.repeats,
                    args.warmup, full=args.full, iterations=not args.no_iterations, overrides=_sizes(args),
                    compiled=args.compile, gradient_repeats=args.gradient_repeats)
    print(format_results(results))
    print(selfcheck.describe(selfcheck.usage()))
    if not higher_available():
        print("\nThe 'higher / ours' column is empty: the `higher` package is not installed, so the "
              "higher_exact baseline was not run (pip install 'lrwa_fast[higher]').")
    if args.json:
        _write_json(Path(args.json), {"command": "lrwa-fast bench", "results": results,
                                      "fast_paths": selfcheck.usage()})
    return 0


def _bench_methods(args: argparse.Namespace) -> int:
    from ..bench.method_cost import bench_methods, format_methods
    from ..runtime import selfcheck

    results = bench_methods([c.strip() for c in args.cases.split(",") if c.strip()], args.device, args.repeats,
                            args.warmup, overrides=_sizes(args))
    print(format_methods(results))
    print(selfcheck.describe(selfcheck.usage()))
    if args.json:
        _write_json(Path(args.json), {"command": "lrwa-fast bench --methods", "results": results,
                                      "fast_paths": selfcheck.usage()})
    return 0


def _profile(args: argparse.Namespace) -> int:
    from ..bench.profiling import ProfilePlan, format_profile, profile

    given = {"rounds": args.rounds, "block": args.block, "block_warmup": args.block_warmup,
             "generator_steps": args.generator_steps, "student_steps": args.student_steps}
    plan = ProfilePlan(**{k: v for k, v in given.items() if v is not None})
    report = profile(args.case, args.device, plan, out_dir=args.out, overrides=_sizes(args), methods=args.methods)
    print(format_profile(report))
    _write_json(Path(args.out) / "profile.json", report)
    print(f"\nChrome traces and profile.json in {args.out}")
    return 0


def _write_json(path: Path, data: object) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    import yaml

    from ..runtime.distributed import PeerFailure
    from ..runtime.guard import NonFiniteError
    from ..training import TrainingInterrupted
    from .slurm import ClusterUnavailable

    args = build_parser().parse_args(argv)
    try:
        commands = {"demo": _demo, "study": _study, "distill": _distill, "bench": _bench, "profile": _profile,
                    "compare": _compare, "presets": _presets, "teacher": _teacher, "check-teacher": _check_teacher,
                    "doctor": _doctor}
        return commands[args.command](args)
    except TrainingInterrupted as err:
        print(f"lrwa-fast: {err}", file=sys.stderr)
        return 128 + err.signum
    except PeerFailure as err:
        print(f"lrwa-fast: error: {err}", file=sys.stderr)
        return 1
    except (ValueError, NonFiniteError, OSError, yaml.YAMLError, ClusterUnavailable) as err:
        print(f"lrwa-fast: error: {err}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    from ..runtime.distributed import process_group_from_env
    from .demo import demo_plan, format_table, run_demo
    from .embedded import benchmark
    from .runs import apply_method_overrides, check_plan

    if args.fast:
        teacher = dataclasses.replace(benchmark(args.benchmark).teacher, epochs=2)
        plan = demo_plan(args.benchmark, iterations=6 if args.iterations is None else args.iterations, eval_every=2,
                         seeds=args.seeds, teacher=teacher)
    else:
        plan = demo_plan(args.benchmark, iterations=args.iterations, seeds=args.seeds)
    if args.eval_every is not None:
        plan.eval_every = args.eval_every
    check_plan(plan, args.jobs)
    apply_method_overrides(plan, args.overrides)
    with process_group_from_env() as ranks:
        report = run_demo(plan, Path(args.out), Path(args.cache_dir), progress=not args.quiet,
                          resume=args.resume, jobs=args.jobs)
    if not ranks.is_main:
        return 0
    print(format_table(report))
    print(f"\nwrote {Path(args.out) / 'report.json'} and {Path(args.out) / 'accuracy.png'}")
    return 0


def _study(args: argparse.Namespace) -> int:
    from .slurm import SlurmSettings
    from .study import StudyIncomplete, collect_study, run_study
    from .study_report import format_study
    from .sweep import format_sweep, parse_sweep, run_sweep

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("lrwa-fast study runs its runs as separate processes (--jobs), not under torchrun")
    if args.plan is not None:
        return _study_plan(args)
    slurm = None
    if args.executor == "slurm":
        slurm = SlurmSettings.parse(args.slurm, args.slurm_setup, args.slurm_array_parallelism)
    elif args.slurm or args.slurm_setup or args.no_wait:
        raise ValueError("--slurm, --slurm-setup and --no-wait go with --executor slurm")
    try:
        if args.collect is not None:
            return _print_study(collect_study(Path(args.collect)), Path(args.collect))
        settings = _study_settings(args)
        out, cache, quiet = Path(args.out), Path(args.cache_dir), args.quiet
        options = dict(jobs=args.jobs, progress=not quiet, fresh=args.fresh, slurm=slurm, wait=not args.no_wait)
        if args.sweep is not None:
            sweep = parse_sweep(args.sweep)
            report = run_sweep(settings, sweep, out, cache, **options)
            if report is None:
                print("submitted; the same command again collects the sweep, or each value's study with: " +
                      "; ".join(f"lrwa-fast study --collect '{out / sweep.folder(v)}'" for v in sweep.values))
                return 0
            print(format_sweep(report))
            print(f"\nwrote {out / 'sweep.json'}, sweep.md and sweep.png, and a study per value in {out}")
            return 0
        report = run_study(settings, out, cache, **options)
    except StudyIncomplete as err:
        print(f"lrwa-fast: the study has not finished:\n{err}", file=sys.stderr)
        return 1 if err.failed else 0
    if report is None:
        print(f"submitted; collect with: lrwa-fast study --collect {out}")
        return 0
    print(format_study(report))
    return _print_study(report, out, printed=True)


def _study_settings(args: argparse.Namespace) -> StudySettings:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    overrides = dict(parse_override(item) for item in args.overrides)
    if args.allow_pickle:
        overrides["teacher.allow_pickle"] = True
    return StudySettings(benchmark=args.benchmark, methods=methods, seeds=args.seeds, first_seed=args.first_seed,
                         iterations=6 if args.fast and args.iterations is None else args.iterations,
                         teacher_seed=args.teacher_seed, overrides=overrides,
                         eval_every=2 if args.fast else None,
                         teacher_epochs=2 if args.fast and not args.preset else None,
                         preset=args.preset, data=args.data, teacher=args.teacher)


def _print_study(report: dict, out: Path, printed: bool = False) -> int:
    from .study_report import format_study

    if not printed:
        print(format_study(report))
    print(f"\nwrote {out / 'study.json'}, study.md, curves.png and forgetting.png")
    return 0


def _study_plan(args: argparse.Namespace) -> int:
    from .study_report import format_plan

    path = Path(args.plan)
    path = path / "study.json" if path.is_dir() else path
    if not path.exists():
        raise ValueError(f"--plan: {path} is missing (run or collect the pilot study first)")
    deltas = [float(d) for d in args.delta.split(",") if d.strip()]
    if not deltas or min(deltas) <= 0:
        raise ValueError(f"--delta must be positive differences in points, got {args.delta!r}")
    parallel = args.slurm_array_parallelism if args.executor == "slurm" else args.jobs
    print(format_plan(json.loads(path.read_text(encoding="utf-8")), deltas, parallel))
    return 0


def _distill(args: argparse.Namespace) -> int:
    from ..config import from_dict, load_config
    from ..runtime.distributed import process_group_from_env
    from ..training import trainer_class
    from ..training.settings import build
    from .distill import DistillConfig, run_distill
    from .presets import resolve_preset

    if (args.config is None) == (args.preset is None):
        raise ValueError("distill needs exactly one of --config FILE and --preset NAME")
    overrides = [*args.overrides, *(["teacher.allow_pickle=true"] if args.allow_pickle else [])]
    if args.preset is None:
        if args.data or args.teacher or args.out:
            raise ValueError("--data, --teacher and --out go with --preset (a config file names its own paths)")
        spec = load_config(DistillConfig, args.config, overrides)
    else:
        spec = resolve_preset(args.preset, data=args.data, teacher=args.teacher, out=args.out, overrides=overrides)
    trainer_config = from_dict(trainer_class(spec.method).config_class, spec.trainer, prefix="trainer.")
    with process_group_from_env(build("runtime", trainer_config).dist_timeout):
        summary = run_distill(spec, progress=not args.quiet, resume=args.resume)
    if summary:
        print(summary)
    return 0


def _teacher(args: argparse.Namespace) -> int:
    from ..runtime.distributed import process_group_from_env
    from .teacher import load_teacher_config, train_teacher

    cfg = load_teacher_config(args.overrides, dataset=args.dataset, arch=args.arch, epochs=args.epochs,
                              batch_size=args.batch_size)
    with process_group_from_env():
        report = train_teacher(cfg, args.data, args.out, progress=not args.quiet, resume=args.resume)
    if not report:  # another rank than 0 under torchrun
        return 0
    print(f"{cfg.arch} on {cfg.dataset}: test accuracy {100 * report['test_accuracy']:.2f}% after "
          f"{len(report['epochs'])} epochs; wrote {Path(args.out) / 'teacher.pt'} and report.json")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import doctor, format_doctor

    report = doctor(speed=not args.no_speed, paths=tuple(p.strip() for p in args.paths.split(",") if p.strip()))
    print(json.dumps(report, indent=2, allow_nan=False) if args.json else format_doctor(report))
    return 0 if report["ok"] else 1


def _check_teacher(args: argparse.Namespace) -> int:
    from .teacher_check import check_teacher, format_check

    given = dict(parse_override(item) for item in args.overrides)
    unknown = sorted(set(given) - {"mean", "std"})
    if unknown:
        raise ValueError(f"check-teacher --set takes mean=[r,g,b] and std=[r,g,b], not {unknown}")
    report = check_teacher(args.teacher, args.dataset, args.data, arch=args.arch, mean=given.get("mean"),
                           std=given.get("std"), allow_pickle=args.allow_pickle, device=args.device)
    print(json.dumps(report, indent=2) if args.json else format_check(report))
    return 0


def _presets(args: argparse.Namespace) -> int:
    from .presets import describe_presets

    print(describe_presets(args.names))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .reports import compare

    print(compare(args.runs, Path(args.plot)))
    print(f"\ncurves in {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
