"""Every notebook, top to bottom, in a real Jupyter kernel whose working directory is `nbs/`, as JupyterLab runs it.

This is the one run of the notebooks in the test suite (`nbdev_test` runs the same cells in-process; CI does not run
them twice), except the walkthrough: it works in the project's own `data/`, `images/` and `submissions/`, so
`test_walkthrough.py` runs it in a copy of the project, on the built-in sample and again on Kaggle-shaped files. It checks what the notebooks' own tests cannot: that no cell errors in a real kernel, and that running a
notebook leaves nothing new or changed inside the repository (folders like `nbs/data` or `nbs/models` appear when a
function's default paths are used from `nbs/`)."""
import os
from pathlib import Path
import pytest
import nbformat                      # the dev extra's: CI's runtime-only run leaves this file out
from nbclient import NotebookClient

pytestmark = pytest.mark.dev

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
SKIP_DIRS = {'.git', '__pycache__', '.pytest_cache', '.ipynb_checkpoints', '.hypothesis'}   # the test tools' own caches (another -n worker's)

def repo_files() -> dict:
    "Every file in the repository (virtualenvs and caches aside) with its size and modification time."
    out = {}
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = [x for x in dirs if x not in SKIP_DIRS and not (Path(d) == ROOT and x.startswith('.venv'))]
        for f in files:
            st = os.stat(os.path.join(d, f))
            out[os.path.relpath(os.path.join(d, f), ROOT)] = (st.st_size, st.st_mtime_ns)
    return out

def runnable(nb):
    "The notebook without the cells `nbdev_test` skips by default (`#| slow`, `#| eval: false`)."
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'code' and ('#| slow' in c.source or '#| eval: false' in c.source))]
    return nb

@pytest.mark.parametrize('name', sorted(p.name for p in NBS.glob('*.ipynb') if p.name != '09_walkthrough.ipynb'))
def test_notebook_in_jupyter_from_nbs(name):
    nb = runnable(nbformat.read(NBS/name, as_version=4))
    before = repo_files()
    NotebookClient(nb, kernel_name='python3', timeout=900, resources={'metadata': {'path': str(NBS)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.output_type == 'error']
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    after = repo_files()
    new = sorted(set(after) - set(before))
    changed = sorted(f for f in set(after) & set(before) if after[f] != before[f])
    assert not new and not changed, dict(new=new[:10], changed=changed[:10])
