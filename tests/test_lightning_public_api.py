"""inr_lightning uses Lightning's public API only: no private Lightning attribute or method is read, written,
overridden or imported anywhere in the package (each would break on a Lightning upgrade)."""

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import lightning

import inr_lightning

PACKAGE = Path(inr_lightning.__file__).parent


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def lightning_private_names() -> set[str]:
    """Every private method and attribute Lightning's own code defines (``def _x``, ``obj._x = …``)."""
    names = set()
    for path in Path(lightning.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and private(node.name):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and private(node.attr):
                names.add(node.attr)
    return names


def own_private_names(trees: dict[Path, ast.Module]) -> set[str]:
    """Private names the package defines itself: its functions and methods, and ``self._x = …``."""
    names = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and private(node.name):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and private(node.attr) \
                    and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
    return names


def package_trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.rglob("*.py"))}


def private_uses(trees: dict[Path, ast.Module], theirs: set[str], ours: set[str]) -> list[str]:
    """``where: name`` for every access to a private name that Lightning defines and the package does not,
    and every private name imported from Lightning."""
    hits = []
    for path, tree in trees.items():
        where = path.relative_to(PACKAGE.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and private(node.attr) and node.attr in theirs - ours:
                hits.append(f"{where}:{node.lineno}: .{node.attr}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lightning":
                bad = [a.name for a in node.names if private(a.name)]
                if bad or any(private(part) for part in node.module.split(".")):
                    hits.append(f"{where}:{node.lineno}: from {node.module} import {', '.join(bad) or '…'}")
    return hits


def lightning_overrides() -> list[str]:
    """``module.Class.name`` for every private method or attribute a package class redefines from a Lightning
    base class (``_run_subcommand``, ``_validate_condition_metric``, …)."""
    hits = []
    for info in pkgutil.walk_packages(inr_lightning.__path__, "inr_lightning."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            hits += private_overrides(cls)
    return hits


def private_overrides(cls: type) -> list[str]:
    bases = [b for b in cls.__mro__[1:] if b.__module__.split(".")[0] == "lightning"]
    return [f"{cls.__module__}.{cls.__qualname__}.{name}" for name in vars(cls)
            if private(name) and name != "_abc_impl" and any(name in vars(b) for b in bases)]  # (abc's own)


def test_no_private_lightning_attribute_is_used_or_imported():
    trees = package_trees()
    assert private_uses(trees, lightning_private_names(), own_private_names(trees)) == []


def test_no_private_lightning_method_is_overridden():
    assert lightning_overrides() == []


def test_the_checks_find_what_they_look_for():
    """The checks flag the private uses the CLI had before it moved to Lightning's hooks."""
    source = ("import lightning as L\nfrom lightning.pytorch.loggers.tensorboard import _TENSORBOARD_AVAILABLE\n"
              "class CLI(L.pytorch.cli.LightningCLI):\n"
              "    def run(self, logger, loop):\n"
              "        cfg = self._get(self.config_init, 'trainer')\n"
              "        logger._wandb_init.pop('anonymous')\n"
              "        loop._batches_that_stepped -= 1\n"
              "        self._mine = 1\n        return self._mine\n")
    trees = {PACKAGE / "example.py": ast.parse(source)}
    hits = private_uses(trees, lightning_private_names(), own_private_names(trees) | {"_mine"})
    assert sorted(hit.split(": ", 1)[1] for hit in hits) == sorted([
        "from lightning.pytorch.loggers.tensorboard import _TENSORBOARD_AVAILABLE", "._get", "._wandb_init",
        "._batches_that_stepped"])
    from lightning.pytorch.cli import LightningCLI

    class Overriding(LightningCLI):
        def _run_subcommand(self, subcommand: str) -> None: ...

        def _own_helper(self) -> None: ...

    assert [hit.rpartition(".")[2] for hit in private_overrides(Overriding)] == ["_run_subcommand"]
