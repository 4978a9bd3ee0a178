"""Step-level throughput: DFAD student step vs LRwA meta-steps vs the same meta-step with ``higher``.

Every variant runs the library's own code path on the same models, batch sizes and device; the
variants are timed round-robin (so drift hits all alike) and summarised by median and
inter-quartile range. Ratios are of medians measured in the same run. ``lrwa-fast bench`` prints
the table and writes JSON.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

from ..config import DFADConfig, LRwAConfig
from ..optim import gradients
from ..runtime.distributed import resolve_device
from ..runtime.precision import autocast
from ..training import DFADTrainer, LRwATrainer, Trainer
from ..updates import meta_gradient
from .cases import (
    CASES,
    COMPILABLE,
    COMPILED,
    COMPILED_VARIANTS,
    ITERATION_VARIANTS,
    MEMORY_VARIANTS,
    META_VARIANTS,
    ON_SMOOTH,
    SMOOTH,
    STEP_VARIANTS,
    BenchCase,
    alike,
    case_config,
    case_models,
    fill_memory,
    full_grid,
    require_compiled,
)
from .timing import measure, summarize_times


class HigherMetaStep:
    """The paper's meta-step written with ``higher`` as the authors' code writes it (inner SGD via
    ``diffopt``, teacher logits recomputed on the memory samples), with ``copy_initial_weights=False`` so
    the meta-gradient is real, on the library's default objective ``L_acq(θ) + w·L_ret(θ')``: the peer
    implementation of the same gradient, for timing."""

    def __init__(self, trainer: LRwATrainer) -> None:
        import higher

        self.higher, self.trainer = higher, trainer
        self.inner_opt = torch.optim.SGD(trainer.student.parameters(), lr=trainer.settings.meta.inner_lr)

    def __call__(self) -> None:
        tr, meta = self.trainer, self.trainer.settings.meta
        x, t = tr.fresh_batch()
        x_mem, _ = tr.memory.buffer.sample(tr.memory.batch_size)
        with torch.no_grad():
            t_mem = tr.teacher(x_mem)
        optimizer = tr.student_updater.optimizer
        optimizer.zero_grad(set_to_none=True)
        ctx = self.higher.innerloop_ctx(tr.student, self.inner_opt, copy_initial_weights=False)
        with ctx as (fmodel, diffopt):
            loss_acq = tr.kd_loss(fmodel(x), t)
            diffopt.step(loss_acq)
            loss_ret = tr.kd_loss(fmodel(x_mem), t_mem)
            (loss_acq + meta.retain_weight * loss_ret).backward()
        optimizer.step()


def higher_available() -> bool:
    try:
        import higher  # noqa: F401
    except ImportError:
        return False
    return True


def step_functions(case: BenchCase, device: torch.device,
                   variants: tuple[str, ...]) -> dict[str, Callable[[], object]]:
    """One zero-argument callable per variant, each running one step of the library's code path."""
    fns: dict[str, Callable[[], object]] = {}
    for name in variants:
        compiled = {"compile_student": True} if name.endswith(COMPILED) else {}
        if name.startswith("dfad"):
            trainer: Trainer = DFADTrainer(*case_models(case, device, 64),
                                               case_config(DFADConfig, case, device, **compiled))
        else:
            meta = META_VARIANTS.get(name.removesuffix(COMPILED), META_VARIANTS["lrwa_exact"])
            cfg = case_config(LRwAConfig, case, device, **meta, **MEMORY_VARIANTS.get(name, {}), **compiled)
            trainer = LRwATrainer(*case_models(case, device, 64), cfg)
            fill_memory(trainer)
        if compiled:
            require_compiled(trainer, f"variant {name!r}")
        trainer.student.train()
        trainer.generator.train()
        if name == "higher_exact":
            fns[name] = HigherMetaStep(trainer)
        elif name.endswith("iteration"):
            fns[name] = trainer.step
        else:
            fns[name] = trainer.student_step
    return fns


