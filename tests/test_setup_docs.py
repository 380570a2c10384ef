"""Set-up as the READMEs write it: two honest commands (run, then test), CI calling the same test
command, a deploy guide that builds for the stack's platform with an immutable image tag and tells
how to get results, and a demo that never writes into a bucket without being asked."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:sh|bash)\n(.*?)```", text, flags=re.DOTALL)


def test_the_first_command_installs_only_what_running_needs_and_the_second_tests() -> None:
    first, *_ = shell_blocks((ROOT / "README.md").read_text())
    commands = [line.split("#")[0].strip() for line in first.splitlines() if line.strip()]
    assert commands == ['pip install -e ".[container]" && cyto demo',
                        'pip install -e ".[container,test]" && python -m pytest']
    ci = (ROOT / ".ci/run").read_text()
    assert '-e ".[container,test]"' in ci and ci.rstrip().endswith("python -m pytest")


def test_deploy_guide_builds_for_amd64_with_the_commit_as_tag() -> None:
    guide = (ROOT / "deploy/README.md").read_text()
    builds = [line for line in guide.splitlines() if line.startswith("docker build")]
    assert len(builds) == 2 and all("--platform linux/amd64" in b and ":latest" not in b for b in builds)
    assert "TAG=$(git rev-parse --short=12 HEAD)" in guide
    set_up = [block for block in shell_blocks(guide) if ("cloudformation deploy" in block and "BucketName=" in block)
              or "BotDesiredCount=1" in block]
    assert len(set_up) == 2 and all("ImageTag=$TAG BotImageTag=bot-$TAG" in block for block in set_up)
    assert "Get your results" in guide and "cyto download" in guide and "aws s3 sync" in guide
    assert "keeps its own run history" in guide


def test_demo_refuses_an_s3_store_without_yes(cyto_env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["demo"], env={**cyto_env, "CYTO_STORE": "s3://lab-bucket/prod"})
    assert result.exit_code == 2
    assert result.output.startswith("cyto: the store is the bucket s3://lab-bucket/prod: the demo would write")
    assert "--yes" in result.output and len(result.output.strip().splitlines()) == 1
