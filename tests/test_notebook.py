"""The hydrologist's walk-through notebook runs top to bottom without a cell error.

The kernel is pinned to this interpreter: the ``python3`` kernelspec found on the default
Jupyter path may start whatever ``python`` is first on PATH (another venv, the system one), so a
kernelspec pointing at ``sys.executable`` is installed into a temporary prefix and put first on
``JUPYTER_PATH``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "retrain_and_evaluate.ipynb"


@pytest.fixture
def venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install a ``python3`` kernelspec running ``sys.executable``; return its directory."""
    prefix = tmp_path / "jupyter"
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix),
                    "--name", "python3"], check=True, capture_output=True, timeout=120)
    share = prefix / "share" / "jupyter"
    monkeypatch.setenv("JUPYTER_PATH", str(share))
    return share / "kernels" / "python3"


@pytest.mark.slow
def test_notebook_runs_without_errors(venv_kernel: Path, tmp_path: Path) -> None:
    spec = json.loads((venv_kernel / "kernel.json").read_text(encoding="utf-8"))
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()
    from jupyter_client.kernelspec import KernelSpecManager

    # the kernel nbclient will start is the one just installed (JUPYTER_PATH comes first)
    found = Path(KernelSpecManager().get_kernel_spec("python3").resource_dir).resolve()
    assert found == venv_kernel.resolve()

    nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    assert any(c.cell_type == "code" for c in nb.cells)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}})
    try:
        client.execute()
    except CellExecutionError as exc:  # name the failing cell instead of a bare traceback
        pytest.fail(f"notebook cell failed:\n{exc}")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors == []
    # every code cell ran, in order
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))
