"""Each pipeline's parameter check: pure, cheap to import, and the very function the job runs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from container.pipelines import (
    PARAMETER_CHECKS,
    PIPELINES,
    ParameterError,
    PipelineContext,
    check_with_folder,
    fasta_kmers,
    load,
    parameter_check,
    parse_params_file,
    rscript,
    unknown_parameters,
    wordcount,
)
from container.pipelines import cytometry as cytometry_pipeline

ROOT = Path(__file__).resolve().parent.parent


def check(pipeline: str, params: dict[str, Any]) -> Any:
    found = parameter_check(pipeline)
    assert found is not None
    return found(params)


def refused(pipeline: str, params: dict[str, Any]) -> str:
    with pytest.raises(ParameterError) as caught:
        check(pipeline, params)
    return str(caught.value)


def test_every_pipeline_has_a_check() -> None:
    assert set(PARAMETER_CHECKS) == set(PIPELINES)
    assert parameter_check("no-such-pipeline") is None


# The bot image installs the container package without its extra (container/requirements.txt).
JOB_ONLY = ("numpy", "matplotlib", "flowio", "flowutils", "flowkit", "scipy", "pandas", "lxml")


def test_checks_run_where_the_jobs_dependencies_are_not_installed() -> None:
    code = (
        "import sys\n"
        "class Missing:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.partition('.')[0] in {JOB_ONLY!r}: raise ImportError('not in the bot image: ' + name)\n"
        "sys.meta_path.insert(0, Missing())\n"
        "from container.pipelines import ParameterError, available, parameter_check\n"
        "for name in available():\n"
        "    parameter_check(name)({})\n"
        "    try: parameter_check(name)({'script': 3, 'k': 0, 'transfrom': 1, 'file': 1})\n"
        "    except ParameterError as exc: print(name, '->', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == len(PIPELINES)


def test_unknown_parameter_with_a_close_spelling_gets_a_did_you_mean() -> None:
    assert refused("cytometry", {"transfrom": "arcsinh"}) == "unknown parameter 'transfrom' (did you mean 'transform'?)"
    assert refused("wordcount", {"file": ["a.txt"]}) == "unknown parameter 'file' (did you mean 'files'?)"
    assert refused("fasta-kmers", {"kk": 5}) == "unknown parameter 'kk' (did you mean 'k'?)"


def test_unknown_parameter_without_a_close_spelling_lists_the_known_ones() -> None:
    assert refused("wordcount", {"colour": "red"}) == "unknown parameter 'colour'; known: files"
    message = refused("cytometry", {"transfrom": 1, "zzz": 2})
    assert message.startswith("unknown parameters 'transfrom' (did you mean 'transform'?), 'zzz'; known: ")
    assert "min_events" in message
    assert str(unknown_parameters(["x"], [])) == "unknown parameter 'x'; this pipeline takes no parameters"


def test_cytometry_check_is_the_parse_the_job_uses() -> None:
    params = check("cytometry", {"transform": "arcsinh", "cofactor": 5})
    assert params.transform == "arcsinh" and params.cofactor == 5.0
    assert "expected one of logicle, arcsinh" in refused("cytometry", {"transform": "log"})


def test_wordcount_check() -> None:
    assert check("wordcount", {}).files is None
    assert check("wordcount", {"files": ["a.txt", "a.txt", "b.txt"]}).files == ["a.txt", "b.txt"]
    assert "'files' must be a list" in refused("wordcount", {"files": "a.txt"})
    assert "'files' is empty" in refused("wordcount", {"files": []})


@pytest.mark.parametrize("k", [1, 4, 12, "7"])
def test_fasta_kmers_k_from_1_to_12(k: object) -> None:
    assert check("fasta-kmers", {"k": k}) == int(k)  # type: ignore[call-overload]


@pytest.mark.parametrize("k", [0, 13, -1, "x", True, 4.5, None])
def test_fasta_kmers_k_out_of_range_or_not_an_integer(k: object) -> None:
    assert "k must be an integer from 1 to 12" in refused("fasta-kmers", {"k": k})


@pytest.mark.parametrize("script", ["analysis.R", "gate.R", "scripts/gate.R", "plot.r"])
def test_r_script_names_a_file_inside_the_folder(script: str) -> None:
    assert check("r-script", {"script": script, "threshold": [1, 2]}) == {"script": script, "threshold": [1, 2]}


@pytest.mark.parametrize("script", ["", "  ", 3, None, "/etc/passwd", "../analysis.R", "a/../../x.R", "scripts/",
                                    " gate.R", "..\\x.R"])
def test_r_script_refuses_what_cannot_be_a_file_in_the_folder(script: object) -> None:
    assert "parameter 'script'" in refused("r-script", {"script": script})


def test_r_script_passes_its_other_parameters_through() -> None:
    assert check("r-script", {}) == {}
    assert check("r-script", {"anything": {"the": "script reads"}}) == {"anything": {"the": "script reads"}}


def test_check_with_folder_names_the_folder_file_only_for_its_own_problems() -> None:
    parse = parameter_check("cytometry")
    assert parse is not None
    with pytest.raises(ParameterError, match=r"^unknown parameter 'transfrom'"):
        check_with_folder(parse, {"transfrom": "arcsinh"}, {}, "A01/params.json")
    with pytest.raises(ParameterError, match=r"^A01/params\.json: unknown parameter 'transfrom' \(did you mean"):
        check_with_folder(parse, {"transform": "arcsinh"}, {"transfrom": "logicle"}, "A01/params.json")
    merged = check_with_folder(parse, {"transform": "arcsinh", "cofactor": 5}, {"cofactor": 20})
    assert (merged.transform, merged.cofactor) == ("arcsinh", 20.0)  # the folder wins key by key


@pytest.mark.parametrize(("data", "message"), [
    (b"{not json", "A01/params.json is not valid JSON"),
    (b"[1, 2]", "A01/params.json must hold a JSON object, not list"),
    (b"\xff\xfe", "A01/params.json is not valid JSON"),
])
def test_params_file_that_is_not_a_json_object(data: bytes, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        parse_params_file(data, "A01/params.json")


def context(tmp_path: Path, params: dict[str, Any], folder_params: dict[str, Any]) -> PipelineContext:
    input_dir = tmp_path / "in"
    input_dir.mkdir()
    (input_dir / "params.json").write_text(json.dumps(folder_params))
    return PipelineContext(input_dir, tmp_path / "out", params, logging.getLogger("test.checks"), "A01")


@pytest.mark.parametrize(("pipeline", "module", "run_params", "folder_params"), [
    ("cytometry", cytometry_pipeline, {"transform": "arcsinh"}, {"transfrom": "logicle"}),
    ("wordcount", wordcount, {}, {"file": ["a.txt"]}),
    ("fasta-kmers", fasta_kmers, {"k": 4}, {"k": 13}),
    ("r-script", rscript, {}, {"script": "../escape.R"}),
])
def test_the_job_refuses_with_the_checks_own_message(tmp_path: Path, pipeline: str, module: Any,
                                                     run_params: dict[str, Any],
                                                     folder_params: dict[str, Any]) -> None:
    """The job runs the same check on CYTO_PARAMS and its params.json, before reading any input."""
    assert load(pipeline) is module
    expected = refused(pipeline, {**run_params, **folder_params})
    with pytest.raises(ParameterError) as caught:
        module.run(context(tmp_path, run_params, folder_params))
    assert str(caught.value) == f"params.json: {expected}"
