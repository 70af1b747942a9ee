"""`python -m mnist_fastai.kaggle` driving the real kaggle CLI this project installs, against the loopback
stand-in of the Kaggle API in `kaggle_api.py` (the only fake here: Kaggle itself cannot be reached from a test)."""
import io, json, os, stat, subprocess, sys, zipfile
from pathlib import Path
import pytest
from conftest import assert_one_line_error, ROOT
from kaggle_api import KaggleStub

COMP = 'digit-recognizer'
TIMEOUT = 120

def competition_zip(sample):
    "The competition's zip, as Kaggle serves it: train.csv, test.csv and sample_submission.csv."
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:
        z.writestr('train.csv', (sample/'train.csv').read_bytes())
        z.writestr('test.csv', (sample/'test.csv').read_bytes())
        z.writestr('sample_submission.csv', 'ImageId,Label\n' + ''.join(f'{i},0\n' for i in range(1, 101)))
    return buf.getvalue()

def run_kaggle(stub, home, *args, cwd, **env):
    "`python -m mnist_fastai.kaggle ...` as a user runs it, with HOME=`home`, pointed at `stub`."
    e = stub.env(home, **env)
    e['PYTHONPATH'] = str(ROOT)
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, '-m', 'mnist_fastai.kaggle', *map(str, args)], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)

@pytest.fixture
def stub(sample):
    with KaggleStub(competition_zip(sample)) as k:
        yield k
        assert k.foreign() == []                  # nothing went anywhere but 127.0.0.1

@pytest.fixture
def work(tmp_path, sample):
    "A project folder whose data/ holds what the main job leaves there: the built-in sample."
    from mnist_fastai.data import make_sample
    w = tmp_path/'work'
    make_sample(w/'data', n_test=100, n_train=300)
    return w

def good_submission(path, n=100, label='7'):
    path.write_bytes(b'ImageId,Label\r\n' + b''.join(f'{i},{label}\r\n'.encode() for i in range(1, n + 1)))
    return path

def test_download_extracts_and_sets_the_sample_aside(stub, home, work, sample):
    r = run_kaggle(stub, home, 'download', cwd=work)
    assert r.returncode == 0, (r.stdout, r.stderr)
    data = work/'data'
    assert (data/'train.csv').read_bytes() == (sample/'train.csv').read_bytes()
    assert (data/'test.csv').read_bytes() == (sample/'test.csv').read_bytes()
    assert (data/f'{COMP}.zip').read_bytes() == stub.data_zip
    # The sample's answers are not left beside Kaggle's test.csv: they moved, with a line saying so.
    assert not (data/'test_labels.csv').exists() and not (data/'sample.json').exists()
    assert sorted(p.name for p in (data/'sample').iterdir()) == ['sample.json', 'test.csv', 'test_labels.csv', 'train.csv']
    assert 'moved the built-in sample (train.csv, test.csv, test_labels.csv) to data/sample' in r.stdout
    [call] = stub.api_calls('DownloadDataFiles')
    assert call.body == {'competitionName': COMP} and call.auth == ('basic', 'stub-user:stub-api-key')
    assert 'stub-api-key' not in r.stdout + r.stderr

def test_submit_uploads_the_exact_bytes_and_reports_the_server(stub, home, work):
    sub = good_submission(work/'sub.csv')
    r = run_kaggle(stub, home, 'submit', sub, '-m', 'resnet18, 8 epochs', cwd=work)
    assert r.returncode == 0, (r.stdout, r.stderr)
    [s] = stub.submissions
    assert (s.competition, s.content, s.description) == (COMP, sub.read_bytes(), 'resnet18, 8 epochs')
    assert 'Successfully submitted to Digit Recognizer' in r.stdout
    assert f'kaggle competitions submissions {COMP}' in r.stdout
    assert 'stub-api-key' not in r.stdout + r.stderr

@pytest.mark.parametrize('refusal,needle', [
    (dict(refuse_upload=True), 'Could not submit to competition'),        # the CLI may still exit 0 here
    (dict(refuse_submission='Submission not allowed: daily limit reached.'), 'daily limit reached')])
def test_a_refused_submission_is_a_failure(sample, tmp_path, work, refusal, needle):
    with KaggleStub(competition_zip(sample), **refusal) as stub:
        home = tmp_path/'home'; stub.write_kaggle_json(home/'.kaggle')
        r = run_kaggle(stub, home, 'submit', good_submission(work/'sub.csv'), '--message', 'x', cwd=work)
        assert stub.submissions == [] and stub.foreign() == []
    assert_one_line_error(r, needle)

