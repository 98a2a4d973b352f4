"""The TOML examples in the README and the docs are valid scenarios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from meshsim.core.scenario_loader import load_scenario
from meshsim.live.config import load_live_config
from tests.conftest import ROOT, serve_replicas, stop

BLOCK = re.compile(r"```toml\n(.*?)```", re.DOTALL)


def whole_scenarios() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for n, block in enumerate(BLOCK.findall(doc.read_text(encoding="utf-8"))):
            if block.lstrip().startswith('schema = "meshsim/v1"'):
                found.append((f"{doc.name}#{n}", block))
    return found


@pytest.mark.parametrize(("where", "text"), whole_scenarios(), ids=[w for w, _ in whole_scenarios()])
def test_documented_scenario_is_valid(where: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "example.toml"
    path.write_text(text, encoding="utf-8")
    load_scenario(path)


def live_configs() -> list[tuple[str, str, str]]:
    """The proxy configs shown in the README and docs (TOML with a [proxy] table, and YAML)."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for n, block in enumerate(BLOCK.findall(text)):
            if "[proxy]" in block:
                found.append((f"{doc.name}#toml{n}", "toml", block))
        for n, block in enumerate(re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)):
            found.append((f"{doc.name}#yaml{n}", "yaml", block))
    return found


@pytest.mark.parametrize(("where", "suffix", "text"), live_configs(), ids=[w for w, _, _ in live_configs()])
def test_documented_live_config_is_valid(where: str, suffix: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / f"mesh.{suffix}"
    path.write_text(text, encoding="utf-8")
    config = load_live_config(path)
    assert config.clusters


def test_the_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```bash\n(.*?)\n```", readme, re.DOTALL)[:2]
    assert "meshsim run scenarios/failover.toml" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci


@pytest.mark.slow
def test_the_readme_client_example_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    serve, replicas = serve_replicas(2)
    try:
        # The example names the ports `meshsim serve` uses by default; the test's replicas have the OS's.
        code = example.replace("127.0.0.1:50051", replicas[0]).replace("127.0.0.1:50052", replicas[1])
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    finally:
        stop(serve)
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["0", "1", "2"]
