"""`python -m container.entrypoint` as a real process, against a local store and a moto S3 server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.engine import last_error_line
from container import __version__
from container.contract import ERROR_PREFIX, PARAMS, PIPELINE, JobEnvironment
from container.entrypoint import main
from tests.timeouts import seconds

ROOT = Path(__file__).resolve().parent.parent
DATE, BATCH, ANALYSIS = "2024-01-02", "batch 7", "A1"
FOLDER = f"{DATE}/{BATCH}/{ANALYSIS}"
C_LOCALE = {"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

pytestmark = pytest.mark.slow


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        return self.stdout.rstrip("\n").splitlines()[-1]


def base_env() -> dict[str, str]:
    """The parent's environment without anything that could point a job at real AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CYTO_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def job_env(
    input_uri: str, output_uri: str, logs_uri: str, params: Mapping[str, Any] | None = None, attempt: int = 1
) -> dict[str, str]:
    spec = JobEnvironment(
        run_id="r-20240102-1",
        attempt=attempt,
        date=DATE,
        batch=BATCH,
        analysis=ANALYSIS,
        pipeline="wordcount",
        input_uri=input_uri,
        output_uri=output_uri,
        logs_uri=logs_uri,
        params=params or {},
    )
    return spec.to_env()


class LocalStore:
    """A store folder (with a space in its path, as `Path.as_uri()` percent-encodes it)."""

    def __init__(self, root: Path) -> None:
        self.root = root / "lab store"

    def put(self, relative: str, data: bytes) -> None:
        path = self.root / "Input" / FOLDER / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def uri(self, area: str) -> str:
        return (self.root / area / FOLDER).as_uri() + "/"

    def env(self, **kwargs: Any) -> dict[str, str]:
        return job_env(self.uri("Input"), self.uri("Output"), self.uri("Logs"), **kwargs)

    def output(self, name: str) -> Path:
        return self.root / "Output" / FOLDER / name

    def log(self, attempt: int = 1) -> str:
        return (self.root / "Logs" / FOLDER / f"attempt-{attempt}.log").read_text()


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path)


def run_job(job: Mapping[str, str], argv: list[str] | None = None) -> Finished:
    command = argv or [sys.executable, "-m", "container.entrypoint"]
    done = subprocess.run(
        command, env={**base_env(), **job}, cwd=ROOT, capture_output=True, text=True, timeout=seconds(120)
    )
    return Finished(done.returncode, done.stdout, done.stderr)


def wc(path: Path) -> dict[str, int]:
    out = subprocess.run(["wc", "--", str(path)], env=C_LOCALE, capture_output=True, check=True).stdout
    lines, words, size = (int(field) for field in out.split()[:3])
    return {"lines": lines, "words": words, "bytes": size}


# -- success --------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("wc") is None, reason="needs GNU wc")
def test_success_writes_wc_counts_result_and_log(store: LocalStore) -> None:
    store.put("a.txt", b"hello world\nsecond line\n")
    store.put("sub/b.bin", bytes(range(256)) * 40)
    store.put("params.json", b"{}")
    store.put(".hidden", b"skip me")

    job = run_job(store.env())

    assert job.code == 0, job.stdout + job.stderr
    counts = json.loads(store.output("wordcount.json").read_text())
    inputs = store.root / "Input" / FOLDER
    assert counts["files"] == [
        {"path": name, **wc(inputs / name)} for name in ("a.txt", "sub/b.bin")
    ]
    result = json.loads(store.output("result.json").read_text())
    assert result["status"] == "succeeded"
    assert result["exit_code"] == 0
    assert (result["run_id"], result["attempt"], result["analysis"]) == ("r-20240102-1", 1, ANALYSIS)
    assert result["pipeline"] == "wordcount"
    assert result["container_version"] == __version__
    assert result["summary"] == {"files": 2, **counts["totals"]}
    assert result["inputs"] == [
        {"path": ".hidden", "bytes": 7},
        {"path": "a.txt", "bytes": 24},
        {"path": "params.json", "bytes": 2},
        {"path": "sub/b.bin", "bytes": 10240},
    ]
    assert result["outputs"] == [
        {"path": "wordcount.json", "bytes": store.output("wordcount.json").stat().st_size}
    ]
    assert result["started"] <= result["finished"]
    assert result["duration_s"] >= 0
    assert "error" not in result
    log = store.log()
    assert log == job.stdout  # the uploaded log is a copy of what went to stdout
    assert job.last_line.endswith("INFO succeeded")
    assert "a.txt: 2 lines, 4 words, 24 bytes" in log


