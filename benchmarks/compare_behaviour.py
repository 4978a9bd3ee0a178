"""Is a refactor behaviour-preserving? Fixed-seed fingerprints of every training mode, and exact resumes.

``record OUT`` runs each named case (tiny models, a fixed seed, 6 iterations on the CPU, one thread, deterministic
algorithms) with the checkout that ``import lrwa_fast`` finds, and writes ``OUT/<case>.json``: SHA-256 digests of
the initial models, of the student's and the generator's state_dict tensors and of the memory's state, and the
metrics and evaluations history with every value as ``repr`` (floats exact). It also runs the case to iteration 3,
saves ``OUT/<case>.pt``, finishes it in the same process and requires the same fingerprint. A case using a config
field or value the checkout does not have is skipped (``OUT/<case>.json`` then says why).

``check OUT`` reruns every case with the current checkout and compares with ``OUT`` (bit-identical required), then
loads every ``OUT/<case>.pt`` with the current code, trains it to the end and compares with the recorded run. One
line per case: ``same`` or ``DIFFERENT (run: parts; resume: parts)``; exit status 1 on any difference.

``--two-process`` adds a data-parallel case on 2 local gloo ranks (``lrwa_fast.testing.run_local``).

    git worktree add --detach /tmp/old a26b1bc        # the commit to compare with (copy the built _replay_ext in)
    (cd /tmp/old && PYTHONPATH=. python "$OLDPWD/benchmarks/compare_behaviour.py" record /tmp/ref-old --two-process)
    PYTHONPATH=. python benchmarks/compare_behaviour.py check /tmp/ref-old --two-process

Uses only the public API that lrwa_fast 0.3 (688da78) already had; ``lrwa_fast.testing.tiny_models`` came later, so
before it the script builds the same models from ``lrwa_fast.models``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import lrwa_fast
from lrwa_fast import DFADConfig, DFADTrainer, LRwAConfig, LRwATrainer

ITERATIONS = 6
HALF = ITERATIONS // 2  # the checkpoint's iteration; evaluations every HALF iterations
BASE: dict[str, Any] = dict(batch_size=16, latent_dim=8, iterations=ITERATIONS, student_steps=2, device="cpu",
                            backend="torch", seed=3, log_every=1)
MEMORY: dict[str, Any] = dict(memory_capacity=32, memory_batch_size=8, memory_insert_size=8, memory_backend="torch")
TRAINERS: dict[str, type[DFADTrainer]] = {"dfad": DFADTrainer, "lrwa": LRwATrainer}
CONFIGS: dict[str, type[DFADConfig]] = {"dfad": DFADConfig, "lrwa": LRwAConfig}
PRIORS = dict(bn_prior=1.0, one_hot=0.5, balance=0.5, activation=0.1)
TWO_PROCESS = "ddp_lrwa_exact"

Case = tuple[str, dict[str, Any]]  # (method, config fields; a dict value replaces fields of a nested config)


def dfad(**fields: Any) -> Case:
    return "dfad", {**BASE, **fields}


def lrwa(**fields: Any) -> Case:
    return "lrwa", {**BASE, **MEMORY, **fields}


CASES: dict[str, Case] = {
    "dfad_l1": dfad(),
    "dfad_kl_clip_priors": dfad(loss="kl", temperature=4.0, adversarial_loss="kl", adversarial_temperature=2.0,
                                grad_clip=0.5, generator_weights=PRIORS),
    "dfad_js_adam": dfad(loss="js", adversarial_loss="js",
                         student_optimizer=dict(name="adam", lr=1e-3, schedule="constant")),
    "dfad_bf16": dfad(precision="bf16"),
    "dfad_fp16": dfad(precision="fp16"),
    "dfad_channels_last_no_generator_step": dfad(channels_last=True, generator_steps=0),
    "lrwa_first_order_channels_last_two_generator_steps": lrwa(meta_mode="first_order", channels_last=True,
                                                               generator_steps=2),
    "mad_ema": dfad(ema_decay=0.9),
    "dfad_probes": dfad(probe_every=2, probe_size=8),
    "lrwa_exact": lrwa(),
    "lrwa_first_order": lrwa(meta_mode="first_order"),
    "lrwa_fd_central": lrwa(meta_mode="finite_difference", fd_scheme="central"),
    "lrwa_fd_one_sided": lrwa(meta_mode="finite_difference", fd_scheme="one_sided"),
    "lrwa_none_joint": lrwa(meta_mode="none", joint_replay=True),
    "lrwa_bn_all": lrwa(bn_mode="all"),
    "lrwa_bn_retain_eval": lrwa(bn_mode="retain_eval"),
    "lrwa_bn_joint": lrwa(bn_mode="joint", joint_replay=True),
    "lrwa_authors_step": lrwa(inner_weight_decay=5e-4, acquire_weight=0.0, joint_replay=True, memory_policy="fifo",
                              memory_draw="entry"),
    "lrwa_released_step": lrwa(meta_mode="none", acquire_weight=0.0, joint_replay=True, bn_mode="joint",
                               inner_weight_decay=5e-4, memory_policy="fifo", memory_draw="entry"),
    "lrwa_none_joint_weighted_bn_joint": lrwa(meta_mode="none", acquire_weight=0.5, joint_replay=True,
                                              bn_mode="joint"),
    "lrwa_generative": lrwa(memory_kind="generative", vae_width=4, vae_steps=1, vae_fresh_size=8,
                            generator_weights=dict(one_hot=0.5, balance=0.5)),
    "lrwa_bf16": lrwa(precision="bf16"),
    "lrwa_fp16": lrwa(precision="fp16"),
    # lr 1500: steps skipped in iterations 2 and 3 (around the checkpoint), clean ones before and after
    "lrwa_nonfinite_skip": lrwa(nonfinite="skip", student_optimizer=dict(lr=1.5e3, schedule="constant")),
    "lrwa_memory_cpp": lrwa(memory_backend="cpp"),
    "lrwa_memory_fifo_fp16": lrwa(memory_backend="cpp", memory_policy="fifo", memory_dtype="float16",
                                  memory_insert_every=2, memory_start=1),
    "lrwa_mad_probes_kl": lrwa(ema_decay=0.9, probe_every=2, probe_size=8, loss="kl", meta_mode="first_order"),
}


# ----------------------------------------------------------------- set-up
def setup_torch() -> None:
    """One thread, deterministic algorithms; the skip case's expected warning silenced."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    warnings.filterwarnings("ignore", message="non-finite loss or gradient", category=RuntimeWarning)