def test_unknown_competition(stub, home, work):
    r = run_kaggle(stub, home, 'submit', good_submission(work/'sub.csv'), '--competition', 'digit-recogniser', cwd=work)
    assert_one_line_error(r, 'kaggle competitions submit failed', 'digit-recogniser')
    r = run_kaggle(stub, home, 'download', '--competition', 'digit-recogniser', cwd=work)
    assert_one_line_error(r, 'kaggle competitions download failed', 'digit-recogniser')
    assert (work/'data/test_labels.csv').exists()            # a failed download leaves data/ alone

def test_the_submission_is_checked_before_the_cli_runs(stub, home, work):
    bad = work/'sub.csv'; bad.write_text('ImageId,Label\n1,3\n2,45\n')
    assert_one_line_error(run_kaggle(stub, home, 'submit', bad, cwd=work), "line 3: Label '45' is not a single digit")
    good_submission(bad, n=99)
    assert_one_line_error(run_kaggle(stub, home, 'submit', bad, cwd=work), '99 rows, but the test set has 100 images')
    assert stub.calls == []

def test_no_credentials_is_one_line(stub, tmp_path, work):
    r = run_kaggle(stub, tmp_path/'empty-home', 'submit', good_submission(work/'sub.csv'), cwd=work)
    assert_one_line_error(r, 'kaggle auth login', 'access_token')
    assert stub.api_calls('CreateSubmission') == []

def test_bad_credentials_are_one_line(stub, tmp_path, work):
    home = tmp_path/'home'; (home/'.kaggle').mkdir(parents=True)
    (home/'.kaggle/kaggle.json').write_text(json.dumps({'username': 'stub-user', 'key': 'WRONG-SECRET'}))
    os.chmod(home/'.kaggle/kaggle.json', 0o600)
    r = run_kaggle(stub, home, 'download', cwd=work)
    assert_one_line_error(r, 'did not accept the credentials')
    assert 'WRONG-SECRET' not in r.stdout + r.stderr

def test_every_sign_in_way_reaches_the_server(stub, tmp_path, sample):
    "Each way the installed CLI signs in, each with its own secret: the upload reaches the server with it."
    from concurrent.futures import ThreadPoolExecutor
    stub.access_tokens.update({t: 'stub-user' for t in ('tok-env', 'tok-file', 'tok-nb')})
    stub.api_keys.update({'u-home': 'k-home', 'u-cfg': 'k-cfg', 'u-env': 'k-env'})
    ways = {}
    def way(name, expected, **env):
        h = tmp_path/name/'home'; h.mkdir(parents=True)
        ways[name] = (h, env, expected)
        return h
    way('env_token', ('bearer', 'tok-env'), KAGGLE_API_TOKEN='tok-env')
    h = way('access_token_file', ('bearer', 'tok-file'))
    (h/'.kaggle').mkdir(); (h/'.kaggle/access_token').write_text('tok-file\n')
    stub.write_oauth_credentials(way('kaggle_auth_login', 'issued'))           # what `kaggle auth login` saves
    (tmp_path/'nbtoken').write_text('tok-nb')
    way('kaggle_notebook', ('bearer', 'tok-nb'), KAGGLE_KERNEL_RUN_TYPE='Interactive', KAGGLE_DATA_PROXY_URL=stub.url,
        KAGGLE_API_V1_TOKEN=tmp_path/'nbtoken')
    stub.write_kaggle_json(way('kaggle_json', ('basic', 'u-home:k-home'))/'.kaggle', 'u-home')
    stub.write_kaggle_json(tmp_path/'cfg', 'u-cfg')
    way('kaggle_config_dir', ('basic', 'u-cfg:k-cfg'), KAGGLE_CONFIG_DIR=tmp_path/'cfg')
    way('username_key', ('basic', 'u-env:k-env'), KAGGLE_USERNAME='u-env', KAGGLE_KEY='k-env')
    def one(item):
        name, (h, env, _) = item
        sub = good_submission(h.parent/'sub.csv', label=str(len(name) % 10))
        return name, run_kaggle(stub, h, 'submit', sub, '-m', name, '--data', h.parent, cwd=h.parent, **env)
    with ThreadPoolExecutor(2) as ex: results = dict(ex.map(one, ways.items()))
    for name, r in results.items():
        assert r.returncode == 0, (name, r.stdout, r.stderr)
        assert 'Successfully submitted' in r.stdout
        for secret in ('tok-', 'k-home', 'k-cfg', 'k-env', stub.refresh_token): assert secret not in r.stdout + r.stderr, (name, secret)
    [issued] = stub.issued_tokens
    by_message = {c.body['submissionDescription']: c.auth for c in stub.api_calls('CreateSubmission')}
    assert by_message == {n: ('bearer', issued) if e == 'issued' else e for n, (_, _, e) in ways.items()}