def run_case(case: BenchCase, device: torch.device, repeats: int, warmup: int,
             iterations: bool = True, compiled: bool = False, gradient_repeats: int | None = None) -> dict[str, Any]:
    """Time every variant of ``case``; ratios against the DFAD step (compiled variants: the compiled
    DFAD step; whole iterations: the DFAD iteration) and the ``higher`` meta-step; then the
    meta-gradients alone (:func:`meta_gradients`, ``gradient_repeats`` times, default ``repeats``; 0:
    their errors only)."""
    with_higher = higher_available() and case.precision == "fp32"  # the higher step runs in fp32 only
    variants = STEP_VARIANTS if with_higher else STEP_VARIANTS[:-1]
    if compiled:
        variants = variants + COMPILED_VARIANTS
    if iterations:
        variants = variants + ITERATION_VARIANTS
    stats = summarize_times(measure(step_functions(case, device, variants), device, repeats, warmup))
    step_level = set(STEP_VARIANTS) | set(COMPILED_VARIANTS)
    for name, s in stats.items():
        if name in step_level:
            s["vs_dfad_step"] = s["median_ms"] / stats[alike("dfad_step", name)]["median_ms"]
        if "higher_exact" in stats and name.startswith("lrwa_") and name in step_level:
            s["higher_speedup"] = stats["higher_exact"]["median_ms"] / s["median_ms"]
    gradients_alone = meta_gradients(case, device, repeats if gradient_repeats is None else gradient_repeats,
                                     warmup, compiled)
    for name, row in gradients_alone.items():
        if name in stats and name != "lrwa_exact":
            stats[name]["error_vs_exact"] = row["error_vs_exact"]
            stats[name]["exact_speedup"] = stats["lrwa_exact"]["median_ms"] / stats[name]["median_ms"]
    cfg = DFADConfig()
    for name in set(ITERATION_VARIANTS) & set(stats):
        images = case.batch * (cfg.student_steps + cfg.generator_steps)
        stats[name]["images_per_s"] = images / (stats[name]["median_ms"] / 1e3)
        stats[name]["vs_dfad_iteration"] = stats[name]["median_ms"] / stats["dfad_iteration"]["median_ms"]
    return {"case": dataclasses.asdict(case), "name": case.name, "device": str(device), "variants": stats,
            "meta_gradient": gradients_alone}


def meta_gradients(case: BenchCase, device: torch.device, repeats: int = 0, warmup: int = 2,
                   compiled: bool = False) -> dict[str, dict[str, float]]:
    """Each meta variant's gradient alone, on one fresh batch and memory draw of ``case``: its relative
    error ‖g − g_exact‖/‖g_exact‖ (same weights and BatchNorm buffers for every variant) and, with
    ``repeats``, its median time against a plain KD gradient of the same batch (``kd_gradient``) and
    against the exact mode. This is the part a meta mode changes; a student step adds the generator
    and teacher forwards, the memory and the optimiser, the same for every mode. ``compiled`` adds
    the variants a compiled student can run (every one but exact) with ``+compile``; their ratio to
    exact is to the eager exact mode, the only one there is. On an L1 case every variant's error is
    also given on the smooth loss (``" (kl)"`` rows, against exact on it; not timed: the loss is a
    negligible part of a gradient), since finite differences cross L1's kinks."""
    eager = LRwATrainer(*case_models(case, device, 64), case_config(LRwAConfig, case, device))
    fill_memory(eager)
    x, t = eager.fresh_batch()
    batch = (x, t, *eager.memory.buffer.sample(case.memory_batch))
    fns = _gradient_functions(eager, batch, META_VARIANTS, "")
    if compiled:
        fns |= _gradient_functions(_twin(eager, case, meta_mode="first_order", compile_student=True), batch,
                                   COMPILABLE, COMPILED)
    checked = dict(fns)
    if case.loss == "l1":
        checked |= _gradient_functions(_twin(eager, dataclasses.replace(case, loss=SMOOTH)), batch, META_VARIANTS,
                                       ON_SMOOTH)
    flat = {name: torch.cat([g.reshape(-1).double() for g in fn()])
            for name, fn in checked.items() if not name.startswith("kd_gradient")}
    out = {name: {"error_vs_exact": float((g - flat[_exact_of(name)]).norm() / flat[_exact_of(name)].norm())}
           for name, g in flat.items()}
    if repeats:
        ms = {n: s["median_ms"] for n, s in summarize_times(measure(fns, device, repeats, warmup)).items()}
        timed = {name: out.get(name, {}) for name in fns}  # with the KD gradients, in timing order
        for name, row in timed.items():
            row.update(gradient_ms=ms[name], gradient_vs_kd=ms[name] / ms[alike("kd_gradient", name)],
                       gradient_exact_speedup=ms["lrwa_exact"] / ms[name])
        out = timed | {name: row for name, row in out.items() if name not in timed}  # then the smooth loss's
    return out


