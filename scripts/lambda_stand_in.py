"""A local Lambda for measurements: the Runtime API, moto with the tables and the dev key, and
an optional TLS front for moto. Used by scripts/cold-start.py and scripts/peak-rss.py.

Python standard library only, plus `cryptography` (installed with moto) for the TLS front's
throw-away certificate. Timestamps are time.perf_counter_ns(), one monotonic clock for all
threads.
"""

import datetime
import http.client
import http.server
import json
import os
import queue
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
SEED_EVENT = ROOT / "events" / "http-api" / "create-seed-example.201.json"
FUNCTION = ROOT / "target" / "release" / "create-webhook"
ADMIN = ROOT / "target" / "debug" / "webhooks-admin"
API = "/2018-06-01/runtime"


def read_local_env():
    """local.env as a dict (KEY=VALUE lines, # comments)."""
    values = {}
    for line in (ROOT / "local.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after {seconds} s")


def build(release_function=True):
    """Builds the binaries the measurements use (a no-op when they are up to date)."""
    if release_function:
        subprocess.run(
            ["cargo", "build", "--release", "--quiet", "--bin", "create-webhook"],
            cwd=ROOT,
            check=True,
        )
    subprocess.run(["cargo", "build", "--quiet", "--bin", "webhooks-admin"], cwd=ROOT, check=True)


