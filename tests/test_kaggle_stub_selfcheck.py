"""The real `kaggle` CLI (2.2.5, or 2.2.4) against the loopback stand-in in tests/kaggle_api.py.

Each test runs the CLI as a subprocess, either `python -m kaggle` or the `kaggle` console script next to
sys.executable, with HOME in a temp dir, so nothing here reads real credentials or leaves the machine.
"""
import io, json, os, subprocess, sys, zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
import pytest
from kaggle_api import KaggleStub

def _kaggle_version():
    try: return tuple(int(p) for p in version('kaggle').split('.')[:3])
    except (PackageNotFoundError, ValueError): return None

# Not `import kaggle` here: importing it signs in at import time, printing to stdout and creating dirs in HOME.
KAGGLE = _kaggle_version() or (0,)
pytestmark = pytest.mark.skipif(KAGGLE < (2, 2, 4), reason='needs the kaggle CLI >= 2.2.4')
# 2.2.5 changed three outputs: a failed upload exits 1 (2.2.4 prints it on stdout and exits 0), an unknown
# competition on submit gets a hint, and a submit prints the new submission's ref. (pip resolves
# `kaggle>=2.1` to 2.2.4 where certifi>=2026.10.19, which 2.2.5 requires, is not available.)
SINCE_225 = KAGGLE >= (2, 2, 5)

SCRIPT = Path(sys.executable).with_name('kaggle')
CLI = {'module': [sys.executable, '-m', 'kaggle'], 'script': [str(SCRIPT)]}
TIMEOUT = 30
COMP = 'digit-recognizer'
AUTH_HELP = 'Authentication required to call the Kaggle API.'

def make_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as z:
        z.writestr('train.csv', 'label,pixel0\n7,0\n')
        z.writestr('test.csv', 'pixel0\n0\n')
    return buf.getvalue()

DATA = make_zip()

