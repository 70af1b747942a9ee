"""The installed stack works together: torch and torchvision load each other's ops, resnet18 runs; the dev extra
brings what settings.ini asks for (no bound asserted here that the project's own requirements do not impose), and
nbdev's commands work at the root under both spellings, `nbdev_export` (the project's card, nbdev 2) and
`nbdev-export` (nbdev 3)."""
import configparser, json, shutil, subprocess, sys
from importlib.metadata import version, PackageNotFoundError
from pathlib import Path
import pytest, torch, torchvision
from conftest import ROOT

def test_torchvision_ops_and_resnet18():
    from torchvision.models import resnet18
    from torchvision.ops import nms
    m = resnet18(num_classes=10).eval()
    with torch.no_grad(): out = m(torch.randn(2, 3, 28, 28))
    assert out.shape == (2, 10)
    keep = nms(torch.tensor([[0., 0, 10, 10], [1, 1, 10, 10]]), torch.tensor([0.9, 0.8]), 0.5)
    assert keep.tolist() == [0]

def _requirements(key):
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini')
    from packaging.requirements import Requirement
    return [Requirement(r) for r in cfg['DEFAULT'][key].split()]

def _unmet(key):
    "The requirements in settings.ini's `key` that the installed packages do not meet."
    out = []
    for r in _requirements(key):
        if r.marker and not r.marker.evaluate(): continue
        try: v = version(r.name)
        except PackageNotFoundError: v = None
        if v is None or not r.specifier.contains(v, prereleases=True): out.append(f"{r} (installed: {v})")
    return out

def test_runtime_requirements_met():
    assert _unmet('requirements') == []

@pytest.mark.dev
def test_dev_requirements_met():
    "nbdev 3, execnb 0.3, fastcore 2 and a fastai that works with it, as the dev extra says."
    assert _unmet('dev_requirements') == []
    import nbdev, fastcore
    assert int(nbdev.__version__.split('.')[0]) >= 3 and int(fastcore.__version__.split('.')[0]) >= 2

def _project_copy(tmp_path):
    "The files nbdev reads and writes, in a scratch folder: pyproject.toml, settings.ini, nbs/, mnist_fastai/."
    d = tmp_path/'project'
    for f in ('pyproject.toml', 'settings.ini'): (d/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy(ROOT/f, d/f)
    shutil.copytree(ROOT/'nbs', d/'nbs', ignore=shutil.ignore_patterns('.ipynb_checkpoints', 'tmp*'))
    shutil.copytree(ROOT/'mnist_fastai', d/'mnist_fastai', ignore=shutil.ignore_patterns('__pycache__'))
    return d

def _run(cmd, *args, cwd):
    exe = Path(sys.executable).with_name(cmd)
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)

@pytest.mark.dev
@pytest.mark.parametrize('spelling', ['_', '-'])
def test_nbdev_commands_at_the_root(tmp_path, spelling):
    "export rewrites a module exactly as it is committed; clean strips what Jupyter adds; test runs a notebook."
    d = _project_copy(tmp_path)
    want = (d/'mnist_fastai/kaggle.py').read_bytes()
    (d/'mnist_fastai/kaggle.py').unlink()
    r = _run(f'nbdev{spelling}export', cwd=d)
    assert r.returncode == 0, r.stderr
    assert (d/'mnist_fastai/kaggle.py').read_bytes() == want
    nb = d/'nbs/00_cli.ipynb'; clean = nb.read_text()
    dirty = json.loads(clean); dirty['cells'][0]['execution_count'] = 7; dirty['cells'][0]['metadata']['ExecuteTime'] = {'end_time': '2026-11-30'}
    nb.write_text(json.dumps(dirty))
    r = _run(f'nbdev{spelling}clean', cwd=d)
    assert r.returncode == 0, r.stderr
    assert nb.read_text() == clean
    r = _run(f'nbdev{spelling}test', nb.relative_to(d), cwd=d)
    assert r.returncode == 0 and 'Success' in r.stdout, (r.stdout, r.stderr)