def test_attempt_number_names_the_log(store: LocalStore) -> None:
    store.put("a.txt", b"x\n")
    job = run_job(store.env(attempt=3))
    assert job.code == 0, job.stdout
    assert store.log(3) == job.stdout


def test_main_in_process(store: LocalStore, capsys: pytest.CaptureFixture[str]) -> None:
    store.put("a.txt", b"one two three\n")
    assert main([], store.env()) == 0
    assert json.loads(store.output("wordcount.json").read_text())["totals"] == {
        "lines": 1,
        "words": 3,
        "bytes": 14,
    }
    assert capsys.readouterr().out == store.log()


def test_help(store: LocalStore) -> None:
    job = run_job({}, [sys.executable, "-m", "container.entrypoint", "--help"])
    assert job.code == 0
    assert "CYTO_" in job.stdout


# -- failures -------------------------------------------------------------------------------------


def test_missing_named_file_exits_2_with_the_reason_last(store: LocalStore) -> None:
    store.put("a.txt", b"a\n")
    store.put("b.txt", b"b\n")
    store.put("params.json", b'{"files": ["sample.txt"]}')

    job = run_job(store.env())

    assert job.code == 2
    reason = 'params.json names "sample.txt", which is not in the analysis folder (found: a.txt, b.txt)'
    assert job.last_line == f"ERROR: {reason}"
    log = store.log()
    assert log.rstrip("\n").splitlines()[-1] == f"ERROR: {reason}"
    assert "Traceback" not in log  # a parameter problem needs no traceback
    result = json.loads(store.output("result.json").read_text())
    assert (result["status"], result["exit_code"], result["error"]) == ("failed", 2, reason)


def test_the_engine_reads_back_the_reason_the_entrypoint_wrote(store: LocalStore) -> None:
    """The job writes its reason after container.contract.ERROR_PREFIX; the engine parses the same prefix."""
    store.put("a.txt", b"a\n")
    store.put("params.json", b'{"files": ["sample.txt"]}')
    job = run_job(store.env())
    assert job.last_line.startswith(ERROR_PREFIX)
    reason = job.last_line.removeprefix(ERROR_PREFIX)
    assert last_error_line(store.log()) == last_error_line(job.stdout) == reason
    assert last_error_line(f"started\n{ERROR_PREFIX}disk full\n") == "disk full"


def test_bad_params_json_in_the_environment_exits_2(store: LocalStore) -> None:
    store.put("a.txt", b"a\n")
    job = run_job({**store.env(), PARAMS: "{not json"})
    assert job.code == 2
    assert job.last_line.startswith("ERROR: CYTO_PARAMS is not valid JSON")
    assert store.log() == job.stdout  # even a broken contract leaves its log behind


def test_missing_variable_exits_2(store: LocalStore) -> None:
    env = store.env()
    del env["CYTO_INPUT_URI"]
    job = run_job(env)
    assert job.code == 2
    assert job.last_line == "ERROR: missing environment variable(s): CYTO_INPUT_URI"