def tiny_models() -> tuple[nn.Module, nn.Module, nn.Module]:
    """``lrwa_fast.testing.tiny_models()``; before it existed (0.3), the same recipe from ``lrwa_fast.models``."""
    try:
        from lrwa_fast.testing import tiny_models as build
    except ImportError:
        from lrwa_fast.models import Generator, SmallCNN

        def build() -> tuple[nn.Module, nn.Module, nn.Module]:
            torch.manual_seed(0)
            teacher = SmallCNN(10, 1, width=8)
            torch.manual_seed(1)
            return teacher, SmallCNN(10, 1, width=4), Generator(8, channels=1, img_size=8, ngf=8)
    return build()


def missing_fields(name: str) -> list[str]:
    """The case's config fields (nested ones included) that this checkout's config lacks."""
    method, fields = case_of(name)
    config = CONFIGS[method]()
    missing = [k for k in fields if not hasattr(config, k)]
    missing += [f"{k}.{sub}" for k, v in fields.items() if isinstance(v, dict) and hasattr(config, k)
                for sub in v if not hasattr(getattr(config, k), sub)]
    return missing


def make_config(method: str, fields: dict[str, Any]) -> DFADConfig:
    """The config of ``fields``; a dict value replaces fields of the default nested config."""
    default = CONFIGS[method]()
    values = {k: dataclasses.replace(getattr(default, k), **v) if isinstance(v, dict) else v
              for k, v in fields.items()}
    return CONFIGS[method](**values)


def case_of(name: str) -> Case:
    """The case's method and fields; the two-process case is LRwA's default."""
    return CASES[name] if name in CASES else lrwa()


def new_trainer(name: str) -> DFADTrainer:
    method, fields = case_of(name)
    return TRAINERS[method](*tiny_models(), make_config(method, fields))


def load_trainer(name: str, checkpoint: Path) -> DFADTrainer:
    return TRAINERS[case_of(name)[0]].load(checkpoint, *tiny_models())


def evaluate(student: nn.Module) -> dict[str, float]:
    """A fixed-input score of the student (eval mode, no gradients): the sum of its logits, in float64."""
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    return {"logit_sum": float(student(x).double().sum())}


