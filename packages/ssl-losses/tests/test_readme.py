"""The README's two-minute example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "README.md lost its ```python examples"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert "NT-Xent after 20 steps:" in out and "VICReg:" in out
    assert "DINO:" in out and "teacher temperature 0.07" in out