def test_unknown_pipeline_exits_2(store: LocalStore) -> None:
    store.put("a.txt", b"a\n")
    job = run_job({**store.env(), PIPELINE: "nope"})
    assert job.code == 2
    assert job.last_line.startswith("ERROR: unknown pipeline 'nope'; choose one of: ")
    assert "wordcount" in job.last_line
    assert store.log().rstrip("\n").splitlines()[-1] == job.last_line
    assert json.loads(store.output("result.json").read_text())["status"] == "failed"


def test_nothing_to_count_is_bad_input_exit_2_with_the_reason_and_no_traceback(store: LocalStore) -> None:
    store.put("params.json", b"{}")
    job = run_job(store.env())
    assert job.code == 2  # an empty analysis folder would fail the same way again
    assert job.last_line == "ERROR: nothing to count: the analysis folder has no files"
    assert "Traceback" not in store.log()  # an expected failure says why in its ERROR line


def test_a_bug_in_a_pipeline_keeps_its_traceback(store: LocalStore, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from container import entrypoint, pipelines

    monkeypatch.setitem(pipelines.PIPELINES, "crashing", "tests.crashing_pipeline")
    store.put("a.txt", b"x")
    assert entrypoint.main([], env={**store.env(), "CYTO_PIPELINE": "crashing"}) == 1
    log = store.log()
    assert "\nTraceback (most recent call last):\n" in log and "ZeroDivisionError" in log
    assert log.index("Traceback") < log.index("ERROR: ZeroDivisionError: division by zero")
    assert log.rstrip().splitlines()[-1] == "ERROR: ZeroDivisionError: division by zero"


def test_empty_input_prefix_exits_1(store: LocalStore) -> None:
    (store.root / "Input" / FOLDER).mkdir(parents=True)
    job = run_job(store.env())
    assert job.code == 1
    assert job.last_line == f"ERROR: no objects under {store.uri('Input')}: the input prefix is empty"
    assert store.log() == job.stdout


# -- SIGTERM --------------------------------------------------------------------------------------

SLEEPY = '''
import time
from pathlib import Path

def run(ctx):
    (ctx.output_dir / "partial.txt").write_text("partial")
    ctx.log.info("sleeping")
    Path(ctx.params["ready_file"]).write_text("ready")
    time.sleep(120)
    return {}
'''

# The same entrypoint, with one extra pipeline registered for the test.
RUN_WITH_SLEEPY = textwrap.dedent("""
    import sys
    from container import pipelines
    pipelines.PIPELINES["sleepy"] = "sleepy_pipeline"
    from container.entrypoint import main
    sys.exit(main())
""")


def test_sigterm_exits_143_and_uploads_the_log(store: LocalStore, tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "sleepy_pipeline.py").write_text(SLEEPY)
    ready = tmp_path / "ready"
    store.put("a.txt", b"a\n")
    env = {**base_env(), **store.env(params={"ready_file": str(ready)}), PIPELINE: "sleepy"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "plugins"), env["PYTHONPATH"]])
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_WITH_SLEEPY],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(ready, proc)
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=seconds(60))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 143
    assert stdout.rstrip("\n").splitlines()[-1] == "ERROR: terminated by SIGTERM"
    log = store.log()
    assert "terminated" in log
    assert log == stdout


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = seconds(60)) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the job ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail("the job never reached its pipeline")
        time.sleep(0.05)


# -- S3 through a moto server ---------------------------------------------------------------------