def train(trainer: DFADTrainer, iterations: int | None = None) -> None:
    trainer.train(iterations, evaluate=evaluate, eval_every=HALF, progress=False)


# ----------------------------------------------------------------- fingerprints
def digest(tensors: Iterable[tuple[str, Tensor]]) -> str:
    """SHA-256 of named tensors, in order: name, dtype, shape and bytes of each."""
    h = hashlib.sha256()
    for name, t in tensors:
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def leaves(state: Any, path: str = "") -> Iterable[tuple[str, Tensor]]:
    """A nested state's leaves in key order, each as a tensor (scalars and strings by ``repr``)."""
    if isinstance(state, dict):
        for k, v in state.items():
            yield from leaves(v, f"{path}.{k}")
    elif isinstance(state, list | tuple):
        for i, v in enumerate(state):
            yield from leaves(v, f"{path}[{i}]")
    elif isinstance(state, Tensor):
        yield path, state
    else:
        yield path, torch.frombuffer(bytearray(repr(state).encode() or b" "), dtype=torch.uint8)


def history_repr(history: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, str]]]:
    return {part: [{k: repr(v) for k, v in row.items()} for row in rows] for part, rows in history.items()}


def fingerprint(trainer: DFADTrainer) -> dict[str, Any]:
    """Digests of the student, the generator and the memory, and the history (values by ``repr``)."""
    memory = getattr(trainer, "memory", None)
    return {"student": digest(trainer.student.state_dict().items()),
            "generator": digest(trainer.generator.state_dict().items()),
            "memory": None if memory is None else digest(leaves(memory.state_dict())),
            "history": history_repr(trainer.history)}


def models_digest() -> str:
    """Digest of the initial teacher, student and generator."""
    return digest((f"{i}.{k}", v) for i, m in enumerate(tiny_models()) for k, v in m.state_dict().items())


