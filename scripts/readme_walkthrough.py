#!/usr/bin/env python3
"""The README's walk-through as a test (issue 15.1): runs every command the README shows in a
`walkthrough` block, against the stack as `make run` starts it, and checks each answer.

Run through scripts/local-stack.sh with the pipeline (see `make readme-check`):
  PIPELINE=1 scripts/local-stack.sh .venv/bin/python scripts/readme_walkthrough.py [README.md]

What is run: every fenced block whose info string is `sh walkthrough` (GitHub shows it as `sh`),
in the README's order, each as one `bash -c` in the repository's root, with the stack's
environment. Options after `walkthrough`:
  background   the block keeps running (a receiver); it is stopped at the end
  expect=NNN   the HTTP status the block's `curl -i` must get (without it: a 2xx)
  undelivered  (events publish) the event is for a receiver that is down: not waited for
A new block is picked up as it is; what is checked follows from its command:
  curl -i -X POST   .../webhooks             201, masked custom headers, a signing secret;
                                             its id becomes <id>, its secret the receiver's key
  curl -i           .../webhooks             200, the list holds <id>
  curl -i           .../webhooks/<id>        200, that webhook
  curl -i -X PATCH  .../webhooks/<id>        200, every field sent now has the value sent
  curl -i -X POST   .../webhooks/<id>/rotate-secret   200, a new secret
  curl -i -X POST   .../webhooks/<id>/test   200, success, httpStatus 200, the receiver got a
                                             ping signed with the webhook's secret
  curl -i -X DELETE .../webhooks/<id>        204, then GET answers 404
  curl -i           .../webhooks/<id>/deliveries[?status=S]   200, only <id>'s deliveries;
                                             with a status, re-run until one has it (120 s);
                                             the first one's id becomes <deliveryId>
  curl -i           .../deliveries/<deliveryId>   200, that delivery, its attempts, its payload
  curl -i -X POST   .../webhooks/<id>/recover      202, `queued` null; then the receiver gets
                                             the last `undelivered` event, signed (120 s)
  webhooks-admin ... events publish          the receiver gets the event, its data as sent,
                                             signed with the webhook's secret (within 120 s)
  anything else                              exit status 0 (and the status rule above)
Placeholders: <id> (the last webhook created), <deliveryId> (the first of the last list of
deliveries). Ports: 127.0.0.1:9000 is the stack's API_PORT;
other 127.0.0.1:PORT and `dev_receiver.py PORT` get a free port each (the same for the same
PORT), so that a running `make run` or receiver never clashes with the check.

Every block runs even after a failure; the exit status is 1 when any check failed.
"""

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time

# No __pycache__ in scripts/: cargo lambda watch would take it for a change and reload.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dev_receiver import verify  # noqa: E402

FENCE = re.compile(
    r"^```sh walkthrough(?P<options>[^\n]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL
)
README_API_PORT = "9000"
WEBHOOK_PATH = re.compile(r"/webhooks(?:/(?P<id>[^/?\s]+)(?:/(?P<action>[a-z-]+))?)?/?$")
DELIVERY_PATH = re.compile(r"/webhooks/(?P<id>[^/?\s]+)/deliveries/(?P<delivery>[^/?\s]+)/?$")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def blocks(readme):
    """(line number, options, command) of every walkthrough block."""
    for match in FENCE.finditer(readme):
        options = match.group("options").split()
        line = readme.count("\n", 0, match.start()) + 1
        yield line, options, match.group("body").strip()


def parse_curl(command):
    """The method and URL path of a `curl` command, and its `-d` body (parsed), or None."""
    try:
        words = shlex.split(command.replace("\\\n", " "))
    except ValueError:
        return None
    if not words or words[0] != "curl":
        return None
    method, path, data = "GET", None, None
    for i, word in enumerate(words):
        if word in ("-X", "--request"):
            method = words[i + 1]
        elif word in ("-d", "--data", "--data-raw"):
            try:
                data = json.loads(words[i + 1])
            except ValueError:  # built by the shell (`$(date ...)`): not known here
                data = {}
        elif word.startswith("http://"):
            path = "/" + word.split("/", 3)[3] if word.count("/") >= 3 else "/"
    if data is not None and method == "GET":
        method = "POST"
    return method, path, data


