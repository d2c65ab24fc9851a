"""The README's example runs as pasted and prints what a reader expects."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_readme_example_runs_as_pasted() -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    done = subprocess.run(
        [sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "0 -> 0"
    assert lines[1:3] == ["1 -> failed: service unavailable", "2 -> failed: service unavailable"]
    assert all(
        re.fullmatch(r"\d -> rejected: circuit 'database' is open; retry in .*", line)
        for line in lines[3:6]
    )
    assert lines[-1] == "open"
