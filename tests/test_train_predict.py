"Training, prediction, baselines and the main job through their command lines, on tiny real data (real training, on the CPU)."
import shutil
from pathlib import Path
import numpy as np
import pytest, torch, torchvision
from conftest import run, assert_one_line_error, device_words
import json
import pandas as pd
from fastai.learner import load_learner
from mnist_fastai.data import make_sample
from mnist_fastai.train import cpu_has_bf16

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
    assert 'no ImageNet weights for resnet18' in out and 'MNIST_FASTAI_OFFLINE is set' in out and 'training from scratch' in out
    assert f'training resnet18 on {device_words()}: 240 train / 60 valid images, bs 32, seed 42' in out
    assert 'kept epoch ' in out and ': validation accuracy ' in out
    for f in ('models/model.pkl', 'models/best.pth', 'images/training_log.csv', 'images/training.png'):
        assert (project/f).stat().st_size > 0, f
    log = (project/'images/training_log.csv').read_text().splitlines()
    assert log[0] == 'epoch,stage,train_loss,valid_loss,accuracy,seconds' and len(log) == 2
    assert not list((project/'models').glob('.*'))       # no temp files left

def test_fast_path_computes_as_the_plain_one(project, tmp_path):
    "SmallMapConv2d and fused_adam change how a step is computed, not what: on a real batch the whole resnet gives nn.Conv2d's outputs and gradients, and a real fit with fused_adam has the losses of one with fastai's Adam (float32, to rounding)."
    import copy
    from fastai.vision.all import set_seed, Adam
    from mnist_fastai.fastdl import digit_dls
    from mnist_fastai.train import mnist_learner
    from mnist_fastai.fastops import fused_adam, SmallMapConv2d, plain_convs
    dls = digit_dls(project/'images', bs=32, progress=False, log=None)
    set_seed(42)
    learn = mnist_learner(dls, models=tmp_path, mixed_precision=False)
    assert learn.opt_func is fused_adam
    small = [m for m in learn.model.modules() if type(m) is SmallMapConv2d]
    assert len(small) == 20                                     # every convolution of resnet18
    plain = plain_convs(copy.deepcopy(learn.model))
    assert not any(type(m) is SmallMapConv2d for m in plain.modules())
    xb, yb = (torch.Tensor(t) for t in dls.one_batch())     # plain tensors: fastai's types dispatch the loss
    grads = []
    for m in (learn.model, plain):
        m.train(); m.zero_grad(); torch.manual_seed(0)           # the same dropout masks in the head
        out = m(xb); torch.nn.functional.cross_entropy(out, yb).backward()
        grads.append((out.detach(), [p.grad.clone() for p in m.parameters()]))
    (o1, g1), (o2, g2) = grads
    torch.testing.assert_close(o1, o2, rtol=1e-4, atol=1e-4)
    for a, b in zip(g1, g2): torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    runs = []
    for opt in (fused_adam, Adam):                              # only the optimiser differs between the two fits
        set_seed(42)
        lr = mnist_learner(digit_dls(project/'images', bs=32, progress=False, log=None), models=tmp_path,
                           mixed_precision=False)
        lr.opt_func = opt
        with lr.no_bar(), lr.no_logging(): lr.fit_one_cycle(1, 1e-3)
        runs.append(lr)
    fast, slow = runs
    assert type(fast.opt).__name__ == 'FusedAdam' and type(slow.opt).__name__ == 'Optimizer'
    # the two steps agree to float32's rounding (02e_fastops); Adam's normalised steps let that grow through a fit
    # (5e-4 of the loss after 7 steps here), far below what a change of the update would move (the first step's 4%)
    np.testing.assert_allclose([float(l) for l in fast.recorder.losses], [float(l) for l in slow.recorder.losses],
                               rtol=2e-3)
    assert fast.opt.state[next(fast.model.parameters())]['step'].item() == len(fast.recorder.losses)