class Moto:
    """moto (scripts/moto_server.py) on a free port, with local.env's tables, pepper and the
    development write key (DEV_API_TOKEN), created by webhooks-admin as `make run` does."""

    def __init__(self, log_dir):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(Path(log_dir) / "measure-moto.log", "wb")
        self.process = subprocess.Popen(
            [
                str(PYTHON),
                str(ROOT / "scripts" / "moto_server.py"),
                "-H",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port)
            env = dict(os.environ, AWS_ENDPOINT_URL=self.endpoint)
            local = read_local_env()

            def admin(*args):
                subprocess.run(
                    [str(ADMIN), "--env-file", str(ROOT / "local.env"), *args],
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                )

            admin("setup")
            admin(
                "keys",
                "create",
                "--name",
                "measurements",
                "--scope",
                "write:webhooks",
                "--company",
                local["DEV_COMPANY_ID"],
                "--token",
                local["DEV_API_TOKEN"],
            )
        except BaseException:
            self.stop()
            raise

    def stop(self):
        self.process.terminate()
        self.process.wait()
        self.log.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, and each answer in one write: no Nagle / delayed-ACK stalls (40 ms each).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:  # the last chunk: trailers up to an empty line
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _answer(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n" + body)
        self.flush_headers()

    def do_GET(self):
        now = time.perf_counter_ns()
        api = self.server.api
        if self.path != f"{API}/invocation/next":
            return self._answer(404)
        api.note_next(now)
        item = api.pending.get()
        if item is None:  # stopping
            return self._answer(500)
        request_id, event = item
        api.delivered[request_id] = time.perf_counter_ns()
        self._answer(
            200,
            event,
            [
                ("Content-Type", "application/json"),
                ("Lambda-Runtime-Aws-Request-Id", request_id),
                ("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 28_000)),
                (
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:eu-central-1:123456789012:function:create-webhook",
                ),
                ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0"),
            ],
        )

    def do_POST(self):
        now = time.perf_counter_ns()
        api = self.server.api
        body = self._body()
        parts = self.path[len(API) :].strip("/").split("/")
        if parts[:1] == ["invocation"] and len(parts) == 3 and parts[2] in ("response", "error"):
            self._answer(202, b'{"status":"OK"}', [("Content-Type", "application/json")])
            api.finish(parts[1], now, parts[2], body)
        elif parts == ["init", "error"]:
            self._answer(202, b'{"status":"OK"}', [("Content-Type", "application/json")])
            api.finish("init", now, "init-error", body)
        else:
            self._answer(404)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A killed function leaves its connections behind; nothing to report.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class RuntimeApi:
    """The Lambda Runtime API (2018-06-01) for one execution environment: hands out queued
    events on `next` and records when the first `next` came (the function is ready) and when
    each response came back."""

    def __init__(self):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.api = self
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.pending = queue.Queue()
        self.first_next_ns = None
        self.ready = threading.Event()
        self.delivered = {}
        self.results = {}
        self.done = threading.Condition()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def note_next(self, now):
        if self.first_next_ns is None:
            self.first_next_ns = now
            self.ready.set()

    def finish(self, request_id, now, kind, body):
        with self.done:
            self.results[request_id] = (now, kind, body)
            self.done.notify_all()

    def enqueue(self, event):
        request_id = str(uuid.uuid4())
        self.pending.put((request_id, event))
        return request_id

    def wait(self, request_id, seconds=30):
        """(time the answer came, "response"/"error", body) of an invocation."""
        with self.done:
            ok = self.done.wait_for(
                lambda: request_id in self.results or "init" in self.results, seconds
            )
        if not ok:
            raise SystemExit(f"no answer for invocation {request_id} within {seconds} s")
        if "init" in self.results:
            raise SystemExit(f"the function failed to initialise: {self.results['init'][2]!r}")
        return self.results[request_id]

    def stop(self):
        for _ in range(4):
            self.pending.put(None)
        self.server.shutdown()
        self.server.server_close()


def seed_event(token):
    """The seed event (events/http-api/create-seed-example.201.json) with `token`."""
    event = json.loads(SEED_EVENT.read_text())
    event["headers"]["authorization"] = f"Bearer {token}"
    return json.dumps(event).encode()


def status_of(answer):
    """The statusCode of the API Gateway response a function posted."""
    _, kind, body = answer
    if kind != "response":
        return f"{kind}: {body[:200]!r}"
    return json.loads(body).get("statusCode")


def function_env(runtime_api, endpoints, extra=None):
    """What Lambda gives a function (the variables it documents; no HOME), plus local.env's
    settings pointing at the emulator. `endpoints` is AWS_ENDPOINT_URL* variables."""
    local = read_local_env()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": "create-webhook",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/create-webhook",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local/measurement",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
        "AWS_DEFAULT_REGION": local["AWS_REGION"],
        "_HANDLER": "bootstrap",
        # Every webhook of every start counts against the one dev key.
        "MAX_WEBHOOKS_PER_API_KEY": "1000000",
    }
    for key in (
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "WEBHOOKS_TABLE_NAME",
        "API_KEYS_TABLE_NAME",
        "PEPPER_SECRET_ID",
        "WEBHOOK_SECRET_PREFIX",
        "ALLOW_LOCALHOST_URLS",
        "API_KEY_CACHE_TTL_SECONDS",
        "LOG_LEVEL",
    ):
        env[key] = local[key]
    env.update(endpoints)
    env.update(extra or {})
    return env


def cpu_ns(pid):
    """CPU time the process has used so far, all threads (/proc/PID/task/*/schedstat), in ns."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass
    except FileNotFoundError:
        return None
    return total


def context_switches(pid):
    """Voluntary + involuntary context switches of all the process's threads so far."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def proc_status(pid, *fields):
    """Values (kB) of /proc/PID/status fields such as VmHWM and VmRSS."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in fields:
                values[name] = int(rest.split()[0])
    return values


class TlsFront:
    """HTTPS with HTTP/1.1 keep-alive in front of moto (which speaks plain HTTP/1.0), so that the
    function's SDK clients do real TLS handshakes and reuse their connections, as against AWS.
    Two listeners, one per service, so that DynamoDB and Secrets Manager get a connection each
    (as they do against their own AWS endpoints). The throw-away root is appended to the system's
    bundle (or `base_roots`), so that the function still loads a realistic set of roots."""

    def __init__(self, moto_port, work_dir, base_roots=None):
        work_dir = Path(work_dir)
        chain, key, root = _certificates()
        (work_dir / "front.crt").write_bytes(chain)
        (work_dir / "front.key").write_bytes(key)
        system = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
        self.ca_file = work_dir / "roots.pem"
        with open(self.ca_file, "wb") as out:
            with open(base_roots or system, "rb") as roots:
                shutil.copyfileobj(roots, out)
            out.write(b"\n" + root)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(work_dir / "front.crt", work_dir / "front.key")
        self.handshakes = 0
        self.servers = []
        for _ in range(2):
            server = _Server(("127.0.0.1", 0), _make_forwarder(moto_port))
            server.socket = context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
            server.front = self
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)

    def endpoints(self):
        dynamodb, secrets = (f"https://localhost:{s.server_address[1]}" for s in self.servers)
        return {
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": secrets,
            "SSL_CERT_FILE": str(self.ca_file),
        }

    def stop(self):
        for server in self.servers:
            server.shutdown()
            server.server_close()


def _certificates():
    """A chain shaped like the AWS endpoints' (RSA 2048 leaf for `localhost`, an intermediate, a
    root): (leaf + intermediate PEM, leaf key PEM, root PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def issue(subject, key, issuer, issuer_key, ca):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost")]), False
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        return builder.sign(issuer_key, hashes.SHA256())

    def new_key():
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    root_key, intermediate_key, leaf_key = new_key(), new_key(), new_key()
    root = issue("Measurement Root CA", root_key, "Measurement Root CA", root_key, True)
    intermediate = issue(
        "Measurement RSA 2048", intermediate_key, "Measurement Root CA", root_key, True
    )
    leaf = issue("localhost", leaf_key, "Measurement RSA 2048", intermediate_key, False)
    pem = serialization.Encoding.PEM
    return (
        leaf.public_bytes(pem) + intermediate.public_bytes(pem),
        leaf_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        root.public_bytes(pem),
    )


def _make_forwarder(moto_port):
    hop_by_hop = {"connection", "keep-alive", "transfer-encoding", "content-length"}

    class Forwarder(_Handler):
        def setup(self):
            self.request.do_handshake()
            self.server.front.handshakes += 1
            super().setup()

        def _forward(self):
            body = self._body()
            upstream = http.client.HTTPConnection("127.0.0.1", moto_port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in hop_by_hop}
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
            data = reply.read()
            upstream.close()
            self._answer(
                reply.status,
                data,
                [(k, v) for k, v in reply.getheaders() if k.lower() not in hop_by_hop],
            )

        do_GET = do_POST = do_PUT = do_DELETE = _forward

    return Forwarder


class Function:
    """One execution environment: the function's process and its Runtime API."""

    def __init__(self, binary, endpoints, log, extra_env=None, first_event=None):
        self.api = RuntimeApi()
        env = function_env(self.api.address, endpoints, extra_env)
        # A cold start is triggered by an invocation: it waits before the process exists.
        self.first = self.api.enqueue(first_event) if first_event is not None else None
        self.started_ns = time.perf_counter_ns()
        self.process = subprocess.Popen(
            [str(binary)], env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )

    def wait_ready(self, seconds=30):
        if not self.api.ready.wait(seconds):
            raise SystemExit(
                f"the function did not ask for an event within {seconds} s "
                f"(exit code {self.process.poll()})"
            )
        return self.api.first_next_ns

    def invoke(self, event):
        """Sends one event; returns (ns from enqueue to answer, answer)."""
        sent = time.perf_counter_ns()
        answer = self.api.wait(self.api.enqueue(event))
        return answer[0] - sent, answer

    def stop(self):
        self.process.kill()
        self.process.wait()
        self.api.stop()


def stats(values):
    """min, median, p90, max of a list (nearest-rank percentiles)."""
    ordered = sorted(values)
    n = len(ordered)

    def rank(p):
        return ordered[min(n - 1, max(0, -(-p * n // 100) - 1))]

    median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
    return {"min": ordered[0], "median": median, "p90": rank(90), "max": ordered[-1], "n": n}


def machine():
    """One line about the machine the figures come from."""
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs, {model}, Linux {os.uname().release}, "
        f"load average {load:.2f} at start"
    )


def log_dir():
    path = ROOT / ".run"
    path.mkdir(exist_ok=True)
    return path


def temp_dir():
    return Path(tempfile.mkdtemp(prefix="instaview-perf-"))


if __name__ == "__main__":
    sys.exit("a module for scripts/cold-start.py and scripts/peak-rss.py")
