"Training, prediction, baselines and the main job through their command lines, on tiny real data (real training, on the CPU)."
import shutil
from pathlib import Path
import numpy as np
import pytest, torch, torchvision
from conftest import run, assert_one_line_error
from mnist_fastai.data import make_sample

@pytest.fixture(scope='module')
def project(tmp_path_factory):
    "A project folder with a tiny sample, its PNG tree, and a model trained for one epoch by the train CLI."
    d = tmp_path_factory.mktemp('project')
    make_sample(d/'data', n_test=100, n_train=300)
    assert run('-m', 'mnist_fastai.csv2png', cwd=d).returncode == 0
    r = run('-m', 'mnist_fastai.train', '--epochs', '1', '--bs', '32', cwd=d)
    assert r.returncode == 0, r.stderr
    (d/'train.out').write_text(r.stdout)
    return d

def test_train_outputs(project):
    out = (project/'train.out').read_text()
    assert 'no ImageNet weights for resnet18' in out and 'training from scratch' in out
    assert 'training resnet18 on the CPU: 240 train / 60 valid images, bs 32, seed 42' in out
    assert 'best validation accuracy' in out
    for f in ('models/model.pkl', 'models/best.pth', 'images/training_log.csv', 'images/training.png'):
        assert (project/f).stat().st_size > 0, f
    log = (project/'images/training_log.csv').read_text().splitlines()
    assert log[0] == 'epoch,stage,train_loss,valid_loss,accuracy,seconds' and len(log) == 2
    assert not list((project/'models').glob('.*'))       # no temp files left

def test_train_errors(project, tmp_path):
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--pretrained', '--epochs', '1', cwd=project),
                          '--pretrained: no ImageNet weights for resnet18', 'resnet18-f37072fd.pth')
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--weights', 'nope.pth', cwd=project), '--weights nope.pth: no such file')
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--arch', 'resnet_nope', cwd=project), '--arch resnet_nope: not a torchvision')
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--images', tmp_path, cwd=project), 'no training PNGs')
    (tmp_path/'bad.pth').write_bytes(b'garbage')
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--weights', tmp_path/'bad.pth', cwd=project), 'bad.pth: not a PyTorch weights file')

def test_train_from_weights_file(project, tmp_path):
    "The offline pretrained path: a state dict in torchvision's cache (here a random resnet18) is used via fine_tune."
    home = tmp_path/'torch'; ck = home/'hub/checkpoints'; ck.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), ck/'resnet18-f37072fd.pth')
    r = run('-m', 'mnist_fastai.train', '--epochs', '1', '--bs', '32', '--pretrained', '--models', tmp_path/'m', '--plots', tmp_path/'p',
            cwd=project, env={'TORCH_HOME': str(home)})
    assert r.returncode == 0, r.stderr
    assert f'starting from ImageNet weights {ck}/resnet18-f37072fd.pth' in r.stdout
    log = (tmp_path/'p/training_log.csv').read_text().splitlines()
    assert [l.split(',')[1] for l in log[1:]] == ['1', '2']       # fine_tune: a frozen stage, then an unfrozen one