def different_parts(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    return [part for part in expected if expected[part] != got.get(part)]


# ----------------------------------------------------------------- one process
def straight_run(name: str) -> dict[str, Any]:
    trainer = new_trainer(name)
    train(trainer)
    return fingerprint(trainer)


def split_run(name: str, checkpoint: Path) -> dict[str, Any]:
    """To iteration HALF, save ``checkpoint``, then to the end in the same trainer."""
    trainer = new_trainer(name)
    train(trainer, HALF)
    trainer.save(checkpoint)
    train(trainer)
    return fingerprint(trainer)


def resumed_run(name: str, checkpoint: Path) -> dict[str, Any]:
    trainer = load_trainer(name, checkpoint)
    train(trainer)
    return fingerprint(trainer)


# ----------------------------------------------------------------- two processes
def rank_job(rank: int, world: int, out: Path, name: str, mode: str, checkpoint: str) -> dict[str, Any]:
    """One rank of the two-process case: a straight, split or resumed run."""
    setup_torch()
    run = {"straight": lambda: straight_run(name), "split": lambda: split_run(name, Path(checkpoint)),
           "resumed": lambda: resumed_run(name, Path(checkpoint))}[mode]
    return run()


def two_process_run(name: str, mode: str, checkpoint: Path) -> dict[str, Any]:
    """A run on 2 local gloo ranks; each part is the list of the ranks' values."""
    from lrwa_fast.testing import rank_values, run_local

    with tempfile.TemporaryDirectory() as tmp:
        results = run_local(rank_job, Path(tmp), world=2, timeout=120.0, name=name, mode=mode,
                            checkpoint=str(checkpoint))
    ranks = rank_values(results)
    return {part: [r[part] for r in ranks] for part in ranks[0]}


# ----------------------------------------------------------------- record / check
def run_case(name: str, mode: str, checkpoint: Path | None = None) -> dict[str, Any]:
    """The fingerprint of a ``"straight"`` run, a ``"split"`` one that saves ``checkpoint`` half-way, or a run
    ``"resumed"`` from ``checkpoint``."""
    if name == TWO_PROCESS:
        return two_process_run(name, mode, checkpoint or Path())
    if mode == "straight":
        return straight_run(name)
    return (split_run if mode == "split" else resumed_run)(name, checkpoint or Path())


def skip_reason(name: str) -> str | None:
    """Why this checkout cannot run the case (a missing field, a refused value), or None."""
    missing = missing_fields(name)
    if missing:
        return f"fields missing at this checkout: {', '.join(missing)}"
    try:
        make_config(*case_of(name))
        new_trainer(name)
    except (ValueError, TypeError, RuntimeError) as err:
        return f"refused at this checkout: {type(err).__name__}: {err}"
    return None


def skipped(name: str, out: Path, reason: str) -> str:
    (out / f"{name}.json").write_text(json.dumps({"case": name, "skipped": reason, "source": source()}, indent=1))
    return f"skipped ({reason})"


def record_case(name: str, out: Path) -> str:
    reason = skip_reason(name)
    if reason is not None:
        return skipped(name, out, reason)
    try:
        straight = run_case(name, "straight")
    except Exception as err:  # the checkout cannot run the case: recorded as skipped, with the error
        return skipped(name, out, f"failed at this checkout: {type(err).__name__}: {err}")
    split = run_case(name, "split", out / f"{name}.pt")
    if straight != split:
        raise RuntimeError(f"{name}: the run with a checkpoint differs from the straight run in "
                           f"{different_parts(straight, split)}")
    result = {"case": name, "config": case_of(name), "source": source(), "models": models_digest(), "run": straight}
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    return "recorded"


def check_case(name: str, out: Path) -> tuple[bool, str]:
    """(same, the line's verdict) of a rerun and a resume of ``out/<name>.pt`` against the record."""
    path = out / f"{name}.json"
    if not path.exists():
        return True, "not in the reference"
    ref = json.loads(path.read_text())
    if "skipped" in ref:
        return True, f"skipped in the reference ({ref['skipped']})"
    problems = [f"{label}: {text}" for label, text in (("run", rerun_problems(name, ref)),
                                                         ("resume", resume_problems(name, ref, out))) if text]
    return not problems, "same" if not problems else f"DIFFERENT ({'; '.join(problems)})"


def rerun_problems(name: str, ref: dict[str, Any]) -> str:
    try:
        got = {"models": models_digest(), **run_case(name, "straight")}
    except Exception as err:  # reported as a difference
        return error_line(err)
    return ", ".join(different_parts({"models": ref["models"], **ref["run"]}, got))


def resume_problems(name: str, ref: dict[str, Any], out: Path) -> str:
    try:
        got = run_case(name, "resumed", out / f"{name}.pt")
    except Exception as err:  # reported as a difference
        return error_line(err)
    return ", ".join(different_parts(ref["run"], got))


def error_line(err: BaseException) -> str:
    """An error in one line: its type and the last line of its message (a rank's traceback ends with its error)."""
    lines = str(err).strip().splitlines() or [""]
    return f"error {type(err).__name__}: {lines[-1][:300]}"


def source() -> dict[str, str]:
    """The imported lrwa_fast (its file, the commit of its checkout when git knows it) and torch's version."""
    folder = Path(lrwa_fast.__file__).resolve().parent
    done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=False)
    return {"lrwa_fast": str(folder), "commit": done.stdout.strip(), "torch": torch.__version__}


def case_names(two_process: bool, only: list[str] | None) -> list[str]:
    names = [*CASES, *([TWO_PROCESS] if two_process else [])]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; cases: {names}")
    return [n for n in names if not only or n in only]


def record(out: Path, names: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        start = time.perf_counter()
        verdict = record_case(name, out)
        print(f"{name}: {verdict} ({time.perf_counter() - start:.1f} s)", flush=True)
    return 0


def check(out: Path, names: list[str]) -> int:
    failed = 0
    for name in names:
        start = time.perf_counter()
        same, verdict = check_case(name, out)
        failed += not same
        print(f"{name}: {verdict} ({time.perf_counter() - start:.1f} s)", flush=True)
    print(f"{failed} case(s) DIFFERENT" if failed else "all cases same")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("record", "check"))
    parser.add_argument("out", type=Path, help="the folder of fingerprints and checkpoints")
    parser.add_argument("--two-process", action="store_true", help=f"add {TWO_PROCESS} (2 local gloo ranks)")
    parser.add_argument("--cases", nargs="+", metavar="CASE", help="only these cases (default: all)")
    args = parser.parse_args(argv)
    names = case_names(args.two_process, args.cases)
    setup_torch()
    print(f"lrwa_fast imported from {lrwa_fast.__file__}; torch {torch.__version__}", flush=True)
    return (record if args.command == "record" else check)(args.out, names)


if __name__ == "__main__":
    sys.exit(main())
