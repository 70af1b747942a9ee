"""A loopback stand-in for the Kaggle API, for tests that run the *real* `kaggle` CLI.

Written against kaggle 2.2.5 / kagglesdk 0.1.38 (2.2.4 / 0.1.37 speak the same protocol). How the CLI is
pointed at it:

* `KAGGLE_API_ENVIRONMENT=LOCALHOST` makes kagglesdk (and `KaggleApi`, which then adds `--local`) call
  `http://localhost/api/v1/<Service>/<Method>`. The port is fixed (80); kagglesdk has no variable or
  option for it (its `TEST` environment, `localhost:7777`, is not reachable from the CLI, which only
  maps `LOCALHOST` to a local endpoint).
* Every HTTP call of the CLI goes through `requests` with `trust_env` on, so the standard `http_proxy`
  variable sends those `http://localhost/...` requests to this server on whatever free port it got,
  with the absolute URL on the request line. No root, no port 80. `https_proxy` also points here, so a
  stray https call would arrive as `CONNECT` and be refused (and recorded) instead of leaving the machine.

The server speaks the JSON shapes kagglesdk sends and expects (camelCase field names, enums by name):

  POST /api/v1/security.OAuthService/IntrospectToken       {token} -> {active, username, clientId, scope}
  POST /api/v1/security.OAuthService/ExchangeOAuthToken    {code, codeVerifier, grantType} -> tokens
  POST /api/v1/users.AccountService/GenerateAccessToken    {refreshToken, apiVersion, expirationDuration}
  POST /api/v1/competitions.CompetitionApiService/DownloadDataFiles   {competitionName} -> 302 to a blob
  GET  /blobs/competitions/<slug>/<slug>.zip                -> the zip bytes the test gave
  POST /api/v1/competitions.CompetitionApiService/StartSubmissionUpload
                                                            {competitionName, fileName, contentLength,
                                                             lastModifiedEpochSeconds} -> {token, createUrl}
  PUT  <createUrl>                                          the submission file's bytes
  POST /api/v1/competitions.CompetitionApiService/CreateSubmission
                                                            {competitionName, blobFileTokens,
                                                             submissionDescription} -> {message, ref}
  POST /api/v1/competitions.CompetitionApiService/GetSubmissionLimits -> {numToday, numTotal, numAllowedNow}
  POST /api/v1/competitions.CompetitionApiService/ListSubmissions     -> {submissions: [...]}
  POST /api/v1/competitions.CompetitionApiService/GetSubmission       {ref} -> one submission

Errors are JSON `{"code": <status>, "message": ...}` with the same HTTP status; kagglesdk raises an
`HTTPError` carrying that message, which the CLI prints. Every request is recorded with the credential
it carried, so a test can check which sign-in way reached the server.
"""
import base64, json, os, threading, time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from urllib.parse import urlsplit

__all__ = ['KaggleStub', 'Call', 'Submission']

API_PREFIX = '/api/v1/'
COMPETITIONS = 'competitions.CompetitionApiService'
BLOB_PREFIX = '/blobs/competitions/'
UPLOAD_PATH = '/upload/storage/v1/b/kaggle-competitions-submissions/o'   # shaped like the GCS resumable upload
LOCAL_HOSTS = {'localhost', '127.0.0.1'}   # what the CLI may address; anything else is "foreign"
MAX_BODY = 64 * 2**20                      # refuse bigger uploads rather than buffer them


@dataclass
class Call:
    "One request as the server saw it."
    method: str                 # GET, POST, PUT, CONNECT
    host: str                   # host the client addressed (from the absolute URL or Host header)
    path: str                   # path, without the query string
    rpc: str | None             # "<Service>/<Method>" for API calls, else None
    body: object                # parsed JSON for API calls, raw bytes for uploads, else None
    auth: tuple | None          # ('bearer', token) | ('basic', 'user:key') | ('other', header) | None
    status: int = 0             # what the stub answered