def test_train_errors(project, tmp_path):
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--pretrained', '--epochs', '1', cwd=project),
                          '--pretrained: no ImageNet weights for resnet18', 'resnet18-f37072fd.pth')
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--weights', 'nope.pth', cwd=project), '--weights nope.pth: no such file')
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--arch', 'resnet_nope', cwd=project), '--arch resnet_nope: not a torchvision')
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--images', tmp_path, cwd=project), 'no training PNGs')
    (tmp_path/'bad.pth').write_bytes(b'garbage')
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--weights', tmp_path/'bad.pth', cwd=project), 'bad.pth: not a PyTorch weights file')
    assert_one_line_error(run('-m', 'mnist_fastai.train', '--pretrained', '--scratch', '--weights', tmp_path/'bad.pth', cwd=project),
                          '--pretrained and --scratch contradict each other')

def test_train_progressive_resizing(project, tmp_path):
    "--size 56 --small_epochs 1: the first epoch at 28x28, the second at 56x56, which is the one kept and the size the learner predicts at."
    out = dict(models=tmp_path/'m', plots=tmp_path/'p')
    r = run('-m', 'mnist_fastai.train', '--epochs', '2', '--bs', '32', '--size', '56', '--small_epochs', '1',
            '--models', out['models'], '--plots', out['plots'], cwd=project)
    assert r.returncode == 0, r.stderr
    assert 'bs 32, seed 42, batches from memory, 56×56 inputs after 1 epochs at 28×28' in r.stdout
    assert 'kept epoch 2 of 2: validation accuracy' in r.stdout                   # the small epoch is never the one kept
    learn = load_learner(out['models']/'model.pkl')
    assert [t.size for t in learn.dls.valid.after_batch.fs if type(t).__name__ == 'Upscale'] == [56]
    assert learn.train_settings['small_epochs'] == 1 and len((out['plots']/'training_log.csv').read_text().splitlines()) == 3
    bad = ('-m', 'mnist_fastai.train', '--models', tmp_path/'bad')
    assert_one_line_error(run(*bad, '--epochs', '2', '--size', '56', '--small_epochs', '2', cwd=project), '--small_epochs 2: must be fewer than --epochs 2')
    assert_one_line_error(run(*bad, '--epochs', '2', '--small_epochs', '1', cwd=project), '--small_epochs 1: needs a --size above 28')
    assert not (tmp_path/'bad').exists()

def test_pipeline_refuses_a_bad_setting_before_writing(tmp_path):
    "No train.csv, so the job would write the built-in sample (recipe `sample`, 8 epochs): a setting out of bounds for it is one line, and nothing is written."
    for flags, msg in ((('--valid_pct', '1.5'), '--valid_pct 1.5: a fraction from 0'),
                       (('--size', '56', '--small_epochs', '10'), '--small_epochs 10: must be fewer than --epochs 8')):
        assert_one_line_error(run('-m', 'mnist_fastai.pipeline', *flags, cwd=tmp_path), msg)
        assert sorted(p.name for p in tmp_path.iterdir()) == [], flags