def start(stub, home, *args, how='script', **env):
    "Start the CLI (Popen) against `stub` with HOME=`home`; `env` adds variables."
    home = Path(home); home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([*CLI[how], *map(str, args)], env=stub.env(home, **env), cwd=home, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

def finish(p, stdin=None):
    "Wait (bounded) for a started CLI; returns (returncode, stdout, stderr)."
    try: out, err = p.communicate(stdin, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill(); p.communicate()
        raise
    return p.returncode, out, err

def kaggle(stub, home, *args, how='script', stdin=None, **env):
    return finish(start(stub, home, *args, how=how, **env), stdin)

def finish_all(procs):
    "finish() every started CLI of a dict name -> Popen; none is left running, whatever happens."
    try: return {n: finish(p) for n, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None: p.kill(); p.communicate()

@pytest.fixture
def stub():
    with KaggleStub(DATA) as k:
        yield k
        assert k.foreign() == []          # nothing was addressed to anything but localhost

@pytest.fixture
def sub_file(tmp_path):
    f = tmp_path/'submission.csv'
    f.write_bytes(b'ImageId,Label\r\n1,2\r\n2,0\r\n')   # CRLF on purpose: the bytes must arrive untouched
    return f


def test_download_writes_the_exact_zip(stub, home, tmp_path):
    out_dir = tmp_path/'data'
    rc, out, err = kaggle(stub, home, 'competitions', 'download', COMP, '-p', out_dir)
    assert rc == 0, (out, err)
    assert out == f'Downloading {COMP}.zip to {out_dir}\n\n'
    assert os.listdir(out_dir) == [f'{COMP}.zip']                 # the CLI extracts nothing by itself
    assert (out_dir/f'{COMP}.zip').read_bytes() == DATA
    [call] = stub.api_calls('DownloadDataFiles')
    assert call.body == {'competitionName': COMP} and call.auth == ('basic', 'stub-user:stub-api-key')


def test_submit_uploads_exact_bytes_and_message_then_lists_it(stub, home, sub_file):
    msg = 'knn, k=3 "quoted"'
    # `-c` is the older spelling; 2.2.5 still takes it (hidden from --help) besides the positional argument.
    rc, out, err = kaggle(stub, home, 'competitions', 'submit', '-c', COMP, '-f', sub_file, '-m', msg, how='module')
    assert rc == 0, (out, err)
    [s] = stub.submissions
    ref_line = [f'Submission ref: {s.ref}'] if SINCE_225 else []
    assert out == '\n'.join([*ref_line, '4 submissions remaining today.', 'Successfully submitted to Digit Recognizer'])
    assert (s.competition, s.file_name, s.content, s.description) == (COMP, 'submission.csv', sub_file.read_bytes(), msg)
    [start_up] = stub.api_calls('StartSubmissionUpload')
    assert start_up.body['contentLength'] == sub_file.stat().st_size and start_up.body['fileName'] == 'submission.csv'
    [create] = stub.api_calls('CreateSubmission')
    assert set(create.body) == {'competitionName', 'blobFileTokens', 'submissionDescription'}
    assert stub.uploads[create.body['blobFileTokens']]['content'] == sub_file.read_bytes()   # the token of that upload

    rc, out, err = kaggle(stub, home, 'competitions', 'submissions', COMP, '-v')   # -v: CSV
    assert rc == 0, (out, err)
    assert out.splitlines()[0] == 'ref,fileName,date,description,status,publicScore,privateScore'
    assert out.splitlines()[1].startswith(f'{s.ref},submission.csv,') and ',0.99000,' in out.splitlines()[1]


REFUSED = 'Submission not allowed: daily limit reached.'

@pytest.mark.parametrize('refusal,expect', [
    (dict(refuse_upload=True),                                    # the PUT of the file fails
     (1, '', 'Could not submit to competition\n') if SINCE_225 else (0, 'Could not submit to competition', '')),
    (dict(refuse_submission=REFUSED), (1, '', REFUSED + '\n'))])  # CreateSubmission answers 400
def test_refused_submission(tmp_path, sub_file, refusal, expect):
    with KaggleStub(DATA, **refusal) as stub:
        home = tmp_path/'home'; stub.write_kaggle_json(home/'.kaggle')
        assert kaggle(stub, home, 'competitions', 'submit', COMP, '-f', sub_file, '-m', 'try', '-q') == expect
    assert stub.submissions == []


def test_unknown_competition(stub, home, sub_file, tmp_path):
    r = finish_all(dict(
        submit=start(stub, home, 'competitions', 'submit', 'digit-recogniser', '-f', sub_file, '-m', 'x'),
        download=start(stub, home, 'competitions', 'download', 'digit-recogniser', '-p', tmp_path/'d', how='module')))
    not_found = "Competition 'digit-recogniser' not found."      # the stub's 404 message
    rc, out, err = r['submit']
    assert (rc, out) == (1, '')
    if SINCE_225:
        assert err.startswith('Could not find competition - please verify that you entered the correct competition ID')
        assert f'Error: {not_found}' in err
    else: assert err == not_found + '\n'
    rc, out, err = r['download']
    assert (rc, out) == (1, '')
    assert err.startswith(not_found + ('\n\nThe resource was not found.' if SINCE_225 else '\n'))
    assert not (tmp_path/'d').exists() and stub.submissions == []
    assert {c.status for c in stub.api_calls()} == {404}


def test_no_credentials(stub, tmp_path):
    rc, out, err = kaggle(stub, tmp_path/'empty', 'competitions', 'download', COMP, '-p', tmp_path/'d')
    assert rc == 1 and err == ''
    assert out.startswith(AUTH_HELP) and 'kaggle auth login' in out
    assert stub.calls == []                # it gave up before calling anything


def test_bad_key_gets_401_and_auth_help(stub, tmp_path):
    home = tmp_path/'home'
    (home/'.kaggle').mkdir(parents=True)
    (home/'.kaggle/kaggle.json').write_text(json.dumps({'username': 'stub-user', 'key': 'wrong'}))
    os.chmod(home/'.kaggle/kaggle.json', 0o600)
    rc, out, err = kaggle(stub, home, 'competitions', 'download', COMP, '-p', tmp_path/'d')
    assert (rc, err) == (1, '') and out.startswith(AUTH_HELP)
    assert [(c.auth, c.status) for c in stub.api_calls()] == [(('basic', 'stub-user:wrong'), 401)]


def test_auth_login_writes_credentials_json(stub, tmp_path):
    "The OAuth login reads the code on stdin when it may not open a browser, then saves the tokens."
    home = tmp_path/'home'
    rc, out, err = kaggle(stub, home, 'auth', 'login', '--no-launch-browser', stdin=stub.oauth_code + '\n')
    assert rc == 0, (out, err)
    assert 'http://localhost/api/v1/oauth2/authorize?' in out and 'You are now logged in as [stub-user]' in out
    creds = json.loads((home/'.kaggle/credentials.json').read_text())
    [token] = stub.issued_tokens
    assert set(creds) == {'refresh_token', 'access_token', 'access_token_expiration', 'username', 'scopes'}
    assert (creds['refresh_token'], creds['access_token'], creds['username']) == (stub.refresh_token, token, 'stub-user')
    assert [c.rpc.split('/')[1] for c in stub.api_calls()] == ['ExchangeOAuthToken', 'IntrospectToken']
    assert stub.api_calls('IntrospectToken')[0].body == {'token': token}


def test_each_sign_in_way_reaches_the_server(stub, tmp_path):
    """Every way kaggle 2.2.5 signs in, each with its own credential, run side by side (for speed)."""
    ways = {}                                  # name -> (HOME, extra env, credential the API calls must carry)
    def way(name, expected, **env):
        h = tmp_path/name/'home'; h.mkdir(parents=True)
        ways[name] = (h, env, expected)
        return h
    stub.access_tokens.update({t: 'stub-user' for t in ('tok-env', 'tok-file', 'tok-nb')})
    stub.api_keys.update({'u-home': 'k-home', 'u-cfg': 'k-cfg', 'u-env': 'k-env'})

    way('env_token', ('bearer', 'tok-env'), KAGGLE_API_TOKEN='tok-env')                          # (i)
    h = way('access_token_file', ('bearer', 'tok-file'))                                          # (ii)
    (h/'.kaggle').mkdir(); (h/'.kaggle/access_token').write_text('tok-file\n')
    h = way('oauth_credentials_json', 'issued')                                                   # (iii)
    stub.write_oauth_credentials(h)
    (tmp_path/'nbtoken').write_text('tok-nb')
    way('kaggle_notebook', ('bearer', 'tok-nb'), KAGGLE_KERNEL_RUN_TYPE='Interactive',            # (iv)
        KAGGLE_DATA_PROXY_URL=stub.url, KAGGLE_API_V1_TOKEN=tmp_path/'nbtoken')
    h = way('kaggle_json_home', ('basic', 'u-home:k-home'))                                       # (v)
    stub.write_kaggle_json(h/'.kaggle', 'u-home')
    stub.write_kaggle_json(tmp_path/'cfg', 'u-cfg')
    way('kaggle_json_config_dir', ('basic', 'u-cfg:k-cfg'), KAGGLE_CONFIG_DIR=tmp_path/'cfg')     # (v')
    way('env_username_key', ('basic', 'u-env:k-env'), KAGGLE_USERNAME='u-env', KAGGLE_KEY='k-env')  # (vi)

    procs = {n: start(stub, h, 'competitions', 'download', COMP, '-p', h.parent/'d', '-q',
                      how='module' if i % 2 else 'script', **env)
             for i, (n, (h, env, _)) in enumerate(ways.items())}
    results = finish_all(procs)
    for n, (rc, out, err) in results.items():
        assert rc == 0, (n, out, err)
        assert (ways[n][0].parent/'d'/f'{COMP}.zip').read_bytes() == DATA, n

    [issued] = stub.issued_tokens                         # the credentials.json refresh token was traded once
    expected = {('bearer', issued) if e == 'issued' else e for _, _, e in ways.values()}
    seen = stub.credentials('DownloadDataFiles')
    assert len(seen) == len(ways) and set(seen) == expected
    # Access tokens are checked with the server first; API keys are not.
    assert {c.body['token'] for c in stub.api_calls('IntrospectToken')} == {'tok-env', 'tok-file', 'tok-nb'}
    [refresh] = stub.api_calls('GenerateAccessToken')
    assert refresh.body['refreshToken'] == stub.refresh_token and refresh.auth is None
