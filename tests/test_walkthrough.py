"""The walkthrough notebook as a person runs it: `jupyter lab` at a project's root, the notebook run top to bottom in a
real Jupyter kernel whose working directory is `nbs/`. It runs in a copy of the project (settings.ini and the
notebook), so the test never touches this checkout's own `data/`, `images/` or `submissions/`.

First on the built-in sample (an empty `data/`: the notebook writes the sample there and trains the real recipe), then,
unchanged, on the competition's files as `python -m mnist_fastai.kaggle download` leaves them (the real kaggle CLI
against the loopback stand-in of the Kaggle API, the one fake, since Kaggle cannot be reached from a test), ending with
the submit command the notebook prints, run for real against the same stand-in."""
import os, re, shutil, shlex
from pathlib import Path
import pytest
import nbformat                      # the dev extra's
from nbclient import NotebookClient
from conftest import ROOT, EMPTY_TORCH_HOME
from kaggle_api import KaggleStub
from test_kaggle import competition_zip, run_kaggle

pytestmark = pytest.mark.dev
NB = '09_walkthrough.ipynb'

def make_project(tmp_path) -> Path:
    "A project folder as a clone has it, as far as the walkthrough needs: settings.ini and nbs/ with the notebook."
    p = tmp_path/'project'
    (p/'nbs').mkdir(parents=True)
    shutil.copy(ROOT/'settings.ini', p)
    shutil.copy(ROOT/'nbs'/NB, p/'nbs')
    return p

def files(p) -> set: return {str(f.relative_to(p)) for f in p.rglob('*') if f.is_file()}

def run_walkthrough(p, monkeypatch) -> str:
    "Run the notebook in a kernel started in `p/nbs`; fail on any error output; return all its text output."
    monkeypatch.setenv('TORCH_HOME', str(EMPTY_TORCH_HOME))      # no ImageNet weights, whatever this machine has
    monkeypatch.setenv('MNIST_FASTAI_OFFLINE', '1')
    monkeypatch.setenv('MPLBACKEND', 'module://matplotlib_inline.backend_inline')
    nb = nbformat.read(p/'nbs'/NB, as_version=4)
    NotebookClient(nb, kernel_name='python3', timeout=1200, resources={'metadata': {'path': str(p/'nbs')}}).execute()
    outs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
    errors = [o for o in outs if o.output_type == 'error']
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    assert sum('image/png' in o.get('data', {}) for o in outs) >= 5          # batch, lr_find, losses, confusion, top losses
    return '\n'.join(o.get('text', '') + o.get('data', {}).get('text/plain', '') for o in outs)

def test_walkthrough_on_the_built_in_sample(tmp_path, monkeypatch):
    p = make_project(tmp_path)
    (p/'data').mkdir()
    before = files(p)
    text = run_walkthrough(p, monkeypatch)
    assert 'writing the built-in sample' in text
    accs = re.search(r'held-out accuracy: ([\d.]+)% plain, ([\d.]+)% with TTA', text)
    assert accs and min(map(float, accs.groups())) >= 95, text[-2000:]         # a real model, on 1000 held-out digits
    sub = (p/'submissions/submission.csv').read_text().splitlines()
    assert sub[0] == 'ImageId,Label' and len(sub) == 1001
    assert 'nothing to send' in text
    new = files(p) - before
    assert all(f.split('/')[0] in ('data', 'images', 'models', 'submissions') for f in new), sorted(new)[:10]
    assert files(p/'nbs') == {NB}                                             # nothing written beside the notebook

def test_walkthrough_after_kaggle_download_then_submit(tmp_path, monkeypatch, sample):
    from mnist_fastai.data import make_sample
    p = make_project(tmp_path)
    make_sample(p/'data', n_test=100, n_train=300)                           # what an earlier run on the sample left
    with KaggleStub(competition_zip(sample)) as stub:
        home = tmp_path/'home'
        stub.write_kaggle_json(home/'.kaggle')
        r = run_kaggle(stub, home, 'download', cwd=p)
        assert r.returncode == 0, r.stderr
        text = run_walkthrough(p, monkeypatch)
        assert 'writing the built-in sample' not in text and 'held-out accuracy' not in text
        sub = p/'submissions/submission.csv'
        assert len(sub.read_text().splitlines()) == 101                      # one row per image of Kaggle's test.csv
        cmd = shlex.split(re.search(r'^python -m mnist_fastai\.kaggle submit .*$', text, re.M).group(0))
        r = run_kaggle(stub, home, *cmd[3:], cwd=p)                           # the printed command, as a user pastes it
        assert r.returncode == 0, r.stderr
        assert stub.submissions[-1].content == sub.read_bytes() and stub.submissions[-1].description == "resnet18, 8 epochs, TTA"
        assert stub.foreign() == []