@pytest.fixture
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def test_job_against_s3(moto_endpoint: str) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="lab")
    s3.put_object(Bucket="lab", Key=f"Input/{FOLDER}/a.txt", Body=b"alpha beta\ngamma\n")
    s3.put_object(Bucket="lab", Key=f"Input/{FOLDER}/sub/b.txt", Body=b"\x80delta\x00epsilon\n")
    s3.put_object(Bucket="lab", Key=f"Input/{FOLDER}0/other.txt", Body=b"another analysis")
    env = job_env(f"s3://lab/Input/{FOLDER}/", f"s3://lab/Output/{FOLDER}/", f"s3://lab/Logs/{FOLDER}/")

    job = run_job({**env, **FAKE_AWS, "AWS_ENDPOINT_URL": moto_endpoint})

    assert job.code == 0, job.stdout + job.stderr
    body = s3.get_object(Bucket="lab", Key=f"Output/{FOLDER}/wordcount.json")["Body"].read()
    assert json.loads(body) == {
        "files": [
            {"path": "a.txt", "lines": 2, "words": 3, "bytes": 17},
            {"path": "sub/b.txt", "lines": 1, "words": 1, "bytes": 15},
        ],
        "totals": {"lines": 3, "words": 4, "bytes": 32},
    }
    result = json.loads(s3.get_object(Bucket="lab", Key=f"Output/{FOLDER}/result.json")["Body"].read())
    assert result["status"] == "succeeded"
    log = s3.get_object(Bucket="lab", Key=f"Logs/{FOLDER}/attempt-1.log")["Body"].read().decode()
    assert log == job.stdout


# -- native thread pools --------------------------------------------------------------------------

THREADS_PIPELINE = '''
import json
import os

def run(ctx):
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    seen = {name: os.environ.get(name) for name in names}
    (ctx.output_dir / "threads.json").write_text(json.dumps(seen))
    return {}
'''

RUN_WITH_THREADS = textwrap.dedent("""
    import sys
    from container import pipelines
    pipelines.PIPELINES["threads"] = "threads_pipeline"
    from container.entrypoint import main
    sys.exit(main())
""")


def test_job_sees_thread_limits_from_its_vcpus(store: LocalStore, tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "threads_pipeline.py").write_text(THREADS_PIPELINE)
    store.put("a.txt", b"a\n")
    spec = JobEnvironment(
        run_id="r-20240102-1",
        attempt=1,
        date=DATE,
        batch=BATCH,
        analysis=ANALYSIS,
        pipeline="threads",
        input_uri=store.uri("Input"),
        output_uri=store.uri("Output"),
        logs_uri=store.uri("Logs"),
        vcpus=2.5,
    )
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    env = {k: v for k, v in base_env().items() if k not in names}
    env.update(spec.to_env())
    env["OMP_NUM_THREADS"] = "3"  # set by whoever started the job: kept
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "plugins"), env["PYTHONPATH"]])
    done = subprocess.run(
        [sys.executable, "-c", RUN_WITH_THREADS], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=seconds(120),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(store.output("threads.json").read_text())
    assert seen["OPENBLAS_NUM_THREADS"] == "2" and seen["MKL_NUM_THREADS"] == "2"
    assert seen["OMP_NUM_THREADS"] == "3"


def test_an_unreadable_fcs_file_is_bad_input_exit_2(store: LocalStore) -> None:
    """Issue 12: a garbage FCS file failed with exit 1 and was retried twice; it is bad input."""
    store.put("plate/A01.fcs", b"FCS3.0  this is not a real FCS file at all")
    job = run_job({**store.env(), "CYTO_PIPELINE": "cytometry"})
    assert job.code == 2
    assert job.last_line.startswith("ERROR: no FCS file could be analysed (1 failed): plate/A01.fcs: ")
    assert "Traceback" not in store.log()


# -- the output folder holds one attempt's results, whole -----------------------------------------

WRITES_PIPELINE = '''
def run(ctx):
    for name in ctx.params["write"]:
        path = ctx.output_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    if ctx.params.get("fail"):
        from container.pipelines import PipelineError
        raise PipelineError("failed on purpose")
    return {}
'''

RUN_WITH_WRITES = RUN_WITH_THREADS.replace('"threads"', '"writes"').replace("threads_pipeline", "writes_pipeline")


def run_writes(tmp_path: Path, input_uri: str, output_uri: str, logs_uri: str, run_id: str, attempt: int,
               params: dict[str, Any], extra_env: Mapping[str, str] | None = None) -> Finished:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "writes_pipeline.py").write_text(WRITES_PIPELINE)
    spec = JobEnvironment(run_id=run_id, attempt=attempt, date=DATE, batch=BATCH, analysis=ANALYSIS,
                          pipeline="writes", input_uri=input_uri, output_uri=output_uri, logs_uri=logs_uri,
                          params=params)
    env = {**base_env(), **spec.to_env(), **(extra_env or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(plugins), env["PYTHONPATH"]])
    done = subprocess.run([sys.executable, "-c", RUN_WITH_WRITES], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=seconds(120))
    return Finished(done.returncode, done.stdout, done.stderr)