def _zip(path, make):
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z: make(z)
    return path

def test_crafted_zips_refused(tmp_path):
    from mnist_fastai.kaggle import safe_extract
    from mnist_fastai.core import DataError
    def link(z):
        i = zipfile.ZipInfo('train.csv'); i.external_attr = (stat.S_IFLNK | 0o777) << 16; z.writestr(i, '/etc/passwd')
    cases = {'..': (lambda z: z.writestr('a/../../x.csv', 'x'), 'leaves the destination'),
             'abs': (lambda z: z.writestr('/abs/x.csv', 'x'), 'leaves the destination'),
             'link': (link, 'symbolic link'),
             'bomb': (lambda z: z.writestr('t.csv', b'\0' * (30 << 20)), 'compression ratio'),
             'total': (lambda z: [z.writestr(f'{i}.csv', os.urandom(1 << 16)) for i in range(20)], 'more than 1 MiB')}
    for name, (make, msg) in cases.items():
        p = _zip(tmp_path/f'{name}.zip', make)
        with pytest.raises(DataError, match=msg): safe_extract(p, tmp_path/'out', max_total=1 << 20)
        assert not (tmp_path/'out').exists() and not (tmp_path/'x.csv').exists()

def test_a_hostile_download_changes_nothing(sample, tmp_path, work):
    "A zip the server sends that would escape data/ is refused before the sample is moved or anything written."
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, 'w') as z: z.writestr('../escaped.csv', 'x')
    with KaggleStub(evil.getvalue()) as stub:
        home = tmp_path/'home'; stub.write_kaggle_json(home/'.kaggle')
        r = run_kaggle(stub, home, 'download', cwd=work)
    assert_one_line_error(r, 'leaves the destination folder')
    assert (work/'data/test_labels.csv').exists() and not (work/'escaped.csv').exists()

def test_the_readmes_order(stub, home, tmp_path, sample):
    "The README's order: the main job on the built-in sample, then `kaggle download`, then the main job again."
    from conftest import run
    w = tmp_path/'project'; w.mkdir()
    r = run('-m', 'mnist_fastai.pipeline', '--epochs', '1', cwd=w)
    assert r.returncode == 0, r.stderr
    assert 'local accuracy' in r.stdout and (w/'data/test_labels.csv').exists()
    r = run_kaggle(stub, home, 'download', cwd=w)
    assert r.returncode == 0, r.stderr
    assert not (w/'data/test_labels.csv').exists() and (w/'data/sample/test_labels.csv').exists()
    r = run('-m', 'mnist_fastai.pipeline', '--epochs', '1', cwd=w)
    assert r.returncode == 0, r.stderr
    assert 'using the competition files in data' in r.stdout and 'local accuracy' not in r.stdout
    sub = (w/'submissions/submission.csv').read_text().splitlines()
    assert len(sub) == 101 and sub[0] == 'ImageId,Label'          # one row per image of Kaggle's test.csv

def test_the_samples_answers_are_refused_up_front(tmp_path, sample):
    "Kaggle's test.csv copied over the sample's by hand: one line before training, no scoring, a checked submission."
    from conftest import run
    from mnist_fastai.data import make_sample
    w = tmp_path/'project'
    make_sample(w/'data', n_test=100, n_train=300, seed=1)
    (w/'data/test.csv').write_bytes((sample/'test.csv').read_bytes())   # another test set of the same size
    r = run('-m', 'mnist_fastai.pipeline', '--epochs', '1', cwd=w)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "not scoring: data/test_labels.csv holds the built-in sample's answers" in out
    assert out.index('not scoring') < out.index('[3/4] training') and 'local accuracy' not in out
    assert (w/'submissions/submission.csv').exists()

def test_answers_are_checked_against_their_own_test_set(tmp_path, monkeypatch):
    "Answers beside another folder's test.csv are counted against that test.csv, not against ./data's."
    from mnist_fastai.data import make_sample
    from mnist_fastai.submission import answers_for
    monkeypatch.chdir(tmp_path)
    make_sample('data', n_test=100, n_train=300)
    make_sample('other', n_test=200, n_train=300, seed=3)
    assert answers_for('other/test.csv', log=print) == Path('other/test_labels.csv')
    assert answers_for('data/test.csv', log=print) == Path('data/test_labels.csv')

def _scored_locally(work, sub, accuracy=0.97):
    "A leaderboard row for `sub`, as predict leaves it after scoring against local answers."
    from mnist_fastai.submission import record_score
    record_score(sub.relative_to(work), accuracy, {'model': 'test'}, scores=work/'submissions/scores.csv')