def test_train_from_weights_file(project, tmp_path):
    """The cached pretrained path: a state dict in torchvision's cache (here a random resnet18) is fine-tuned, and the
    exported learner scores the epoch kept across both stages: the last, unless an earlier one is clearly better."""
    from mnist_fastai.callbacks import kept_row
    from mnist_fastai.predict import load_model
    from mnist_fastai.fastdl import fast_dls
    home = tmp_path/'torch'; ck = home/'hub/checkpoints'; ck.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), ck/'resnet18-f37072fd.pth')
    r = run('-m', 'mnist_fastai.train', '--epochs', '2', '--bs', '32', '--pretrained', '--models', tmp_path/'m', '--plots', tmp_path/'p',
            cwd=project, env={'TORCH_HOME': str(home)})
    assert r.returncode == 0, r.stderr
    assert f'starting from ImageNet weights {ck}/resnet18-f37072fd.pth' in r.stdout
    log = (tmp_path/'p/training_log.csv').read_text().splitlines()
    assert [l.split(',')[1] for l in log[1:]] == ['1', '2', '2']  # fine_tune: a frozen stage, then an unfrozen one
    rows = [dict(epoch=i + 1, accuracy=float(l.split(',')[4])) for i, l in enumerate(log[1:])]
    best = kept_row(rows, 60)['accuracy']                          # 60 validation images
    assert f"kept epoch {kept_row(rows, 60)['epoch']} of 3: validation accuracy {100*best:.2f}%" in r.stdout
    learn = load_model(tmp_path/'m/model.pkl', cpu=True)
    assert learn.train_settings['valid_accuracy'] == pytest.approx(best, abs=1e-5)
    dls = fast_dls(project/'images', bs=32, seed=42, valid_pct=0.2, channels=3, progress=False, log=lambda *a: None)
    assert learn.validate(dl=dls.valid)[1] == pytest.approx(best, abs=1e-4)

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
             'ImageId,Label\n1,1\n1,2\n': 'line 3: ImageId 1 again (first on line 2)',
             'ImageId,Label\n1,1\n2,x\n': "line 3: Label 'x' is not a single digit 0..9",
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
    acc = {}
    for method in ('majority', 'knn', 'mlp'):
        r = run('-m', 'mnist_fastai.baseline', '--method', method, cwd=project)
        assert r.returncode == 0, r.stderr
        assert f'{method} baseline: wrote submissions/baseline_{method}.csv' in r.stdout
        acc[method] = float(r.stdout.split('local accuracy ')[1].split('%')[0])
    assert acc['knn'] > 70 and acc['mlp'] > 70 and acc['majority'] < 20      # on 300 real digits
    import csv
    rows = {r['file']: r for r in csv.DictReader(open(project/'submissions/scores.csv'))}
    assert float(rows['submissions/baseline_mlp.csv']['seconds']) >= 0 and 'mlp' in rows['submissions/baseline_mlp.csv']['settings']

def test_predict_scores_only_answers_that_belong(project, tmp_path):
    """A PNG tree made from another test CSV is predicted but not scored against data/test_labels.csv (the old code
    scored it and failed after writing the submission); answers named explicitly for another test set fail up front."""
    lines = (project/'data/test.csv').read_text().splitlines(keepends=True)
    (tmp_path/'other').mkdir(); (tmp_path/'other/test.csv').write_text(''.join(lines[:41]))
    assert run('-m', 'mnist_fastai.csv2png', '--data', tmp_path/'other', '--dest', tmp_path/'images', cwd=project).returncode == 0
    r = run('-m', 'mnist_fastai.predict', '--images', tmp_path/'images', '--out', tmp_path/'other.csv', cwd=project)
    assert r.returncode == 0, r.stderr
    assert f'wrote {tmp_path}/other.csv (40 rows, checked)' in r.stdout and 'local accuracy' not in r.stdout
    r = run('-m', 'mnist_fastai.predict', '--images', tmp_path/'images', '--labels', 'data/test_labels.csv', '--out', tmp_path/'x.csv', cwd=project)
    assert_one_line_error(r, f'data/test_labels.csv: 100 answers, but {tmp_path}/images has 40 test images')
    assert not (tmp_path/'x.csv').exists()
    # the tree made from data/test.csv is still scored against the answers beside it
    assert 'local accuracy' in run('-m', 'mnist_fastai.predict', '--out', tmp_path/'same.csv', cwd=project).stdout