def _twin(trainer: LRwATrainer, case: BenchCase, **extra: Any) -> LRwATrainer:
    """A trainer of ``case`` (config fields ``extra``) whose student has ``trainer``'s weights and buffers."""
    twin = LRwATrainer(*case_models(case, trainer.device, 64), case_config(LRwAConfig, case, trainer.device, **extra))
    if extra.get("compile_student"):
        require_compiled(twin, "compiled meta-gradients")
    twin.student.load_state_dict(trainer.student.state_dict())
    return twin


def _exact_of(name: str) -> str:
    """The exact gradient a variant's error is to: on the same loss (compiled variants: the eager one)."""
    return "lrwa_exact" + (ON_SMOOTH if name.endswith(ON_SMOOTH) else "")


def _gradient_functions(trainer: LRwATrainer, batch: tuple[torch.Tensor, ...], variants: dict[str, dict[str, str]],
                        suffix: str) -> dict[str, Callable[[], list[torch.Tensor]]]:
    """``kd_gradient`` and one meta-gradient call per variant on ``batch`` with ``trainer``'s student,
    under the case's precision; every call starts from the same BatchNorm buffers."""
    student, precision = trainer.student.train(), trainer.settings.runtime.precision
    x, t, x_mem, t_mem = batch
    buffers = copy.deepcopy(list(student.buffers()))
    params = [p for p in student.parameters() if p.requires_grad]

    def restored() -> AbstractContextManager[Any]:
        for live, saved in zip(student.buffers(), buffers):
            live.copy_(saved)
        return autocast(precision, trainer.device)

    def variant(meta: dict[str, str]) -> Callable[[], list[torch.Tensor]]:
        own = trainer.settings.meta
        settings = dataclasses.replace(own, mode=meta["meta_mode"], fd_scheme=meta.get("fd_scheme", own.fd_scheme),
                                       alignment=False)

        def run() -> list[torch.Tensor]:
            with restored():
                return list(meta_gradient(student, (x, t), (x_mem, t_mem), loss=trainer.kd_loss,
                                          settings=settings).grads.values())
        return run

    def kd_gradient() -> list[torch.Tensor]:
        with restored():
            return gradients(trainer.kd_loss(student(x), t), params)

    return {"kd_gradient" + suffix: kd_gradient} | {name + suffix: variant(meta) for name, meta in variants.items()}


