"Scoring any submission file from the command line: the `submission` command and `predict --check --labels`, on the built-in sample's answers."
import csv, json
import numpy as np
from conftest import run, assert_one_line_error
from mnist_fastai.data import make_sample
from mnist_fastai.submission import read_labels, write_submission

def _project(tmp_path, wrong:int):
    "A project folder with the sample (100 held out) and a submission with `wrong` digits changed from the answers."
    make_sample(tmp_path/'data', n_test=100, n_train=300)
    y = read_labels(tmp_path/'data/test_labels.csv')
    pred = y.copy(); pred[:wrong] = (pred[:wrong] + 1) % 10
    write_submission(pred, tmp_path/'teammate.csv')
    return y

def test_score_prints_the_accuracy_and_records_it(tmp_path):
    _project(tmp_path, wrong=7)
    r = run('-m', 'mnist_fastai.submission', 'score', 'teammate.csv', '--labels', 'data/test_labels.csv', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == 'teammate.csv: ok, 100 rows, 93.00% (93 of 100) against data/test_labels.csv', r.stdout
    [row] = list(csv.DictReader(open(tmp_path/'submissions/scores.csv')))
    assert (row['file'], row['accuracy']) == ('teammate.csv', '0.93000')
    assert json.loads(row['settings'])['answers'] == 'data/test_labels.csv'
    board = run('-m', 'mnist_fastai.submission', 'leaderboard', cwd=tmp_path)
    assert board.returncode == 0 and 'teammate.csv' in board.stdout and '0.93' in board.stdout

def test_score_finds_the_answers_beside_the_test_csv(tmp_path):
    _project(tmp_path, wrong=0)
    r = run('-m', 'mnist_fastai.submission', 'score', 'teammate.csv', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert '100.00% (100 of 100) against data/test_labels.csv' in r.stdout

def test_predict_check_with_labels_scores_too(tmp_path):
    "The older spelling: `predict --check FILE` validates; with `--labels` it also scores and records, as `submission score` does."
    _project(tmp_path, wrong=3)
    r = run('-m', 'mnist_fastai.predict', '--check', 'teammate.csv', cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == 'teammate.csv: ok, 100 rows', (r.stdout, r.stderr)
    assert not (tmp_path/'submissions/scores.csv').exists()
    r = run('-m', 'mnist_fastai.predict', '--check', 'teammate.csv', '--labels', 'data/test_labels.csv', cwd=tmp_path)
    assert r.stdout.strip() == 'teammate.csv: ok, 100 rows, 97.00% (97 of 100) against data/test_labels.csv', (r.stdout, r.stderr)
    assert (tmp_path/'submissions/scores.csv').read_text().count('teammate.csv') == 1

def test_bad_files_are_one_line_and_record_nothing(tmp_path):
    _project(tmp_path, wrong=0)
    (tmp_path/'short.csv').write_text('ImageId,Label\n1,7\n2,2\n')
    assert_one_line_error(run('-m', 'mnist_fastai.submission', 'score', 'short.csv', cwd=tmp_path), 'short.csv: 2 rows, but the test set has 100')
    assert_one_line_error(run('-m', 'mnist_fastai.submission', 'score', 'teammate.csv', '--labels', 'nope.csv', cwd=tmp_path),
                          'nope.csv: no such answers file')
    (tmp_path/'few.csv').write_text('ImageId,Label\n1,7\n')                    # answers for another test set: the reason, once
    assert_one_line_error(run('-m', 'mnist_fastai.submission', 'score', 'teammate.csv', '--labels', 'few.csv', cwd=tmp_path),
                          'few.csv has 1 answers, but data/test.csv has 100 images')
    (tmp_path/'data/test_labels.csv').unlink()
    assert_one_line_error(run('-m', 'mnist_fastai.submission', 'score', 'teammate.csv', cwd=tmp_path), 'no answers to score it against')
    assert not (tmp_path/'submissions/scores.csv').exists()
