"""The `r-script` pipeline: run the analysis's own R script with `Rscript --vanilla`.

The script is `analysis.R` in the analysis folder, or the file named by the `script` parameter
(a relative path inside the folder; `check_params` checks its form, the job that the file exists).
Every other parameter is the script's own and passes through untouched. It is called as

    Rscript --vanilla <script> <input_dir> <output_dir>

with the same two folders in `CYTO_INPUT_DIR` and `CYTO_OUTPUT_DIR` and the run's parameters (the
analysis's params.json merged over them) as JSON in `CYTO_PARAMS`. Its working directory is the
(staged) input folder, so relative reads work; only what it writes into the output folder is kept.
R's output goes into the job's log line by line, and when R fails the error lines R printed
(`Error in ...`, `Execution halted`) become the failure message.

`run_rscript` is shared with the other R-backed pipelines (fasta-kmers).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from container.pipelines import ParameterError, PipelineContext, PipelineError, checked_params

DEFAULT_SCRIPT = "analysis.R"
_TAIL_LINES = 40
_MAX_ERROR_LINES = 8
_MAX_ERROR_CHARS = 1500


def run(ctx: PipelineContext) -> dict[str, Any]:
    params = checked_params(check_params, ctx.params, ctx.input_dir)
    script = find_script(ctx.input_dir, params)
    before = _files_under(ctx.input_dir)
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    run_rscript(
        script,
        [str(ctx.input_dir), str(ctx.output_dir)],
        log=ctx.log,
        cwd=ctx.input_dir,
        env=r_environment(ctx, params),
        label=script.name,
    )
    _warn_about_stray_outputs(ctx, before)
    outputs = sorted(p.relative_to(ctx.output_dir).as_posix() for p in ctx.output_dir.rglob("*") if p.is_file())
    ctx.log.info("%s wrote %d file(s) into the output folder", script.name, len(outputs))
    return {"script": script.relative_to(ctx.input_dir.resolve()).as_posix(), "output_files": len(outputs)}


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The r-script parameter check (pure; the bot runs it at plan time too): `script`, when given,
    must be a relative path to a file inside the analysis folder. Returns the parameters."""
    name = params.get("script", DEFAULT_SCRIPT)
    if not isinstance(name, str) or not name.strip():
        raise ParameterError(f"parameter 'script' must be a file name such as {DEFAULT_SCRIPT!r}, got {name!r}")
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or name.endswith(("/", "\\")) or name != name.strip():
        raise ParameterError(f"parameter 'script' ({name!r}) must name a file inside the analysis folder, "
                             f"such as {DEFAULT_SCRIPT!r} or 'scripts/gate.R'")
    return dict(params)


def find_script(input_dir: Path, params: Mapping[str, Any]) -> Path:
    """The R script to run, or ParameterError naming what was looked for and what exists."""
    check_params(params)
    name = params.get("script", DEFAULT_SCRIPT)
    root = input_dir.resolve()
    path = (root / name).resolve()
    if root not in path.parents:
        raise ParameterError(f"parameter 'script' ({name!r}) must name a file inside the analysis folder")
    if path.is_file():
        return path
    raise ParameterError(f"no R script {name!r} in the analysis folder; {_describe_folder(root)}")


def r_environment(ctx: PipelineContext, params: Mapping[str, Any]) -> dict[str, str]:
    return {
        "CYTO_INPUT_DIR": str(ctx.input_dir),
        "CYTO_OUTPUT_DIR": str(ctx.output_dir),
        "CYTO_PARAMS": json.dumps(dict(params), sort_keys=True),
    }


def find_rscript() -> str:
    rscript = shutil.which("Rscript")
    if rscript is None:
        raise PipelineError(
            "R is not installed in this image (no Rscript on PATH); "
            "rebuild the job image from container/Dockerfile, which installs r-base-core"
        )
    return rscript


def run_rscript(
    script: Path,
    args: Sequence[str],
    *,
    log: logging.Logger,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    label: str | None = None,
) -> None:
    """Run `Rscript --vanilla script args...`, logging each output line as R prints it.

    A non-zero exit raises PipelineError carrying R's own error lines.
    """
    label = label or script.name
    command = [find_rscript(), "--vanilla", str(script), *args]
    # One merged stream keeps R's interleaving of printed output and messages/errors in order.
    with subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as process:
        assert process.stdout is not None
        tail: deque[str] = deque(maxlen=_TAIL_LINES)
        for raw in process.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            tail.append(line)
            log.info("[R] %s", line)
        status = process.wait()
    if status != 0:
        raise PipelineError(f"{label} failed ({_describe_status(status)}): {r_error_excerpt(list(tail))}")


def r_error_excerpt(lines: Sequence[str]) -> str:
    """R's error report from the end of its output: from the last `Error` line to the end."""
    lines = [line for line in lines if line.strip()]
    if not lines:
        return "R printed nothing"
    start = max(0, len(lines) - 3)
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith(("Error", "Fehler", "Erreur")):
            start = index
            break
    excerpt = " | ".join(line.strip() for line in lines[start:][:_MAX_ERROR_LINES])
    return excerpt if len(excerpt) <= _MAX_ERROR_CHARS else excerpt[: _MAX_ERROR_CHARS - 1] + "…"


def _describe_status(status: int) -> str:
    if status < 0:
        # SIGKILL without a traceback is nearly always the kernel's out-of-memory killer.
        hint = " — out of memory?" if status == -9 else ""
        return f"R was killed by signal {-status}{hint}"
    return f"R exit status {status}"


def _describe_folder(root: Path) -> str:
    if not root.is_dir():
        return f"the folder {root} does not exist"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    if not files:
        return "the folder is empty"
    r_files = [f for f in files if f.lower().endswith(".r")]
    shown = r_files or files
    more = f" (and {len(shown) - 10} more)" if len(shown) > 10 else ""
    kind = "R scripts there" if r_files else "no .R file there; it holds"
    return f"{kind}: {', '.join(shown[:10])}{more}; set the parameter 'script' to choose one"


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


def _warn_about_stray_outputs(ctx: PipelineContext, before: set[Path]) -> None:
    stray = sorted(p.relative_to(ctx.input_dir).as_posix() for p in _files_under(ctx.input_dir) - before)
    if stray:
        ctx.log.warning(
            "the script wrote %s into the input folder, which is not kept; write results to "
            "commandArgs(TRUE)[2] or Sys.getenv('CYTO_OUTPUT_DIR')",
            ", ".join(stray[:10]),
        )
