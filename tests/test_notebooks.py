"Every notebook also runs top to bottom in a real Jupyter kernel (nbclient), as a person walking them in jupyter lab would."
from pathlib import Path
import pytest
import nbformat                      # the dev extra's: CI's runtime-only run leaves this file out
from nbclient import NotebookClient

pytestmark = pytest.mark.dev

NBS = Path(__file__).resolve().parent.parent/'nbs'

@pytest.mark.parametrize('name', sorted(p.name for p in NBS.glob('*.ipynb')))
def test_notebook_runs_in_jupyter(name):
    nb = nbformat.read(NBS/name, as_version=4)
    nb.cells = [c for c in nb.cells if not (c.cell_type == 'code' and '#| slow' in c.source)]   # as nbdev_test does
    NotebookClient(nb, kernel_name='python3', timeout=900, resources={'metadata': {'path': str(NBS)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.output_type == 'error']
    assert not errors