def test_pipeline_builds_sample_when_no_data(tmp_path):
    r = run('-m', 'mnist_fastai.pipeline', '--epochs', '1', '--tta', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert 'no train.csv in data: writing the built-in sample' in out
    assert "recipe 'sample': 1 epochs, bs 64, 20% validation, float32 (mixed precision on a GPU), TTA" in out   # --tta alone: on
    assert 'train: 4000 images' in out and 'test: 1000 images' in out
    assert 'wrote submissions/submission.csv (1000 rows, checked)' in out and 'local accuracy' in out
    assert (tmp_path/'submissions/submission.csv').exists() and (tmp_path/'models/model.pkl').exists()

def test_pipeline_full_recipe(tmp_path):
    "The full recipe, asked for on a small set: its settings reach training (bf16 exactly where this CPU has it) and the record; flags win."
    make_sample(tmp_path/'data', n_test=100, n_train=600)
    r = run('-m', 'mnist_fastai.pipeline', '--recipe', 'full', '--epochs', '1', '--tta', 'false', '--label_smoothing', '0.1', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "recipe 'full': 1 epochs, bs 128, 10% validation, bfloat16 where native, label smoothing 0.1, elastic 1.5 px" in r.stdout
    assert 'TTA' not in r.stdout.split("recipe 'full'")[1].splitlines()[0]
    assert f'on {device_words(cpu_mixed=cpu_has_bf16())}: 540 train / 60 valid images, bs 128' in r.stdout
    settings = json.loads(pd.read_csv(tmp_path/'submissions/scores.csv')['settings'].iloc[-1])
    assert (settings['recipe'], settings['tta'], settings['label_smoothing'], settings['valid_pct'], settings['elastic']) \
           == ('full', False, 0.1, 0.1, 1.5)
    learn = load_learner(tmp_path/'models/model.pkl')
    assert type(learn.loss_func).__name__ == 'LabelSmoothingCrossEntropyFlat' and learn.loss_func.func.eps == 0.1
    bend = [f for t in learn.dls.train.after_batch.fs for f in getattr(t, 'coord_fs', [])]
    assert [(type(f).__name__, f.magnitude) for f in bend] == [('ElasticCoord', 1.5)]   # the recipe's bending trained it

def test_pipeline_errors(tmp_path):
    (tmp_path/'data').mkdir(); (tmp_path/'data/test.csv').write_text('pixel0\n1\n')
    assert_one_line_error(run('-m', 'mnist_fastai.pipeline', cwd=tmp_path), 'has test.csv but no train.csv')

# ---- ImageNet weights fetched the fastai way, from an HTTP server on 127.0.0.1 ----
import hashlib, http.server, socket, threading

class WeightsServer:
    "An HTTP server on 127.0.0.1 serving `blob` as any `NAME-HASH.pth` except names starting `missing`; counts requests."
    def __init__(self, blob):
        outer = self
        self.blob, self.requests = blob, 0
        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_GET(self):
                outer.requests += 1
                if self.path.startswith('/missing'): return self.send_error(404)
                self.send_response(200); self.send_header('Content-Length', str(len(outer.blob))); self.end_headers()
                self.wfile.write(outer.blob)
        self.srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
    def url(self, name): return f'http://127.0.0.1:{self.srv.server_address[1]}/{name}'
    def close(self): self.srv.shutdown(); self.srv.server_close()

@pytest.fixture(scope='module')
def weights_blob(tmp_path_factory):
    "A random resnet18 state dict as bytes, and the torchvision-style name its SHA-256 gives it."
    p = tmp_path_factory.mktemp('w')/'sd.pth'
    torch.save(torchvision.models.resnet18().state_dict(), p)
    blob = p.read_bytes()
    return blob, f'resnet18-{hashlib.sha256(blob).hexdigest()[:8]}.pth'

def _train_online(project, tmp_path, url, *extra, **env):
    home = tmp_path/'torch'
    r = run('-m', 'mnist_fastai.train', '--epochs', '1', '--bs', '32', '--models', tmp_path/'m', '--plots', tmp_path/'p', *extra,
            cwd=project, env={'TORCH_HOME': str(home), 'MNIST_FASTAI_OFFLINE': '', 'MNIST_FASTAI_WEIGHTS_URL': url, **env})
    return r, home/'hub/checkpoints'

def test_weights_downloaded_then_fine_tuned(project, tmp_path, weights_blob):
    blob, name = weights_blob
    srv = WeightsServer(blob)
    try: r, ck = _train_online(project, tmp_path, srv.url(name))
    finally: srv.close()
    assert r.returncode == 0, r.stderr
    assert (ck/name).read_bytes() == blob and srv.requests == 1
    assert f'downloaded ImageNet weights to {ck/name}' in r.stdout
    assert [l.split(',')[1] for l in (tmp_path/'p/training_log.csv').read_text().splitlines()[1:]] == ['1', '2']   # fine_tune
    assert sorted(o.name for o in ck.iterdir()) == [name]                    # no temp file

def test_weights_download_failures(project, tmp_path, weights_blob):
    "404, a wrong hash, and a server that never answers: one line, then from scratch (or an error with --pretrained)."
    blob, name = weights_blob
    srv = WeightsServer(blob)
    silent = socket.socket(); silent.bind(('127.0.0.1', 0)); silent.listen()
    try:
        bad = [('missing-0123abcd.pth', srv.url('missing-0123abcd.pth'), 'HTTP 404'),
               ('resnet18-00000000.pth', srv.url('resnet18-00000000.pth'), 'SHA-256 does not start with 00000000')]
        for fname, url, why in bad:
            r, ck = _train_online(project, tmp_path/fname, url)
            assert r.returncode == 0, r.stderr
            assert why in r.stdout and 'training resnet18 from scratch' in r.stdout, r.stdout
            assert not ck.exists() or list(ck.iterdir()) == []               # nothing half-written in the cache
            assert_one_line_error(_train_online(project, tmp_path/fname, url, '--pretrained')[0], '--pretrained: ', why)
        from mnist_fastai.weights import download_weights
        from mnist_fastai.core import DataError
        with pytest.raises(DataError, match='no answer for 1s'):      # the timeout, in-process (the CLI waits 15 s)
            download_weights(f'http://127.0.0.1:{silent.getsockname()[1]}/resnet18-0123abcd.pth', tmp_path/'t/w.pth', timeout=1, progress=False)
        assert not (tmp_path/'t').exists() or list((tmp_path/'t').iterdir()) == []
    finally: srv.close(); silent.close()
    assert srv.requests == 4

def test_offline_and_scratch_never_try(project, tmp_path, weights_blob):
    blob, name = weights_blob
    srv = WeightsServer(blob)
    try:
        r, _ = _train_online(project, tmp_path/'a', srv.url(name), MNIST_FASTAI_OFFLINE='1')
        assert r.returncode == 0 and 'MNIST_FASTAI_OFFLINE is set' in r.stdout and 'from scratch' in r.stdout
        r, _ = _train_online(project, tmp_path/'b', srv.url(name), '--scratch')
        assert r.returncode == 0 and 'from scratch (--scratch)' in r.stdout
        assert_one_line_error(_train_online(project, tmp_path/'c', srv.url(name), '--pretrained', MNIST_FASTAI_OFFLINE='1')[0],
                              'MNIST_FASTAI_OFFLINE forbids downloading')
    finally: srv.close()
    assert srv.requests == 0

def test_keep_best_spans_the_stages_of_fine_tuning(project, tmp_path):
    """A later stage that does worse must not replace the saved best: with no margin (`z=0`) the weights left loaded
    are the best epoch's. (The margin itself, `z=2`, is tested in 02d_callbacks.)"""
    from mnist_fastai.callbacks import KeepBest
    from mnist_fastai.fastdl import digit_dls
    from mnist_fastai.train import mnist_learner
    learn = mnist_learner(digit_dls(project/'images', bs=32, log=None), models=tmp_path/'m')
    learn.remove_cbs([c for c in learn.cbs if type(c).__name__ == 'ProgressCallback'])
    keep = KeepBest(z=0)
    learn.fit_one_cycle(2, 3e-3, cbs=[keep])
    first = keep.best
    learn.fit(1, lr=50.0, cbs=[keep])                  # a stage that wrecks the model
    assert keep.best == first
    assert learn.validate()[1] == pytest.approx(first)   # best.pth (stage 1) is what was reloaded