def test_submit_wait_brings_the_public_score_back(stub, home, work):
    "`submit --wait`: the CLI polls GetSubmission until COMPLETE; one line with the score, recorded beside the local one."
    (work/'submissions').mkdir()
    sub = good_submission(work/'submissions/submission.csv')
    _scored_locally(work, sub)
    r = run_kaggle(stub, home, 'submit', 'submissions/submission.csv', '-m', 'waited', '--wait', '60', cwd=work)
    assert r.returncode == 0, (r.stdout, r.stderr)
    [s] = stub.submissions
    assert f'submissions/submission.csv: public score 0.99000 on Kaggle (submission {s.ref})' in r.stdout
    assert [c.body for c in stub.api_calls('GetSubmission')] == [{'ref': s.ref}]
    import csv as _csv
    [row] = list(_csv.DictReader(open(work/'submissions/scores.csv')))
    assert (row['accuracy'], row['kaggle']) == ('0.97000', '0.99000')
    assert 'stub-api-key' not in r.stdout + r.stderr

def test_submit_wait_without_a_local_score(stub, home, work):
    "A file that was never scored locally (a teammate's, a notebook's): the public score is printed, no leaderboard row made."
    r = run_kaggle(stub, home, 'submit', good_submission(work/'theirs.csv'), '--wait', cwd=work)   # bare --wait
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert 'public score 0.99000 on Kaggle' in r.stdout and not (work/'scores.csv').exists()

def test_submit_wait_still_pending(sample, tmp_path, work):
    "Kaggle has not scored it when the wait ends: the submission was made; one line says so and how to look later."
    with KaggleStub(competition_zip(sample), score=None) as stub:
        home = tmp_path/'home'; stub.write_kaggle_json(home/'.kaggle')
        r = run_kaggle(stub, home, 'submit', good_submission(work/'sub.csv'), '--wait', '1', cwd=work)
        [s] = stub.submissions
        assert 2 <= len(stub.api_calls('GetSubmission')) <= 3 and stub.foreign() == []
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert f'submitted (ref {s.ref}); not scored yet after 1 s: python -m mnist_fastai.kaggle scores' in r.stdout
    assert 'public score' not in r.stdout

def test_submit_wait_scoring_error(sample, tmp_path, work):
    "Kaggle answers ERROR for the submission: one error line with Kaggle's description, exit 2."
    with KaggleStub(competition_zip(sample), scoring_error='Submission must have 28000 rows') as stub:
        home = tmp_path/'home'; stub.write_kaggle_json(home/'.kaggle')
        r = run_kaggle(stub, home, 'submit', good_submission(work/'sub.csv'), '--wait', '30', cwd=work)
        [s] = stub.submissions
    assert_one_line_error(r, f'submission {s.ref} was made, but Kaggle could not score it', 'must have 28000 rows')

def test_submit_wait_no_credentials(stub, tmp_path, work):
    r = run_kaggle(stub, tmp_path/'empty-home', 'submit', good_submission(work/'sub.csv'), '--wait', '5', cwd=work)
    assert_one_line_error(r, 'kaggle auth login')
    assert stub.submissions == []

def test_scores_lists_the_submissions(sample, tmp_path, work):
    "`scores`: the competition's submissions, newest first, as `kaggle competitions submissions` lists them."
    with KaggleStub(competition_zip(sample)) as stub:
        home = tmp_path/'home'; stub.write_kaggle_json(home/'.kaggle')
        r0 = run_kaggle(stub, home, 'scores', cwd=work)
        for i, msg in enumerate(['first', 'second']):
            stub.score = f'0.9{i}000'
            assert run_kaggle(stub, home, 'submit', good_submission(work/f'{msg}.csv'), '-m', msg, cwd=work).returncode == 0
        stub.score = None
        assert run_kaggle(stub, home, 'submit', good_submission(work/'third.csv'), '-m', 'third', cwd=work).returncode == 0
        r = run_kaggle(stub, home, 'scores', cwd=work)
        refs = [s.ref for s in stub.submissions]
    assert r0.returncode == 0 and f'no submissions to {COMP} yet' in r0.stdout, (r0.stdout, r0.stderr)
    assert r.returncode == 0, (r.stdout, r.stderr)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ['ref', 'date', 'status', 'public', 'private', 'file', 'message']
    rows = [l.split() for l in lines[1:]]
    assert [(x[0], x[3], x[4]) for x in rows] == [(str(refs[2]), 'PENDING', 'third.csv'), (str(refs[1]), 'COMPLETE', '0.91000'),
                                                 (str(refs[0]), 'COMPLETE', '0.90000')]

def test_scores_unknown_competition(stub, home, work):
    assert_one_line_error(run_kaggle(stub, home, 'scores', '--competition', 'digit-recogniser', cwd=work),
                          'kaggle competitions submissions failed', 'digit-recogniser')