def test_a_retry_attempt_and_a_later_run_replace_the_output_folder_whole(store: LocalStore,
                                                                          tmp_path: Path) -> None:
    store.put("a.txt", b"a\n")
    folder = store.root / "Output" / FOLDER
    args = (tmp_path, store.uri("Input"), store.uri("Output"), store.uri("Logs"))

    first = run_writes(*args, "run-a", 1, {"write": ["stats.csv", "plots/stale.png"], "fail": True})
    assert first.code == 1, first.stdout + first.stderr
    retry = run_writes(*args, "run-a", 2, {"write": ["stats.csv"]})
    assert retry.code == 0, retry.stdout + retry.stderr
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == ["result.json", "stats.csv"]
    result = json.loads((folder / "result.json").read_text())
    assert (result["run_id"], result["attempt"], result["status"]) == ("run-a", 2, "succeeded")
    assert [f["path"] for f in result["outputs"]] == ["stats.csv"]
    assert "removed 1 file(s) an earlier run or attempt left there: plots/stale.png" in retry.stdout

    later = run_writes(*args, "run-b", 1, {"write": ["qc.txt"], "fail": True})
    assert later.code == 1
    assert sorted(p.name for p in folder.iterdir()) == ["qc.txt", "result.json"]
    result = json.loads((folder / "result.json").read_text())
    assert (result["run_id"], result["attempt"], result["status"]) == ("run-b", 1, "failed")
    assert [f["path"] for f in result["outputs"]] == ["qc.txt"]


def test_output_folder_replaced_whole_on_s3(moto_endpoint: str, tmp_path: Path) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket="lab")
    s3.put_object(Bucket="lab", Key=f"Input/{FOLDER}/a.txt", Body=b"a\n")
    s3.put_object(Bucket="lab", Key=f"Output/{FOLDER}0/other.png", Body=b"another analysis")
    args = (tmp_path, f"s3://lab/Input/{FOLDER}/", f"s3://lab/Output/{FOLDER}/", f"s3://lab/Logs/{FOLDER}/run-a/")
    aws = {**FAKE_AWS, "AWS_ENDPOINT_URL": moto_endpoint}

    assert run_writes(*args, "run-a", 1, {"write": ["stats.csv", "plots/stale.png"]}, aws).code == 0
    second = run_writes(*args, "run-a", 2, {"write": ["stats.csv"]}, aws)
    assert second.code == 0, second.stdout + second.stderr

    listed = s3.list_objects_v2(Bucket="lab", Prefix="Output/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [f"Output/{FOLDER}/result.json", f"Output/{FOLDER}/stats.csv",
                                                f"Output/{FOLDER}0/other.png"]
    result = json.loads(s3.get_object(Bucket="lab", Key=f"Output/{FOLDER}/result.json")["Body"].read())
    assert (result["run_id"], result["attempt"]) == ("run-a", 2)
    assert [f["path"] for f in result["outputs"]] == ["stats.csv"]
    logs = s3.list_objects_v2(Bucket="lab", Prefix=f"Logs/{FOLDER}/run-a/")["Contents"]
    assert sorted(o["Key"] for o in logs) == [f"Logs/{FOLDER}/run-a/attempt-{n}.log" for n in (1, 2)]