def parse_http(output):
    """Status and JSON body of `curl -i` output (the last response when curl shows several)."""
    text = output.replace("\r\n", "\n")
    starts = [m.start() for m in re.finditer(r"^HTTP/[\d.]+ \d{3}", text, re.MULTILINE)]
    if not starts:
        return None, None
    response = text[starts[-1] :]
    status = int(response.split()[1])
    _, _, body = response.partition("\n\n")
    try:
        return status, json.loads(body) if body.strip() else None
    except ValueError:
        return status, body


class Walkthrough:
    def __init__(self, readme_path):
        self.readme_path = readme_path
        self.env = dict(os.environ)
        self.api = f"http://127.0.0.1:{self.env['API_PORT']}"
        self.token = self.env["DEV_API_TOKEN"]
        self.ports = {}
        self.values = {}  # placeholders: id
        self.secrets = {}  # webhook id -> its signing secrets (current last)
        self.receivers = []  # (process, output path)
        self.failures = []
        self.passed = 0

    # ------------------------------------------------------------ helpers
    def substitute(self, command):
        def port(match):
            readme_port = match.group(2)
            if readme_port == README_API_PORT:
                return match.group(1) + self.env["API_PORT"]
            self.ports.setdefault(readme_port, str(free_port()))
            return match.group(1) + self.ports[readme_port]

        command = re.sub(r"(127\.0\.0\.1:)(\d+)", port, command)
        command = re.sub(r"(dev_receiver\.py )(\d+)", port, command)
        missing = []

        def placeholder(match):
            name = match.group(1)
            if name in self.values:
                return self.values[name]
            missing.append(name)
            return match.group(0)

        command = re.sub(r"<([a-zA-Z][a-zA-Z0-9_-]*)>", placeholder, command)
        return command, missing

    def received(self):
        """Every request the background receivers printed (their JSON lines)."""
        requests = []
        for _, path in self.receivers:
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        requests.append(json.loads(line))
                    except ValueError:
                        pass
        return requests

    def wait_for_request(self, matches, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = [r for r in self.received() if matches(r)]
            if found:
                return found
            time.sleep(0.5)
        return []

    def signed_by_webhook(self, request, webhook_id):
        return any(
            verify(secret, request["headers"], request["body"].encode())
            for secret in self.secrets.get(webhook_id, [])
        )

    def get(self, path):
        out = subprocess.run(
            ["curl", "-s", "-i", self.api + path, "-H", f"Authorization: Bearer {self.token}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return parse_http(out.stdout)

    # ------------------------------------------------------------ checks per command
    def check_curl(self, method, path, data, status, body, expect, problems):
        path, _, query = (path or "").partition("?")
        if expect is not None:
            status_ok = status == expect
        else:
            status_ok = bool(status and 200 <= status < 300)
        if status_ok and self.check_delivery_log(method, path, query, status, body, problems):
            return
        match = WEBHOOK_PATH.search(path or "")
        if expect is not None and status != expect:
            problems.append(f"HTTP {status}, the README expects {expect}: {body}")
            return
        if expect is None and not (status and 200 <= status < 300):
            problems.append(f"HTTP {status}: {body}")
            return
        if not match or status >= 300:
            return
        data_out = body.get("data") if isinstance(body, dict) else None
        if method != "DELETE" and not isinstance(data_out, dict):
            problems.append(f"no `data` object in the answer: {body}")
            return
        webhook_id, action = match.group("id"), match.group("action")
        if method == "POST" and webhook_id is None:
            if not isinstance(data_out, dict) or not re.fullmatch(
                r"[0-9a-f]{64}", str(data_out.get("signingSecret"))
            ):
                problems.append(f"the create answered no webhook with a signing secret: {body}")
                return
            for sent in (data or {}).get("headers", []):
                if sent.get("value") and sent["value"] in json.dumps(body):
                    problems.append(f"the answer shows custom header {sent['name']}'s value")
            if not all(h.get("isMasked") for h in data_out.get("headers", [])):
                problems.append("custom headers are not masked in the answer")
            self.values["id"] = data_out["id"]
            self.secrets[data_out["id"]] = [data_out["signingSecret"]]
        elif method == "GET" and webhook_id is None:
            # `data: {"data": [view, ...], "total": N}` (WEBHOOKS-API.md)
            views = (data_out or {}).get("data", []) if isinstance(data_out, dict) else []
            ids = [w.get("id") for w in views if isinstance(w, dict)]
            if self.values.get("id") not in ids:
                problems.append(f"the list does not hold <id> {self.values.get('id')}: {ids}")
        elif method == "GET" and action is None:
            if not isinstance(data_out, dict) or data_out.get("id") != webhook_id:
                problems.append(f"GET answered another webhook: {body}")
        elif method == "PATCH":
            for key, value in (data or {}).items():
                if key != "headers" and data_out.get(key) != value:
                    problems.append(f"after PATCH, {key} is {data_out.get(key)!r}, not {value!r}")
        elif method == "POST" and action == "rotate-secret":
            secret = (data_out or {}).get("signingSecret")
            if not secret or secret in self.secrets.get(webhook_id, []):
                problems.append(f"rotate-secret answered no new secret: {body}")
            else:
                self.secrets.setdefault(webhook_id, []).append(secret)
        elif method == "POST" and action == "test":
            if not (data_out or {}).get("success") or data_out.get("httpStatus") != 200:
                problems.append(f"the test ping failed: {data_out}")
            pings = self.wait_for_request(
                lambda r: json.loads(r["body"]).get("event") == "ping", 30
            )
            if not pings:
                problems.append("the receiver never got the test ping")
            elif not any(self.signed_by_webhook(r, webhook_id) for r in pings):
                problems.append("the test ping's signature does not verify with the secret")
        elif method == "DELETE":
            after, _ = self.get(f"/webhooks/{webhook_id}")
            if after != 404:
                problems.append(f"after DELETE, GET answers {after}, not 404")

    def check_delivery_log(self, method, path, query, status, body, problems):
        """The delivery log's routes; True when `path` is one of them (checked here)."""
        data_out = body.get("data") if isinstance(body, dict) else None
        one = DELIVERY_PATH.search(path)
        match = WEBHOOK_PATH.search(path)
        action = match.group("action") if match else None
        if one and method == "GET":
            delivery = data_out or {}
            if delivery.get("id") != one.group("delivery"):
                problems.append(f"GET answered another delivery: {body}")
            elif not delivery.get("attempts") or not isinstance(delivery.get("payload"), dict):
                problems.append(f"the delivery shows no attempts or no payload: {delivery}")
            elif delivery["payload"].get("deliveryId") != delivery["id"]:
                problems.append("the payload's deliveryId is not the delivery's id")
            return True
        if match and action == "deliveries" and method == "GET":
            items = (data_out or {}).get("data", []) if isinstance(data_out, dict) else []
            webhook_id = match.group("id")
            if any(item.get("webhookId") != webhook_id for item in items):
                problems.append(f"the list holds another webhook's deliveries: {items}")
            wanted = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("status")
            if wanted and not any(item.get("status") == wanted for item in items):
                problems.append(f"no delivery is {wanted}: {items}")
            elif items:
                self.values["deliveryId"] = items[0]["id"]
            return True
        if match and action == "recover" and method == "POST":
            if not isinstance(data_out, dict) or data_out.get("queued", "absent") is not None:
                problems.append(f"recover answered no window with queued null: {body}")
                return True
            event, sent = self.values.get("undelivered", (None, None))
            webhook_id = match.group("id")
            # Other webhooks of the company got the event when it was published: only a copy
            # signed with this webhook's secret is the recovered one.
            arrived = self.wait_for_request(
                lambda r: (
                    (lambda b: b.get("event") == event and b.get("data") == sent)(
                        json.loads(r["body"])
                    )
                    and self.signed_by_webhook(r, webhook_id)
                ),
                120,
            )
            if not arrived:
                problems.append(
                    f"recover did not bring {event} {sent} to the receiver, signed with the "
                    "webhook's secret (120 s)"
                )
            return True
        return False

    def check_publish(self, command, output, problems, undelivered=False):
        words = shlex.split(command.replace("\\\n", " "))
        data = json.loads(words[words.index("--data") + 1])
        event = words[words.index("--event") + 1]
        if not re.search(r"published \S+", output):
            problems.append(f"publish printed no event id: {output.strip()}")
        if undelivered:
            self.values["undelivered"] = (event, data)
            return
        webhook_id = self.values.get("id")
        arrived = self.wait_for_request(
            lambda r: (lambda b: b.get("event") == event and b.get("data") == data)(
                json.loads(r["body"])
            ),
            120,
        )
        if not arrived:
            problems.append(f"the event {event} {data} never reached the receiver (120 s)")
        elif not any(self.signed_by_webhook(r, webhook_id) for r in arrived):
            problems.append("the event arrived with a signature that does not verify")

    # ------------------------------------------------------------ one block
    def run_block(self, line, options, command):
        command, missing = self.substitute(command)
        first = command.splitlines()[0][:90]
        problems = []
        if missing:
            problems.append(f"uses <{'>, <'.join(missing)}>, which no earlier block set")
        elif "background" in options:
            path = os.path.join(
                self.env.get("RUN_DIR", ".run"), f"readme-{self.env['API_PORT']}-block-{line}.out"
            )
            output = open(path, "w", encoding="utf-8")
            process = subprocess.Popen(
                ["bash", "-c", command],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
            self.receivers.append((process, path))
            ports = [p for p in self.ports.values() if p in command]
            deadline = time.monotonic() + 30
            while ports and time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", int(ports[0])), 1).close()
                    break
                except OSError:
                    time.sleep(0.3)
            else:
                if ports:
                    problems.append(f"nothing listens on {ports[0]} after 30 s")
            if process.poll() is not None:
                problems.append(f"exited at once ({process.returncode})")
        else:
            expect = next(
                (int(o.split("=", 1)[1]) for o in options if o.startswith("expect=")), None
            )
            started = time.monotonic()
            curl = parse_curl(command)
            # A list of deliveries with a status is what the pipeline will reach, not what it
            # has reached: the block is run again until it holds one (as a person would).
            again = curl and "/deliveries?" in (curl[1] or "") and "status=" in curl[1]
            while True:
                done = subprocess.run(
                    ["bash", "-c", "set -euo pipefail\n" + command],
                    capture_output=True,
                    text=True,
                    env=self.env,
                    timeout=300,
                )
                problems = []
                if done.returncode != 0:
                    problems.append(f"exit status {done.returncode}: {done.stderr.strip()[-500:]}")
                elif curl:
                    status, body = parse_http(done.stdout)
                    self.check_curl(*curl, status, body, expect, problems)
                elif "events publish" in command:
                    self.check_publish(command, done.stdout, problems, "undelivered" in options)
                if not (again and problems and time.monotonic() - started < 120):
                    break
                time.sleep(2)
            seconds = time.monotonic() - started
            first += f" ({seconds:.1f} s)"
        where = f"{self.readme_path}:{line}"
        if problems:
            self.failures.append((where, first, problems))
            print(f"FAIL {where}: {first}\n     " + "\n     ".join(problems), flush=True)
        else:
            self.passed += 1
            print(f"ok   {where}: {first}", flush=True)

    def run(self):
        with open(self.readme_path, encoding="utf-8") as handle:
            found = list(blocks(handle.read()))
        if not found:
            print(f"error: no ```sh walkthrough blocks in {self.readme_path}", file=sys.stderr)
            return 1
        print(f"==> {len(found)} walkthrough blocks in {self.readme_path}", flush=True)
        try:
            for line, options, command in found:
                self.run_block(line, options, command)
        finally:
            for process, _ in self.receivers:
                if process.poll() is None:
                    os.killpg(process.pid, 15)
                    process.wait()
        print(f"==> {self.passed} of {len(found)} blocks passed", flush=True)
        return 1 if self.failures else 0


if __name__ == "__main__":
    sys.exit(Walkthrough(sys.argv[1] if len(sys.argv) > 1 else "README.md").run())