@dataclass
class Submission:
    "A submission the stub holds: the exact uploaded bytes plus what the CLI said about them."
    ref: int
    competition: str
    file_name: str
    content: bytes
    description: str | None
    date: datetime
    public_score: str | None = None
    private_score: str | None = None
    error: str | None = None    # Kaggle could not score it: status ERROR with this description

    def to_api(self):
        "The ApiSubmission JSON kagglesdk parses (status enum by name, datetime as ISO with a Z)."
        status = 'ERROR' if self.error else 'COMPLETE' if self.public_score is not None else 'PENDING'
        d = dict(ref=self.ref, totalBytes=len(self.content), fileName=self.file_name,
                 date=self.date.strftime('%Y-%m-%dT%H:%M:%S.000Z'), status=status)
        if self.error: d['errorDescription'] = self.error
        if self.description: d['description'] = self.description
        if self.public_score is not None: d['publicScore'] = self.public_score
        if self.private_score is not None: d['privateScore'] = self.private_score
        return d


class KaggleStub:
    """A Kaggle API stand-in on 127.0.0.1, run in a background thread while the `with` block lasts.

    `with KaggleStub(data_zip=b'...') as k: subprocess.run([...'kaggle'...], env=k.env(home))` and then
    look at `k.calls`, `k.submissions`, `k.credentials()`.

    Credentials the server accepts (anything else on an API call gets 401):
      * Bearer: a key of `access_tokens` (token -> username) or a token it issued itself (OAuth
        exchange / refresh); IntrospectToken reports those as active, anything else as inactive;
      * Basic: `user:key` for an item of `api_keys` (the kaggle.json / KAGGLE_USERNAME+KAGGLE_KEY way).
    Give each sign-in way its own token or key and `credentials()` tells which way reached the server.
    OAuth: `oauth_code` is the code `kaggle auth login --no-launch-browser` should read on stdin;
    `refresh_token` is what a hand-written ~/.kaggle/credentials.json should hold.

    Refusals a test can ask for:
      * `refuse_upload=True`: the PUT of the file gets 403, as a failed blob upload would;
      * `refuse_submission='...'`: CreateSubmission answers 400 with that message;
      * any competition not in `competitions` gets `unknown_status` (404) on every competition call.
    New submissions are listed as COMPLETE with public score `score` (None: PENDING, no score), or as ERROR
    with `scoring_error` as the description when that is given (what `submit --wait` and `submission` read).
    """

    def __init__(self, data_zip=b'', *, competitions=None, username='stub-user', api_keys=None,
                 access_tokens=None, refresh_token='stub-refresh-token',
                 oauth_code='stub-oauth-code', refuse_upload=False, refuse_submission=None, unknown_status=404,
                 score='0.99000', scoring_error=None, daily_limit=5, last_modified=None, api_version=None, max_requests=500,
                 request_timeout=10.0):
        self.data_zip = bytes(data_zip)
        self.competitions = dict(competitions or {'digit-recognizer': 'Digit Recognizer'})  # slug -> title
        self.username = username                # who OAuth logins and refreshes sign in as
        self.api_keys = dict(api_keys or {username: 'stub-api-key'})                 # username -> key
        self.access_tokens = dict(access_tokens or {'stub-access-token': username})  # token -> username
        self.refresh_token, self.oauth_code = refresh_token, oauth_code
        self.refuse_upload, self.refuse_submission = refuse_upload, refuse_submission
        self.unknown_status, self.score, self.daily_limit = unknown_status, score, daily_limit
        self.scoring_error = scoring_error
        self.last_modified = last_modified      # epoch seconds for the blob's Last-Modified, or None to omit
        self.api_version = api_version          # X-Kaggle-ApiVersion to send; a newer one makes the CLI warn
        self.max_requests, self.request_timeout = max_requests, request_timeout
        self.calls: list[Call] = []
        self.submissions: list[Submission] = []
        self.uploads: dict[str, dict] = {}      # upload token -> {competition, file_name, content}
        self.issued_tokens: list[str] = []      # access tokens handed out by ExchangeOAuthToken/GenerateAccessToken
        self._ids = count(1)
        self._lock = threading.Lock()
        self._server = self._thread = None

    # ---- lifecycle ------------------------------------------------------------------------------
    def __enter__(self):
        class Handler(_Handler): pass                                   # a handler class bound to this stub
        Handler.stub, Handler.timeout = self, self.request_timeout     # `timeout` bounds each socket read
        self._server = _Server(('127.0.0.1', 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs=dict(poll_interval=0.05),
                                        name='kaggle-stub', daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def port(self): return self._server.server_address[1]

    @property
    def url(self): return f'http://127.0.0.1:{self.port}'

    def env(self, home, base=None, **extra):
        """Environment for a `kaggle` subprocess: `base` (default os.environ) without anything that could
        carry real credentials or route traffic elsewhere, HOME=`home`, and the variables that send the
        CLI here. `extra` is added last (e.g. KAGGLE_API_TOKEN=...)."""
        base = os.environ if base is None else base
        drop = ('KAGGLE_', 'XDG_CONFIG_HOME', 'DISPLAY', 'BROWSER', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE',
                'NETRC', 'VERBOSE')
        e = {k: v for k, v in base.items() if not k.upper().startswith(drop) and not k.lower().endswith('_proxy')}
        home = str(home)
        e.update(HOME=home, XDG_CONFIG_HOME=os.path.join(home, '.config'), KAGGLE_API_ENVIRONMENT='LOCALHOST',
                 PYTHONUNBUFFERED='1')
        for name in ('http_proxy', 'https_proxy', 'all_proxy'):
            e[name] = e[name.upper()] = self.url
        e.update({k: str(v) for k, v in extra.items()})
        return e

    # ---- credential files in the formats kaggle 2.2.5 reads ---------------------------------------
    def write_kaggle_json(self, directory, username=None):
        """Legacy API-key file `<directory>/kaggle.json` = {"username", "key"}, mode 600 (else the CLI warns
        that the key is readable by others). The CLI reads it from $KAGGLE_CONFIG_DIR, else ~/.kaggle,
        else (when ~/.kaggle does not exist) $XDG_CONFIG_HOME/kaggle."""
        username = username or next(iter(self.api_keys))
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, 'kaggle.json')
        with open(path, 'w') as f: json.dump(dict(username=username, key=self.api_keys[username]), f)
        os.chmod(path, 0o600)
        return path

    def write_oauth_credentials(self, home, access_token='', expiration=''):
        """`~/.kaggle/credentials.json` as `kaggle auth login` writes it. With no (or an expired)
        access token the CLI first trades `refresh_token` for one via GenerateAccessToken and rewrites
        the file; with a token and a future ISO `expiration` it sends that token as is."""
        path = os.path.join(str(home), '.kaggle', 'credentials.json')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            json.dump(dict(refresh_token=self.refresh_token, access_token=access_token,
                           access_token_expiration=expiration, username=self.username, scopes=[]), f)
        os.chmod(path, 0o600)
        return path

    # ---- what a test looks at -------------------------------------------------------------------
    def api_calls(self, method=None):
        "API calls (optionally only `Method`, e.g. 'CreateSubmission'), in arrival order."
        with self._lock:
            return [c for c in self.calls if c.rpc and (method is None or c.rpc.endswith('/' + method))]

    def credentials(self, method=None):
        "The credential each API call carried (see `Call.auth`), in arrival order."
        return [c.auth for c in self.api_calls(method)]

    def foreign(self):
        "Requests addressed to anything but localhost (https CONNECTs included). Should stay empty."
        with self._lock:
            return [c for c in self.calls if c.host.split(':')[0] not in LOCAL_HOSTS or c.method == 'CONNECT']

    # ---- request handling (called from the handler threads) ---------------------------------------
    def _authorized(self, auth):
        if auth is None: return False
        kind, value = auth
        if kind == 'bearer': return value in self.access_tokens
        if kind == 'basic':
            user, _, key = value.partition(':')
            return user in self.api_keys and self.api_keys[user] == key
        return False

    def _issue_token(self):
        token = f'stub-issued-token-{next(self._ids)}'
        self.access_tokens[token] = self.username
        self.issued_tokens.append(token)
        return token

    def _competition(self, body):
        "The slug asked for, or raise _Error with the 'unknown competition' answer."
        slug = (body or {}).get('competitionName', '')
        if slug not in self.competitions:
            raise _Error(self.unknown_status, f"Competition '{slug}' not found.")
        return slug

    def _rpc(self, rpc, body, auth):
        "Answer one API call: returns (status, json_dict) or (status, None, headers) for a redirect."
        service, _, method = rpc.partition('/')
        # The token/OAuth endpoints authenticate by what is in the body, not by the header.
        if rpc == 'security.OAuthService/IntrospectToken':
            token = body.get('token', '')
            if token in self.access_tokens:
                return 200, dict(active=True, username=self.access_tokens[token], clientId='kagglesdk',
                                 scope='resources.admin:*')
            return 200, dict(active=False)                     # RFC 7662: an unknown token is just inactive
        if rpc == 'security.OAuthService/ExchangeOAuthToken':
            if body.get('code') != self.oauth_code: raise _Error(400, 'Invalid authorization code.')
            return 200, dict(accessToken=self._issue_token(), refreshToken=self.refresh_token, tokenType='Bearer',
                             expiresIn=43200, username=self.username, userId=1, scope='resources.admin:*')
        if rpc == 'users.AccountService/GenerateAccessToken':
            if body.get('refreshToken') != self.refresh_token: raise _Error(401, 'Invalid refresh token.')
            return 200, dict(token=self._issue_token(), expiresIn=43200, userName=self.username, userId=1)

        if not self._authorized(auth): raise _Error(401, 'Unauthenticated')
        if service != COMPETITIONS: raise _Error(404, f'The stub does not implement {rpc}.')

        if method == 'DownloadDataFiles':
            slug = self._competition(body)
            # Like the real service: a redirect to a blob URL whose last path part names the file.
            return 302, None, {'Location': f'http://localhost{BLOB_PREFIX}{slug}/{slug}.zip'}
        if method == 'StartSubmissionUpload':
            slug = self._competition(body)
            token = f'stub-blob-{next(self._ids)}'
            self.uploads[token] = dict(competition=slug, file_name=body.get('fileName', ''), content=None,
                                       content_length=body.get('contentLength', 0))
            return 200, dict(token=token, createUrl=f'http://localhost{UPLOAD_PATH}?uploadType=resumable&upload_id={token}')
        if method == 'CreateSubmission':
            slug = self._competition(body)
            if self.refuse_submission: raise _Error(400, self.refuse_submission)
            up = self.uploads.get(body.get('blobFileTokens', ''))
            if up is None or up['content'] is None or up['competition'] != slug:
                raise _Error(400, 'No uploaded file for that blob token.')
            sub = Submission(ref=100000 + next(self._ids), competition=slug, file_name=up['file_name'],
                             content=up['content'], description=body.get('submissionDescription'),
                             date=datetime.now(timezone.utc).replace(tzinfo=None), public_score=self.score,
                             error=self.scoring_error)
            self.submissions.append(sub)
            return 200, dict(message=f'Successfully submitted to {self.competitions[slug]}', ref=sub.ref)
        if method == 'GetSubmissionLimits':
            slug = self._competition(body)
            n = sum(s.competition == slug for s in self.submissions)
            return 200, dict(numToday=n, numTotal=n, numAllowedNow=max(0, self.daily_limit - n))
        if method == 'ListSubmissions':
            slug = self._competition(body)
            subs = [s.to_api() for s in reversed(self.submissions) if s.competition == slug]
            return 200, dict(submissions=subs)
        if method == 'GetSubmission':
            for s in self.submissions:
                if s.ref == int(body.get('ref', 0)): return 200, s.to_api()
            raise _Error(404, 'Submission not found.')
        raise _Error(404, f'The stub does not implement {rpc}.')


class _Server(ThreadingHTTPServer):
    daemon_threads = True          # a stuck client cannot keep the process alive
    request_queue_size = 64        # several CLIs may connect at once; the default backlog of 5 drops SYNs


class _Error(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


class _Handler(BaseHTTPRequestHandler):
    "Serves both proxy-style requests (absolute URL on the request line) and direct ones."
    stub: KaggleStub
    server_version = 'KaggleStub/1'

    def log_message(self, *args): pass            # keep pytest output clean; `stub.calls` is the log

    def _target(self):
        "(host, path, query) the client meant, whether it sent an absolute URL (via proxy) or a path."
        if self.command == 'CONNECT': return self.path, '', ''          # "host:port" of an https tunnel
        u = urlsplit(self.path)
        host = u.netloc or self.headers.get('Host', '')
        return host, u.path, u.query

    def _auth(self):
        h = self.headers.get('Authorization')
        if not h: return None
        scheme, _, value = h.partition(' ')
        if scheme.lower() == 'bearer': return ('bearer', value.strip())
        if scheme.lower() == 'basic':
            try: return ('basic', base64.b64decode(value.strip()).decode('utf-8'))
            except Exception: return ('other', h)
        return ('other', h)

    def _read_body(self):
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''): pass   # trailers
                    return b''.join(chunks)
                total += size
                if total > MAX_BODY: raise _Error(413, 'Body too large.')
                chunks.append(self.rfile.read(size)); self.rfile.readline()
        n = int(self.headers.get('Content-Length') or 0)
        if n > MAX_BODY: raise _Error(413, 'Body too large.')
        return self.rfile.read(n) if n else b''

    def _send(self, status, body=b'', ctype='application/json', headers=None):
        self.send_response(status)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        if self.stub.api_version: self.send_header('X-Kaggle-ApiVersion', self.stub.api_version)
        for k, v in (headers or {}).items(): self.send_header(k, v)
        self.end_headers()
        if self.command != 'HEAD': self.wfile.write(body)

    def _json(self, status, obj, headers=None):
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _handle(self):
        stub = self.stub
        host, path, query = self._target()
        call = Call(self.command, host, path, None, None, self._auth())
        with stub._lock:
            stub.calls.append(call)
            over = len(stub.calls) > stub.max_requests
        try:
            if over: raise _Error(500, 'The stub got more requests than max_requests.')
            if self.command == 'CONNECT' or host.split(':')[0] not in LOCAL_HOSTS:
                raise _Error(502, f'The stub only serves localhost, not {host}.')
            raw = self._read_body() if self.command in ('POST', 'PUT') else b''
            if path.startswith(API_PREFIX) and self.command == 'POST':
                call.rpc = path[len(API_PREFIX):]
                try: call.body = json.loads(raw or b'{}')
                except ValueError: raise _Error(400, 'Body is not JSON.')
                with stub._lock: answer = stub._rpc(call.rpc, call.body, call.auth)
                call.status = answer[0]
                if answer[1] is None: self._send(answer[0], b'', headers=answer[2])   # redirect
                else: self._json(answer[0], answer[1])
            elif path.startswith(BLOB_PREFIX) and self.command in ('GET', 'HEAD'):
                slug = path[len(BLOB_PREFIX):].split('/')[0]
                if slug not in stub.competitions: raise _Error(404, 'No such blob.')
                headers = {'Accept-Ranges': 'none'}
                if stub.last_modified is not None:
                    headers['Last-Modified'] = time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime(stub.last_modified))
                call.status = 200
                self._send(200, stub.data_zip, ctype='application/zip', headers=headers)
            elif path == UPLOAD_PATH and self.command == 'PUT':
                call.body = raw
                token = dict(p.split('=', 1) for p in query.split('&') if '=' in p).get('upload_id', '')
                with stub._lock:
                    up = stub.uploads.get(token)
                    if up is None: raise _Error(404, 'Unknown upload.')
                    if stub.refuse_upload: raise _Error(403, 'Upload refused.')
                    up['content'] = raw
                call.status = 200
                self._json(200, dict(name=up['file_name'], size=str(len(raw))))
            else:
                raise _Error(404, f'No route for {self.command} {path}.')
        except _Error as e:
            call.status = e.status
            self._json(e.status, dict(code=e.status, message=e.message))

    do_GET = do_POST = do_PUT = do_HEAD = do_CONNECT = do_DELETE = do_PATCH = _handle
