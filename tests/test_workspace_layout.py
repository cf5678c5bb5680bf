"""The workspace layout the project promises: separately versioned src-layout packages."""

import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = {
    "packages/ssl-losses": "ssl_losses",
    "packages/ssl-data": "ssl_data",
    "packages/ssl-core": "ssl_core",
    "packages/ssl-forwards": "ssl_forwards",
    "packages/ssl-callbacks": "ssl_callbacks",
    "apps/train": "ssl_train",
}


@pytest.mark.parametrize("member,module", sorted(MEMBERS.items()))
def test_member_is_a_versioned_src_layout_package(member: str, module: str) -> None:
    root = ROOT / member
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert meta["version"].count(".") == 2
    assert (root / "src" / module / "py.typed").is_file()
    readme = (root / "README.md").read_text()
    assert "```python" in readme or "```bash" in readme, f"{member}/README.md has no example"
    imported = importlib.import_module(module)
    assert imported.__version__ == meta["version"]
    assert Path(imported.__file__).is_relative_to(root / "src" / module)


def test_root_pins_torch_and_torchvision_together() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = cfg["tool"]["uv"]["constraint-dependencies"]
    assert "torch==2.14.1" in pins and "torchvision==0.29.1" in pins
    members = cfg["tool"]["uv"]["workspace"]["members"]
    assert members == ["packages/*", "apps/*"]
    assert (ROOT / "uv.lock").is_file()
    assert (ROOT / ".python-version").read_text().strip() == "3.11"
