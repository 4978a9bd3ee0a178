"""Do teacher files of the community load with the original's logits? A development check against the originals,
which are not part of this repository: it needs clones of their repositories.

For each code base, architecture and wrapper: build the model from the code base's own definition (the file read
from the clone at run time; nothing of theirs is kept), give BatchNorm non-trivial statistics, save the file as
that code base's training script saves it, load it with ``lrwa_fast.models.teacher_file.load_teacher`` and compare
fp32 logits on a seeded input (relative difference ≤ 1e-5 required, and the same architecture and classes).
``--manifests DIR`` also writes, per code base, the names and shapes of the originals' tensors and the keys of the
wrapper (``tests/models/manifests``: what the tests rebuild files from).

    SOURCES/<owner>/<name>: a git clone of each repository below (any commit; the one used is recorded)
    PYTHONPATH=. python benchmarks/community_logits.py --sources SOURCES [--manifests tests/models/manifests]

Exit status 1 on any difference. The originals need only torch (the DataFree MobileNetV2 is taken from NAYER,
whose copy imports ``torch.hub`` instead of ``torchvision.models.utils``).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lrwa_fast.models.teacher_file import TeacherFileError, load_teacher

# code base → (repository, folder of its model definitions, the files used)
REPOS: dict[str, tuple[str, str, list[str]]] = {
    "datafree": ("zju-vipa/Fast-Datafree", "datafree/models/classifiers",
                 ["resnet.py", "resnet_tiny.py", "wresnet.py", "vgg.py", "shufflenetv2.py"]),
    "nayer": ("tmtuan1307/NAYER", "datafree/models/classifiers", ["mobilenetv2.py"]),
    "cmi": ("zju-vipa/CMI", "datafree/models/classifiers", ["resnet.py", "wresnet.py", "vgg.py"]),
    "dfad": ("VainF/Data-Free-Adversarial-Distillation", "network", ["resnet_8x.py"]),
    "lra": ("gaurav104/LRA", "src", ["graphs/models/resnet.py", "utils/constants.py",
                                     "graphs/models/networks/wresnet.py"]),
    "zskt": ("polo5/ZeroShotKnowledgeTransfer", "models", ["wresnet.py"]),
    "chenyaofo": ("chenyaofo/pytorch-cifar-models", "pytorch_cifar_models",
                  ["resnet.py", "vgg.py", "mobilenetv2.py", "shufflenetv2.py"]),
    "repdistiller": ("HobbitLong/RepDistiller", "models", ["resnet.py", "wrn.py", "vgg.py", "ShuffleNetv2.py"]),
    "kuangliu": ("kuangliu/pytorch-cifar", "models", ["resnet.py"]),
    "spaceshipnet": ("skgyu/SpaceshipNet", "code/SpaceshipNet/networks", ["resnet_cifar.py", "vgg.py"]),
}
Case = tuple[str, str, str, Callable[[int], nn.Module], int]  # code base, wrapper, library arch, factory, classes


def git(sources: Path, repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", str(sources / repo), *args], capture_output=True, text=True,
                          check=True).stdout


def extract(sources: Path, work: Path) -> None:
    """Each code base's files, as they are at its clone's HEAD, under ``work/<code base>/``."""
    for name, (repo, folder, files) in REPOS.items():
        for file in files:
            target = work / name / file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(git(sources, repo, "show", f"HEAD:{folder}/{file}"))


def module(work: Path, base: str, file: str, as_name: str | None = None) -> types.ModuleType:
    name = as_name or f"orig_{base}_{Path(file).stem}"
    spec = importlib.util.spec_from_file_location(name, work / base / file)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters and biases (the default init leaves them 1 / 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
                if m.affine:
                    m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
    return model.eval()


def wrapped(kind: str, model: nn.Module, arch: str) -> object:
    """What each code base's training script saves (read from it: ``train_scratch.py``, ``train_teacher.py``,
    ``main.py``)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    if kind in ("checkpoint", "checkpoint_dp"):  # DataFree train_scratch.py, also under nn.DataParallel
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[120, 150, 180], gamma=0.2)
        weights = (nn.DataParallel(model) if kind == "checkpoint_dp" else model).state_dict()
        return {"epoch": 200, "arch": arch, "state_dict": weights, "best_acc1": 0.9570,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    if kind == "repdistiller_best":
        return {"epoch": 240, "model": model.state_dict(), "best_acc": torch.tensor(75.61),
                "optimizer": optimizer.state_dict()}
    if kind == "repdistiller_last":
        return {"opt": argparse.Namespace(model=arch, dataset="cifar100"), "model": model.state_dict(),
                "optimizer": optimizer.state_dict()}
    return {"bare": model.state_dict(), "state_dict": {"state_dict": model.state_dict()},
            "kuangliu": {"net": nn.DataParallel(model).state_dict(), "acc": 95.2, "epoch": 199},
            "pickled": model}[kind]


def by_name(mod: types.ModuleType, name: str, keyword: bool = False, **kwargs: object) -> Callable[[int], nn.Module]:
    """A factory of ``mod.name`` given the number of classes (positionally, or as ``num_classes=``)."""
    def make(classes: int) -> nn.Module:
        factory = getattr(mod, name)
        return factory(num_classes=classes, **kwargs) if keyword else factory(classes, **kwargs)

    return make


def fixed(mod: types.ModuleType, name: str) -> Callable[[int], nn.Module]:
    """A factory of ``mod.name()``, whose classes are fixed by its name (its ``cifar100_...`` or its default)."""
    return lambda classes: getattr(mod, name)()


def cases(work: Path) -> list[Case]:
    """Every file tried: each code base's architectures in the wrappers it saves them in."""
    out: list[Case] = []
    df = {f: module(work, "datafree", f"{f}.py") for f in ("resnet", "resnet_tiny", "wresnet", "vgg", "shufflenetv2")}
    datafree = {**{a: by_name(df["resnet"], a) for a in ("resnet18", "resnet34", "resnet50")},
                **{f"resnet{d}": by_name(df["resnet_tiny"], f"resnet{d}") for d in (8, 14, 20, 32, 44, 56, 110)},
                **{a: by_name(df["resnet_tiny"], a) for a in ("resnet8x4", "resnet32x4")},
                **{f"wrn{d}_{w}": by_name(df["wresnet"], f"wrn_{d}_{w}") for d, w in ((16, 1), (16, 2), (40, 1),
                                                                                      (40, 2))},
                **{f"vgg{d}": by_name(df["vgg"], f"vgg{d}_bn", keyword=True) for d in (8, 11, 13, 16, 19)},
                "mobilenetv2": by_name(module(work, "nayer", "mobilenetv2.py"), "mobilenet_v2", keyword=True),
                "shufflenetv2": by_name(df["shufflenetv2"], "shuffle_v2")}
    for arch, make in datafree.items():
        out += [("datafree", "checkpoint", arch, make, 10), ("datafree", "checkpoint", arch, make, 100),
                ("datafree", "checkpoint_dp", arch, make, 100)]
    cmi = {f: module(work, "cmi", f"{f}.py") for f in ("resnet", "wresnet", "vgg")}
    out += [("cmi", "checkpoint", "resnet34", by_name(cmi["resnet"], "resnet34"), 10),
            ("cmi", "checkpoint", "wrn40_2", by_name(cmi["wresnet"], "wrn_40_2"), 10),
            ("cmi", "checkpoint", "vgg11", by_name(cmi["vgg"], "vgg11_bn", keyword=True), 100)]
    dfad = module(work, "dfad", "resnet_8x.py")
    out += [("dfad", "bare", arch, by_name(dfad, fn), c) for arch, fn in (
        ("resnet18", "ResNet18_8x"), ("resnet34", "ResNet34_8x"), ("resnet50", "ResNet50_8x")) for c in (10, 100)]
    sys.path.insert(0, str(work / "lra"))  # its resnet imports utils.constants; its pickles name lra_resnet
    lra = module(work, "lra", "graphs/models/resnet.py", as_name="lra_resnet")
    lra_wrn = module(work, "lra", "graphs/models/networks/wresnet.py", as_name="lra_wresnet")

    def lra_net(fn: str, dataset: str) -> Callable[[int], nn.Module]:
        return lambda c: getattr(lra, fn)(types.SimpleNamespace(dataset=dataset))

    out += [("lra", "state_dict", arch, lra_net(fn, ds), c) for arch, fn in (("resnet18", "ResNet18"),
            ("resnet34", "ResNet34")) for ds, c in (("cifar10", 10), ("cifar100", 100))]
    out += [("lra", "pickled", "resnet34", lra_net("ResNet34", "cifar100"), 100)]
    out += [("lra", "state_dict", f"wrn{d}_{w}", by_name(lra_wrn, f"wrn_{d}_{w}"), 10)
            for d, w in ((16, 1), (16, 2), (40, 1))]
    zskt = module(work, "zskt", "wresnet.py")
    out += [("zskt", "state_dict", f"wrn{d}_{w}", by_name(zskt, "WideResNet", keyword=True, depth=d,
                                                          widen_factor=w, dropRate=0.0), 10)
            for d, w in ((16, 1), (16, 2), (40, 1), (40, 2))]
    cy = {f: module(work, "chenyaofo", f"{f}.py") for f in ("resnet", "vgg", "mobilenetv2", "shufflenetv2")}
    for classes, ds in ((10, "cifar10"), (100, "cifar100")):  # their factories fix the classes by dataset
        for family, archs in (("resnet", [f"resnet{d}" for d in (20, 32, 44, 56)]),
                              ("vgg", [f"vgg{d}_bn" for d in (11, 13, 16, 19)]),
                              ("mobilenetv2", [f"mobilenetv2_x{w}" for w in ("0_5", "0_75", "1_0", "1_4")]),
                              ("shufflenetv2", [f"shufflenetv2_x{w}" for w in ("0_5", "1_0", "1_5", "2_0")])):
            out += [("chenyaofo", "bare", arch, fixed(cy[family], f"{ds}_{arch}"), classes) for arch in archs]
    rd = {f: module(work, "repdistiller", f"{f}.py") for f in ("resnet", "wrn", "vgg", "ShuffleNetv2")}
    repdistiller = {**{f"resnet{d}": by_name(rd["resnet"], f"resnet{d}", keyword=True)
                       for d in (8, 14, 20, 32, 44, 56, 110)},
                    **{a: by_name(rd["resnet"], a, keyword=True) for a in ("resnet8x4", "resnet32x4")},
                    **{f"wrn{d}_{w}": by_name(rd["wrn"], f"wrn_{d}_{w}", keyword=True)
                       for d, w in ((16, 1), (16, 2), (40, 1), (40, 2))},
                    **{f"vgg{d}": by_name(rd["vgg"], f"vgg{d}_bn", keyword=True) for d in (8, 11, 13, 16, 19)},
                    "shufflenetv2": by_name(rd["ShuffleNetv2"], "ShuffleV2", keyword=True)}
    out += [("repdistiller", "repdistiller_best", arch, make, 100) for arch, make in repdistiller.items()]
    out += [("repdistiller", "repdistiller_last", "resnet32x4", repdistiller["resnet32x4"], 100)]
    kl = module(work, "kuangliu", "resnet.py")
    out += [("kuangliu", "kuangliu", arch, fixed(kl, fn), 10)
            for arch, fn in (("resnet18", "ResNet18"), ("resnet34", "ResNet34"), ("resnet50", "ResNet50"))]
    sp, spv = module(work, "spaceshipnet", "resnet_cifar.py"), module(work, "spaceshipnet", "vgg.py")
    out += [("spaceshipnet", "bare", arch, by_name(sp, fn, keyword=True), 100)
            for arch, fn in (("resnet18", "ResNet18"), ("resnet34", "ResNet34"))]
    out += [("spaceshipnet", "bare", "vgg11", by_name(spv, "vgg11_bn", keyword=True), 100)]
    return out


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's logits (ZSKT's Wide ResNet returns them first, with its attention maps)."""
    with torch.no_grad():
        out = model(x)
    return out[0] if isinstance(out, tuple) else out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", required=True, type=Path, help="folder of clones: SOURCES/<owner>/<name>")
    parser.add_argument("--manifests", type=Path, default=None, help="write the manifests into this folder")
    args = parser.parse_args()
    work, files = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    extract(args.sources, work)
    manifests: dict[str, dict] = {}
    worst, failures = 0.0, []
    for i, (base, kind, arch, make, classes) in enumerate(cases(work)):
        torch.manual_seed(i)
        model = randomise(make(classes), seed=i)
        x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1000 + i))
        expected = logits(model, x)
        path = files / f"{base}-{kind}-{arch}-{classes}.pt"
        torch.save(wrapped(kind, model, arch), path)
        try:
            loaded = load_teacher(path, allow_pickle=kind == "pickled")
        except TeacherFileError as err:
            failures.append(f"{base} {kind} {arch} {classes}: {err}")
            continue
        rel = float((logits(loaded.model, x) - expected).abs().max() / expected.abs().max())
        worst = max(worst, rel)
        ok = (loaded.arch, loaded.num_classes) == (arch, classes) and rel <= 1e-5
        print(f"{'ok  ' if ok else 'FAIL'} {base:13s} {kind:18s} {arch:18s} {classes:3d} -> {loaded.arch:18s} "
              f"{loaded.layout:22s} relative difference {rel:.1e}")
        if not ok:
            failures.append(f"{base} {kind} {arch} {classes}: read as {loaded.arch}, relative difference {rel}")
        if kind not in ("pickled", "checkpoint_dp"):
            repo = REPOS[base][0]
            entry = manifests.setdefault(base, {"repository": repo, "commit": git(args.sources, repo, "rev-parse",
                                                                                  "HEAD").strip(),
                                                "folder": REPOS[base][1], "files": {}})
            saved = wrapped(kind, model, arch)
            outer = [] if all(isinstance(v, torch.Tensor) for v in saved.values()) else sorted(saved)
            entry["files"].setdefault(f"{kind}:{arch}", {
                "wrapper": kind, "wrapper_keys": outer, "arch": arch, "num_classes": classes,
                "tensors": [[k, list(v.shape)] for k, v in model.state_dict().items()]})
    print("\n".join(["", *failures, f"{len(failures)} failures; worst relative difference {worst:.2e}"]))
    if args.manifests:
        args.manifests.mkdir(parents=True, exist_ok=True)
        for base, entry in manifests.items():
            with open(args.manifests / f"{base}.json.gz", "wb") as raw, \
                    gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:  # mtime 0: the same bytes every time
                fh.write((json.dumps(entry, indent=0) + "\n").encode("utf-8"))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
