"""The CLI for scripts: --json on the reading commands, outputs and download, --dry-run,
--params-file, retry with --timeout/--vcpus/--memory, sizes read the same in the CLI and Slack,
messages that use the option's own name, and shell completion of dates, batches and run ids."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.ledger import RunDB
from handlers.commands import UsageError, parse, parse_memory
from tests.aws.conftest import Aws
from tests.cli_helpers import invoke, write_two_analyses
from tests.timeouts import seconds

pytest_plugins = ["tests.aws.conftest"]


@pytest.fixture
def batch(cyto_env: dict[str, str]) -> dict[str, str]:
    store = Path(cyto_env["CYTO_STORE"])
    write_two_analyses(store)
    (store / "Input/2018-12-05/b7/A02/y.txt").write_text("only A02 counts this\n")
    (store / "Input/2018-12-05/b7/A02/params.json").write_text(json.dumps({"files": ["y.txt"]}))
    return cyto_env


def runs_in(env: dict[str, str]) -> int:
    if not Path(env["CYTO_DB"]).exists():
        return 0
    with sqlite3.connect(env["CYTO_DB"]) as conn:
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def test_dry_run_shows_the_plan_and_submits_nothing(batch: dict[str, str], tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("files:\n  - x.txt\n")
    text = invoke(batch, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--params-file", str(params),
                  "--memory", "4G", "--timeout", "90m", "--storage", "50", "--dry-run")
    assert text.exit_code == 0, text.output
    assert text.output.splitlines()[:4] == [
        "dry run, nothing submitted: 2 analyses of 2018-12-05/b7, pipeline wordcount",
        "each job: 1 vCPU, 4G memory, 50G storage, timeout 90m, 2 automatic retries",
        '  A01  {"files": ["x.txt"]}',
        '  A02  {"files": ["y.txt"]}  (params.json)',
    ]
    assert "no finished wordcount job in the run database yet; at most 3.00 job-hours" in text.output

    as_json = invoke(batch, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--dry-run", "--json")
    plan = json.loads(as_json.stdout)
    assert plan["submitted"] is False and plan["resources"]["memory_mib"] == 2048
    assert [(a["analysis"], a["params"], a["params_file"]) for a in plan["analyses"]] == [
        ("A01", {}, False), ("A02", {"files": ["y.txt"]}, True)]
    assert runs_in(batch) == 0 and not (Path(batch["CYTO_STORE"]) / "Output").exists()

    # After a real run, the estimate comes from its durations.
    assert invoke(batch, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--wait").exit_code == 0
    again = json.loads(invoke(batch, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--dry-run",
                              "--json").stdout)
    assert again["estimate"]["history_jobs"] == 2 and again["estimate"]["job_hours"] > 0
    assert runs_in(batch) == 1


def test_params_file_json_and_override_order(batch: dict[str, str], tmp_path: Path) -> None:
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"files": ["nope.txt"]}))
    plan = json.loads(invoke(batch, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--params-file",
                             str(params), "--param", 'files=["x.txt"]', "--dry-run", "--json").stdout)
    assert plan["params"] == {"files": ["x.txt"]}  # --param wins over the file
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    result = CliRunner().invoke(cli, ["run", "2018-12-05", "b7", "--params-file", str(bad)], env=batch)
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0
    assert f"--params-file {bad} must hold one object" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (("--memory", "10"), "--memory 10 is out of range: 128M to 1024G"),
    (("--memory", "lots"), "--memory `lots` is not a size"),
    (("--timeout", "10"), "--timeout 10 is out of range: 1m to 14d"),
    (("--timeout", "soon"), "--timeout `soon` is not a duration"),
    (("--storage", "0"), "--storage `0` is not a whole number of GiB"),
])
def test_resource_errors_use_the_options_own_name(batch: dict[str, str], args: tuple[str, str],
                                                  message: str) -> None:
    result = CliRunner().invoke(cli, ["run", "2018-12-05", "b7", *args], env=batch)
    assert result.exit_code == 2 and result.output.startswith(f"cyto: {message}"), result.output
    assert len(result.output.strip().splitlines()) == 1 and runs_in(batch) == 0


def test_sizes_read_the_same_in_the_cli_and_slack(batch: dict[str, str]) -> None:
    for text, mib in (("4G", 4096), ("4096", 4096), ("512M", 512), ("1.5G", 1536)):
        assert parse_memory(text) == mib
        assert parse(f"run 2018-12-05 b7 memory={text}").memory_mib == mib  # type: ignore[union-attr]
        plan = json.loads(invoke(batch, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--memory", text,
                                 "--dry-run", "--json").stdout)
        assert plan["resources"]["memory_mib"] == mib
    with pytest.raises(UsageError, match="memory `4X` is not a size"):
        parse_memory("4X")


def test_json_shapes_of_the_reading_commands(batch: dict[str, str]) -> None:
    started = json.loads(invoke(batch, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--json").stdout)
    run_id = started["run_id"]
    status = invoke(batch, "status", run_id, "--wait", "--json")
    assert status.exit_code == 0
    view = json.loads(status.stdout)
    assert view["run"]["id"] == run_id and view["run"]["state"] == "succeeded" and view["run"]["finished"]
    assert view["run"]["counts"]["succeeded"] == 2 and view["run"]["created_at"].endswith("Z")
    assert [(j["analysis"], j["state"], j["attempt"]) for j in view["jobs"]] == [("A01", "succeeded", 1),
                                                                               ("A02", "succeeded", 1)]
    listed = json.loads(invoke(batch, "runs", "--json").stdout)
    assert listed["version"] == 1 and [r["id"] for r in listed["runs"]] == [run_id]
    assert set(listed["runs"][0]) >= {"id", "date", "batch", "pipeline", "state", "counts", "total", "created_at"}
    log = json.loads(invoke(batch, "logs", run_id, "A01", "--json").stdout)
    assert log["analysis"] == "A01" and log["attempt"] == 1 and isinstance(log["excerpt"], str)
    assert json.loads(invoke(batch, "batches", "--json").stdout) == {
        "version": 1, "dates": [{"date": "2018-12-05", "batches": ["b7"]}]}
    assert json.loads(invoke(batch, "batches", "2018-12-05", "--json").stdout) == {
        "version": 1, "date": "2018-12-05", "batches": [{"batch": "b7", "analyses": 2}]}


def test_outputs_and_download_from_a_local_store(batch: dict[str, str], tmp_path: Path) -> None:
    run_id = json.loads(invoke(batch, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--wait",
                               "--json").stdout)["run"]["id"]
    listed = json.loads(invoke(batch, "outputs", run_id, "--json").stdout)["outputs"]
    assert {(o["analysis"], o["path"]) for o in listed} >= {("A01", "result.json"), ("A02", "result.json")}
    assert all(o["size"] > 0 and o["uri"].startswith("file://") for o in listed)
    one = invoke(batch, "outputs", run_id, "A02")
    assert one.exit_code == 0 and all(line.startswith("A02/") for line in one.output.splitlines())
    assert CliRunner().invoke(cli, ["outputs", run_id, "A99"], env=batch).exit_code == 2

    fetched = invoke(batch, "download", run_id, str(tmp_path / "results"), "--analysis", "A02")
    assert fetched.exit_code == 0, fetched.output
    files = sorted(p.relative_to(tmp_path / "results").as_posix() for p in (tmp_path / "results").rglob("*")
                   if p.is_file())
    assert files == sorted(f"A02/{o['path']}" for o in listed if o["analysis"] == "A02")
    source = Path(batch["CYTO_STORE"]) / "Output/2018-12-05/b7/A02/result.json"
    assert (tmp_path / "results/A02/result.json").read_bytes() == source.read_bytes()
    assert stat.S_IMODE((tmp_path / "results/A02/result.json").stat().st_mode) & 0o044  # readable by others
    wrong = CliRunner().invoke(cli, ["download", run_id, str(tmp_path / "r2"), "--analysis", "A99"], env=batch)
    assert wrong.exit_code == 2 and "--analysis A99" in wrong.output


def test_download_from_s3_through_the_transfer_manager(aws: Aws, batch: dict[str, str], tmp_path: Path) -> None:
    from bot.api import Cyto
    from bot.engine import Plan
    from bot.executors import Resources
    from bot.layout import BatchRef

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="lab-bucket")
    big = bytes(range(256)) * 40_000  # 10 MB: more than one multipart part
    s3.put_object(Bucket="lab-bucket", Key="lab/Output/2018-12-05/b7/A01/cells.fcs", Body=big)
    s3.put_object(Bucket="lab-bucket", Key="lab/Output/2018-12-05/b7/A01/result.json", Body=b"{}")
    env = {**batch, "CYTO_STORE": "s3://lab-bucket/lab"}
    session = Cyto.from_env(env)
    run = session.engine.db.run  # the ledger, set up as if a run had been made against this store
    plan = Plan(BatchRef("2018-12-05", "b7"), ["A01"], "wordcount", Resources())
    # Recorded, never submitted: a job of this run would replace the Output folder it is to download.
    started = session.engine.start_run(plan, "test", hold=True)
    assert run(started.id) is not None
    before = aws.calls("s3:GET")
    result = invoke(env, "download", started.id, str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "downloaded 2 files" in result.output
    assert (tmp_path / "out/A01/cells.fcs").read_bytes() == big
    assert aws.calls("s3:GET") - before >= 3  # ranged GETs of the transfer manager (8 MB parts), plus the small file


def test_retry_takes_timeout_vcpus_and_memory(batch: dict[str, str]) -> None:
    (Path(batch["CYTO_STORE"]) / "Input/2018-12-05/b7/A01/params.json").write_text('{"files": ["gone.txt"]}')
    result = invoke(batch, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--retries", "0", "--wait",
                    "--json")
    run_id = json.loads(result.stdout)["run"]["id"]
    assert result.exit_code == 1
    bad = CliRunner().invoke(cli, ["retry", run_id, "A01", "--timeout", "5"], env=batch)
    assert bad.exit_code == 2 and "--timeout 5 is out of range" in bad.output
    (Path(batch["CYTO_STORE"]) / "Input/2018-12-05/b7/A01/gone.txt").write_text("back\n")
    retried = invoke(batch, "retry", run_id, "A01", "--timeout", "2h", "--vcpus", "2", "--memory", "4G", "--wait")
    assert retried.exit_code == 0, retried.output
    db = RunDB(batch["CYTO_DB"])
    job = db.job(run_id, "A01")
    assert job is not None and job.attempt == 2
    assert db.attempt(job.id, 2).resources == {"timeout_s": 7200, "vcpus": 2.0, "memory_mib": 4096}


def complete(env: dict[str, str], words: str) -> list[str]:
    """What `cyto` offers for the last word of `words` in bash (click's own completion protocol)."""
    parts = words.split(" ")
    result = CliRunner().invoke(cli, [], env={**env, "_CYTO_COMPLETE": "bash_complete", "COMP_WORDS": words,
                                             "COMP_CWORD": str(len(parts) - 1)}, prog_name="cyto")
    return [line.split(",", 1)[1] for line in result.output.splitlines() if line]


def test_shell_completion_of_dates_batches_and_runs(batch: dict[str, str]) -> None:
    assert "completion" in (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert complete(batch, "cyto run 2018") == ["2018-12-05"]
    assert complete(batch, "cyto run 2018-12-05 ") == ["b7"]
    run_id = json.loads(invoke(batch, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--json").stdout)[
        "run_id"]
    assert complete(batch, f"cyto status {run_id[:2]}") == [run_id]
    assert complete(batch, f"cyto logs {run_id} A0") == ["A01", "A02"]
    assert complete({**batch, "CYTO_STORE": "s3:/broken"}, "cyto run 2018") == []  # never an error


@pytest.mark.slow
def test_download_draws_a_progress_bar_on_a_terminal(batch: dict[str, str], tmp_path: Path) -> None:
    """On a terminal (a pty) the download shows rich's bar on stderr; stdout keeps one summary line."""
    import os
    import pty
    import subprocess
    import sys

    run_id = json.loads(invoke(batch, "run", "2018-12-05", "b7", "--pipeline", "wordcount", "--wait",
                               "--json").stdout)["run"]["id"]
    big = Path(batch["CYTO_STORE"]) / "Output/2018-12-05/b7/A01/big.bin"
    big.write_bytes(os.urandom(5_000_000))
    controller, terminal = pty.openpty()
    env = {**os.environ, **batch, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "COLUMNS": "100",
           "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "download", run_id, str(tmp_path / "got")],
                            env=env, stdout=subprocess.PIPE, stderr=terminal, text=True)
    os.close(terminal)
    out, _ = proc.communicate(timeout=seconds(60))
    drawn = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(controller)
    assert proc.returncode == 0 and out.startswith("downloaded ") and out.count("\n") == 1, out
    assert b"files" in drawn and ("━".encode() in drawn or b"MB" in drawn), drawn[-500:]
    assert (tmp_path / "got/A01/big.bin").read_bytes() == big.read_bytes()


@pytest.mark.slow
def test_bash_completion_as_documented_completes_from_the_store(batch: dict[str, str]) -> None:
    """The README's `eval "$(_CYTO_COMPLETE=bash_source cyto)"`, then bash's own completion call."""
    import os
    import shutil
    import subprocess
    import sys

    script = Path(sys.executable).with_name("cyto")
    if not script.exists() or shutil.which("bash") is None:
        pytest.skip("needs the installed cyto script and bash")
    env = {**os.environ, **batch, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
           "PATH": f"{script.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    shell = ('eval "$(_CYTO_COMPLETE=bash_source cyto)"\n'
             'COMP_WORDS=(cyto run 2018-12-05 ""); COMP_CWORD=3; _cyto_completion cyto\n'
             'printf "%s\\n" "${COMPREPLY[@]}"\n')
    result = subprocess.run(["bash", "-c", shell], env=env, capture_output=True, text=True, timeout=seconds(60))
    assert result.stdout.split() == ["b7"], result.stdout + result.stderr