def test_predict_and_score(project):
    r = run('-m', 'mnist_fastai.predict', cwd=project)
    assert r.returncode == 0, r.stderr
    assert 'wrote submissions/submission.csv (100 rows, checked)' in r.stdout and 'local accuracy' in r.stdout
    sub = (project/'submissions/submission.csv').read_text().splitlines()
    assert sub[0] == 'ImageId,Label' and [l.split(',')[0] for l in sub[1:]] == [str(i) for i in range(1, 101)]
    assert all(l.split(',')[1] in list('0123456789') for l in sub[1:])
    for f in ('images/confusion_matrix.png', 'images/worst_mistakes.png', 'submissions/scores.csv', 'submissions/submission.probs.npy'):
        assert (project/f).exists(), f
    import csv, json
    rows = list(csv.DictReader(open(project/'submissions/scores.csv')))
    assert list(rows[0]) == ['file', 'accuracy', 'time', 'seconds', 'settings']
    settings = json.loads(rows[-1]['settings'])
    assert (settings['arch'], settings['seed'], settings['epochs'], settings['weights'], settings['tta']) == ('resnet18', 42, 1, 'scratch', False)
    acc = float(r.stdout.split('local accuracy ')[1].split('%')[0]) / 100
    labels = np.loadtxt(project/'data/test_labels.csv', delimiter=',', skiprows=1, dtype=int)[:, 1]
    pred = np.loadtxt(project/'submissions/submission.csv', delimiter=',', skiprows=1, dtype=int)[:, 1]
    assert abs((pred == labels).mean() - acc) < 1e-4
    # from the CSV directly: the same predictions as from the PNGs
    r2 = run('-m', 'mnist_fastai.predict', '--csv', 'data/test.csv', '--out', 'submissions/from_csv.csv', cwd=project)
    assert r2.returncode == 0, r2.stderr
    assert (project/'submissions/from_csv.csv').read_text() == (project/'submissions/submission.csv').read_text()
    r3 = run('-m', 'mnist_fastai.predict', '--tta', '--out', 'submissions/tta.csv', cwd=project)
    assert r3.returncode == 0 and (project/'submissions/tta.csv').exists()
    lb = run('-m', 'mnist_fastai.predict', '--leaderboard', cwd=project)
    assert lb.returncode == 0 and 'rank' in lb.stdout and 'submissions/tta.csv' in lb.stdout

def test_check_submission_cli(project, tmp_path):
    good = tmp_path/'good.csv'
    good.write_text('ImageId,Label\n' + ''.join(f'{i},{i % 10}\n' for i in range(1, 101)))
    r = run('-m', 'mnist_fastai.predict', '--check', good, cwd=project)
    assert r.returncode == 0 and 'ok, 100 rows' in r.stdout
    cases = {'Id,Label\n1,1\n': "line 1: header must be 'ImageId,Label'",
             'ImageId,Label\n1,1\n2,2\n': '2 rows, but the test set has 100 images',
             'ImageId,Label\n1,1\n3,2\n': "line 3: ImageId '3', expected 2",
             'ImageId,Label\n1,1\n2,x\n': "line 3: Label 'x' is not a digit 0..9",
             'ImageId,Label\n1,1,1\n': 'line 2: 3 fields, expected 2'}
    for text, msg in cases.items():
        bad = tmp_path/'bad.csv'; bad.write_text(text)
        assert_one_line_error(run('-m', 'mnist_fastai.predict', '--check', bad, cwd=project), 'bad.csv', msg)

def test_predict_errors(project, tmp_path):
    assert_one_line_error(run('-m', 'mnist_fastai.predict', '--model', 'nope.pkl', cwd=project), 'nope.pkl: no such model file')
    (tmp_path/'junk.pkl').write_bytes(b'\x80\x04junk')
    assert_one_line_error(run('-m', 'mnist_fastai.predict', '--model', tmp_path/'junk.pkl', cwd=project), 'not a fastai export')
    assert_one_line_error(run('-m', 'mnist_fastai.predict', '--images', tmp_path, cwd=project), 'no test PNGs')

def test_baselines(project):
    for method in ('majority', 'knn'):
        r = run('-m', 'mnist_fastai.baseline', '--method', method, cwd=project)
        assert r.returncode == 0, r.stderr
        assert f'{method} baseline: wrote submissions/baseline_{method}.csv' in r.stdout
    acc = float(r.stdout.split('local accuracy ')[1].split('%')[0])
    assert acc > 70        # kNN on 300 real digits
    assert 'baseline_knn.csv' in (project/'submissions/scores.csv').read_text()

def test_pipeline_builds_sample_when_no_data(tmp_path):
    r = run('-m', 'mnist_fastai.pipeline', '--epochs', '1', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert 'no train.csv in data: writing the built-in sample' in out
    assert 'train: 4000 images' in out and 'test: 1000 images' in out
    assert 'wrote submissions/submission.csv (1000 rows, checked)' in out and 'local accuracy' in out
    assert (tmp_path/'submissions/submission.csv').exists() and (tmp_path/'models/model.pkl').exists()

def test_pipeline_errors(tmp_path):
    (tmp_path/'data').mkdir(); (tmp_path/'data/test.csv').write_text('pixel0\n1\n')
    assert_one_line_error(run('-m', 'mnist_fastai.pipeline', cwd=tmp_path), 'has test.csv but no train.csv')