def format_results(results: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`run_case` results, under the KD loss they ran on."""
    lines = [_loss_line(results), "", "| case | variant | median ms | IQR ms | × DFAD | higher / ours | exact / ours "
             "| error vs exact | images/s |", "|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        for name, s in result["variants"].items():
            cells = [_cell(s, "vs_dfad_step", "{:.2f}") or _cell(s, "vs_dfad_iteration", "{:.2f}"),
                     _cell(s, "higher_speedup", "{:.2f}"), _cell(s, "exact_speedup", "{:.2f}"),
                     _cell(s, "error_vs_exact", "{:.1e}"), _cell(s, "images_per_s", "{:.0f}")]
            spread = f"{s['q1_ms']:.2f}–{s['q3_ms']:.2f}"
            lines.append(f"| {result['name']} | {name} | {s['median_ms']:.2f} | {spread} | " + " | ".join(cells) + " |")
    lines.append("× DFAD: a step's ratio to the DFAD step, an iteration's (1 generator + "
                 f"{DFADConfig.student_steps} student steps) to the DFAD iteration.")
    targets = [line for result in results for line in target_verdicts(result)]
    return "\n".join([*lines, "", _format_gradients(results), *(["", "Targets:", *targets] if targets else [])])


# The CPU targets of the meta step: first order within 15% of a DFAD step; finite differences 1.5× (central) and
# 2× (one-sided) faster than exact, per student step and per meta-gradient (compiled variants: the same targets,
# against the eager exact mode, the only one there is).
AT_MOST_X_DFAD = {"lrwa_first_order": 1.15, "lrwa_first_order" + COMPILED: 1.15}
AT_LEAST_X_FASTER_THAN_EXACT = {name + suffix: target for suffix in ("", COMPILED)
                                for name, target in (("lrwa_fd_central", 1.5), ("lrwa_fd_one_sided", 2.0))}


def target_verdicts(result: dict[str, Any]) -> list[str]:
    """One line per target the result can be judged on: the measured ratio and whether it meets the target."""
    lines, variants, alone = [], result["variants"], result["meta_gradient"]
    for name, target in AT_MOST_X_DFAD.items():
        if name in variants:
            ratio = variants[name]["vs_dfad_step"]
            lines.append(f"{result['name']}: {name} = {ratio:.2f}× DFAD step "
                         f"({'meets' if ratio <= target else 'misses'} the ≤ {target}× target)")
    for name, target in AT_LEAST_X_FASTER_THAN_EXACT.items():
        if name not in variants or "exact_speedup" not in variants[name]:
            continue
        step, row = variants[name]["exact_speedup"], alone.get(name, {})
        gradient = row.get("gradient_exact_speedup")
        per_gradient = "" if gradient is None else (f" and {gradient:.2f}× per meta-gradient "
                                                     f"({'meets' if gradient >= target else 'misses'})")
        lines.append(f"{result['name']}: {name}, relative error {row.get('error_vs_exact', float('nan')):.1e}, is "
                     f"{step:.2f}× faster than exact per student step ({'meets' if step >= target else 'misses'})"
                     f"{per_gradient}; target ≥ {target}×")
    return lines


def _loss_line(results: list[dict[str, Any]]) -> str:
    """The KD loss the results ran on."""
    return f"Student KD loss: {', '.join(sorted({r['case']['loss'] for r in results}))} (--loss l1|kl|js)"


def _smooth_note(results: list[dict[str, Any]]) -> list[str]:
    """Why L1 cases have meta-gradient rows on the smooth loss too (nothing for other losses)."""
    if not any(name.endswith(ON_SMOOTH) for r in results for name in r["meta_gradient"]):
        return []
    return [f"L1 is piecewise linear: a finite difference sees the kinks its perturbation crosses, which the exact "
            f"Hessian ignores, so on L1 its error can exceed first order's. The '…{ON_SMOOTH}' rows are the same "
            f"gradients on {SMOOTH.upper()} (same weights and batch, error to exact on {SMOOTH.upper()}), the smooth "
            "loss finite differences need; they are not timed (the loss is a negligible part of a gradient)."]


def _format_gradients(results: list[dict[str, Any]]) -> str:
    """Markdown table of the meta-gradients alone (:func:`meta_gradients`); timings where they were taken."""
    lines = ["The meta-gradient alone, on one fixed batch (what a meta mode changes):", "",
             "| case | gradient | median ms | × KD gradient | exact / ours | error vs exact |",
             "|---|---|---|---|---|---|"]
    for result in results:
        for name, s in result["meta_gradient"].items():
            cells = [_cell(s, "gradient_ms", "{:.2f}"), _cell(s, "gradient_vs_kd", "{:.2f}"),
                     _cell(s, "gradient_exact_speedup", "{:.2f}"),
                     _cell(s, "error_vs_exact", "{:.1e}") if name != _exact_of(name) else ""]
            lines.append(f"| {result['name']} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines + _smooth_note(results))


def _cell(stats: dict[str, float], key: str, fmt: str) -> str:
    return fmt.format(stats[key]) if key in stats else ""


def bench(case_names: list[str], device_name: str = "auto", repeats: int = 20, warmup: int = 3,
          full: bool = False, iterations: bool = True, overrides: dict[str, int | str] | None = None,
          compiled: bool = False, gradient_repeats: int | None = None) -> list[dict[str, Any]]:
    """Run the comparison for the named cases (``full``: the batch-size grid; ``compiled``: also
    the steps and gradients that can run with ``compile_student``, every one but exact;
    ``gradient_repeats``: timings of the meta-gradients alone, default ``repeats``, 0 for none)."""
    unknown = [n for n in case_names if n not in CASES]
    if unknown:
        raise ValueError(f"unknown bench case(s) {unknown}; available: {sorted(CASES)}")
    device = resolve_device(device_name)
    cases = full_grid(case_names) if full else [dataclasses.replace(CASES[n], **(overrides or {}))
                                                 for n in case_names]
    return [run_case(case, device, repeats, warmup, iterations, compiled, gradient_repeats) for case in cases]
