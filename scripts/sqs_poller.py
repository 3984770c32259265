#!/usr/bin/env python3
"""Stands in for Lambda's SQS event source mappings on the local emulator (moto), and keeps the
pipeline's functions alive.

Usage: .venv/bin/python scripts/sqs_poller.py INVOKE_BASE_URL [--log PATH -- EMULATOR CMD...]
  e.g. scripts/sqs_poller.py http://127.0.0.1:9001 --log .run/pipeline-9001.log -- \\
         .venv/bin/cargo-lambda lambda watch -A 127.0.0.1 -P 9001 ...

Creates the pipeline's queues (events and deliveries, each with a dead-letter queue and a
redrive after 5 receives, as template.yaml does) where missing, then, one thread per queue:
polls up to 10 messages (short polls every half second, not long polls: scripts/moto_server.py
serves one request at a time, so a long poll would hold every other call to the emulator), hands
them to the function as Lambda would (an SQS event, through the Lambda Invoke API that `cargo
lambda watch` serves: POST /2015-03-31/functions/<name>/invocations), and honours the answer's
batchItemFailures: the messages that succeeded are deleted, the failed ones are left to come
back after the visibility timeout (and to the dead-letter queue after 5 receives). A failed
invocation deletes nothing. Each function is invoked by its own thread only, so never
concurrently with itself (`cargo lambda watch` serves one invocation at a time per function).

Supervision. Given the emulator's command line (after `--`), the poller runs it (its output
copied to PATH) and restarts it, with a `PIPELINE RESTART` line on stderr (which `make run`
shows), when a function is dead:
  - a function's process is gone (Linux: no process with this emulator's Runtime API address
    in its environment), outside a reload by the emulator's file watcher;
  - the emulator reports that a function process ended ("command exited", "command killed")
    and no reload follows within RELOAD_GRACE_SECONDS: it never starts a dead function again,
    and it says "command killed code=ForceStop" both for a function killed from outside and
    for one its file watcher stops to reload;
  - an invocation fails at the transport level (connection refused or reset, `408` from the
    emulator, no answer within INVOKE_TIMEOUT_SECONDS);
  - a health check fails: a thread whose queue stayed empty for HEALTH_EVERY_SECONDS invokes
    its function with an empty batch (`{"Records": []}`, which both functions answer with no
    failures and no AWS call) and needs an answer within HEALTH_TIMEOUT_SECONDS.
After a (re)start every thread first waits for its function to answer an empty batch (up to
WARMUP_TIMEOUT_SECONDS: the first invocation may compile it) before it hands it messages.

Why (issue 15.2): `cargo lambda watch --timeout N` put its request timeout on every route,
the Runtime API's long poll `GET /runtime/invocation/next` included. A function idle for N
seconds got a `408` without `lambda-runtime-aws-request-id`, and lambda_runtime 1.5.0 panics on
that (`types.rs:176`); the emulator never restarts a function, so every later invocation waited
for the timeout and got `408`. scripts/local-stack.sh no longer passes `--timeout`; this
supervision is the safety net for any other death.

Queue URLs come from the environment (local.env): EVENTS_QUEUE_URL, EVENTS_DLQ_URL,
DELIVERIES_QUEUE_URL, DELIVERIES_DLQ_URL; the endpoint from AWS_ENDPOINT_URL.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import boto3

# deliver's own budget under cargo lambda watch (DELIVER_FALLBACK_TIMEOUT in
# src/time_budget.rs): its attempts end by then, its recording a few seconds later.
FUNCTION_BUDGET_SECONDS = 60
# An invocation with no answer by then is stuck: its function is dead.
INVOKE_TIMEOUT_SECONDS = FUNCTION_BUDGET_SECONDS + 30
# Longer than any invocation, so that a batch still in flight never becomes visible again (on
# AWS: 6 x the function's timeout). Failed messages come back after it.
VISIBILITY_SECONDS = INVOKE_TIMEOUT_SECONDS + 30
MAX_RECEIVES = 5
IDLE_SECONDS = 0.5
# Each check is an invocation (deliver logs a line for it): not too often.
HEALTH_EVERY_SECONDS = 30
# An empty batch needs no AWS call: generous, so that a loaded machine is not taken for a death.
HEALTH_TIMEOUT_SECONDS = 60
# The first invocation after a (re)start runs `cargo run`, which may have to compile.
WARMUP_TIMEOUT_SECONDS = 600
# What the emulator prints when a function process ends. (A panic inside a handler is caught
# by lambda_runtime and answered as a function error; a fatal one ends the process, so it is
# followed by "command exited".)
DEATH_MARKS = ("command exited", "command killed", "command ended by exception")
FUNCTIONS = ("fanout", "deliver")
# How often the function processes are looked for, and how many looks in a row must miss one.
PROCESS_CHECK_SECONDS = 2
PROCESS_MISSES = 2
# cargo's lines when the emulator's file watcher rebuilds and restarts a function.
CARGO_MARKS = ("Compiling ", "Blocking waiting", "Finished `", "Running `")
# How long after a function's end the emulator has to show that it is reloading it.
RELOAD_GRACE_SECONDS = 5


def log(message):
    # One write per line: the two threads' lines never run together.
    sys.stdout.write(f"sqs_poller: {message}\n")
    sys.stdout.flush()


def alert(message):
    """A line the user must see: on stderr, which scripts/local-stack.sh shows on the terminal
    and copies to the poller's log."""
    sys.stderr.write(f"sqs_poller: {time.strftime('%H:%M:%S')} {message}\n")
    sys.stderr.flush()


def sqs_client():
    return boto3.client(
        "sqs",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "eu-central-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
    )


def name_of(url):
    return url.rstrip("/").rsplit("/", 1)[-1]


def create_queues(sqs):
    """The queues of template.yaml, by the names in the URLs of local.env; answers their URLs."""
    urls = {}
    for queue, dlq in (
        ("EVENTS_QUEUE_URL", "EVENTS_DLQ_URL"),
        ("DELIVERIES_QUEUE_URL", "DELIVERIES_DLQ_URL"),
    ):
        dlq_url = sqs.create_queue(QueueName=name_of(os.environ[dlq]))["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        urls[queue] = sqs.create_queue(
            QueueName=name_of(os.environ[queue]),
            Attributes={
                "VisibilityTimeout": str(VISIBILITY_SECONDS),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}
                ),
            },
        )["QueueUrl"]
        urls[dlq] = dlq_url
    return urls


def lambda_event(queue_arn, messages):
    """The event Lambda hands a function for a batch of SQS messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": os.environ.get("AWS_REGION", "eu-central-1"),
            }
            for m in messages
        ]
    }


class Dead(Exception):
    """The function did not answer: it (or the emulator) is dead."""


def invoke(base_url, function, event, timeout):
    """Invokes `function`; answers the ids of the failed messages, or None if it failed as a
    whole (an error answer: then nothing is deleted). Raises Dead when there is no answer."""
    request = urllib.request.Request(
        f"{base_url}/2015-03-31/functions/{function}/invocations",
        data=json.dumps(event).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        body = error.read()[:300]
        # 408: the emulator's own request timeout (nobody took the invocation); 404/5xx
        # without a function error: the emulator could not hand it to a function.
        if error.code == 408 or b"errorType" not in body:
            raise Dead(f"HTTP {error.code} {body!r}") from error
        print(
            f"sqs_poller: {function} failed: HTTP {error.code} {body!r}",
            file=sys.stderr,
            flush=True,
        )
        return None
    except (urllib.error.URLError, OSError) as error:  # refused, reset, timed out
        raise Dead(str(getattr(error, "reason", error))) from error
    except ValueError as error:
        print(f"sqs_poller: {function} answered no JSON: {error}", file=sys.stderr, flush=True)
        return None
    if not isinstance(answer, dict) or "errorType" in answer:
        print(f"sqs_poller: {function} failed: {answer}", file=sys.stderr, flush=True)
        return None
    return {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}


def running_functions(runtime_prefix):
    """The functions that have a process whose Runtime API is `runtime_prefix` + name, or None
    where /proc cannot tell (not Linux)."""
    if not os.path.isdir("/proc/self"):
        return None
    found = set()
    wanted = f"AWS_LAMBDA_RUNTIME_API={runtime_prefix}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(wanted):
                found.add(item[len(wanted) :].decode(errors="replace"))
    return found


def warm_up(base_url, function):
    """Waits for the emulator to listen, then for `function` to answer an empty batch."""
    deadline = time.monotonic() + WARMUP_TIMEOUT_SECONDS
    while True:
        try:
            invoke(base_url, function, {"Records": []}, WARMUP_TIMEOUT_SECONDS)
            return
        except Dead as dead:
            refused = isinstance(dead.__cause__, ConnectionRefusedError) or "refused" in str(dead)
            if not refused or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class Emulator:
    """The `cargo lambda watch` serving the pipeline's functions: started, watched, restarted.
    Without a command (an emulator started elsewhere), deaths are reported, not mended."""

    def __init__(self, command, log_path, base_url):
        self.command = command
        self.runtime_prefix = f"{base_url}/.rt/"
        self.warm = set()  # functions that answered since the emulator (re)started
        self.reloading = False  # the emulator's file watcher is rebuilding a function
        self.ended = None  # (when, generation, line): the emulator said a function ended
        self.log_path = log_path
        self.lock = threading.Lock()
        self.generation = 0
        self.restarts = 0
        self.process = None
        self.stopping = False

    def start(self):
        if not self.command:
            return
        with open(self.log_path, "ab") as out:
            out.write(
                f"\n==> sqs_poller: starting the emulator (generation {self.generation})\n".encode()
            )
        # A session of its own: stopped as a group, with the function processes it runs.
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        threading.Thread(
            target=self._copy_output, args=(self.process, self.generation), daemon=True
        ).start()

    def _copy_output(self, process, generation):
        """Copies the emulator's output to its log, watching for a function's death."""
        with open(self.log_path, "ab") as out:
            for raw in process.stdout:
                out.write(raw)
                out.flush()
                line = raw.decode(errors="replace")
                # The same "command killed code=ForceStop" ends a function killed from outside
                # (SIGKILL; watchexec names the signal ForceStop) and one the file watcher
                # stops for a reload. A reload goes on at once with cargo's own lines
                # (Compiling, Blocking, Finished, Running); after a death nothing follows:
                # watch_processes decides after RELOAD_GRACE_SECONDS.
                if any(mark in line for mark in DEATH_MARKS):
                    self.ended = (time.monotonic(), generation, line.strip()[:200])
                elif any(mark in line for mark in CARGO_MARKS):
                    self.ended = None
                    self.reloading = "Running `" not in line

    def stop(self):
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass

    def restart(self, generation, reason):
        """Restarts the emulator, unless it was restarted since `generation` (both threads and
        the log watcher may see the same death)."""
        with self.lock:
            if self.stopping or generation != self.generation:
                return
            if not self.command:
                alert(f"PIPELINE DOWN: {reason}; restart make run to recover")
                self.generation += 1
                return
            self.restarts += 1
            alert(
                f"PIPELINE RESTART #{self.restarts}: {reason}; restarting cargo lambda watch "
                f"(fanout, deliver); see {self.log_path}"
            )
            self.stop()
            self.generation += 1
            self.warm = set()
            self.reloading = False
            self.ended = None
            self.start()

    def watch_processes(self):
        """Restarts the emulator when a warm function's process is gone (see the module doc)."""
        misses = {}
        while not self.stopping:
            time.sleep(PROCESS_CHECK_SECONDS)
            generation, warm = self.generation, set(self.warm)
            ended = self.ended
            if (
                ended
                and ended[1] == generation
                and time.monotonic() - ended[0] >= RELOAD_GRACE_SECONDS
            ):
                self.restart(generation, f"the emulator says: {ended[2]}, and no reload followed")
                continue
            running = running_functions(self.runtime_prefix)
            if running is None:  # not Linux: the log and the invocations tell
                continue
            for function in warm:
                gone = function not in running and not self.reloading
                misses[function] = misses.get(function, 0) + 1 if gone else 0
                if misses[function] >= PROCESS_MISSES:
                    misses.clear()
                    self.restart(generation, f"the {function} function's process is gone")
                    break

    def shutdown(self):
        with self.lock:
            self.stopping = True
            self.stop()


def poll(base_url, function, queue_url, emulator):
    sqs = sqs_client()
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    warm_generation = None
    last_answer = time.monotonic()
    while True:
        generation = emulator.generation
        if warm_generation != generation:
            # A (re)started emulator: wait for the function before handing it messages.
            try:
                warm_up(base_url, function)
            except Dead as dead:
                emulator.restart(generation, f"{function} did not come up ({dead})")
                time.sleep(1)
                continue
            warm_generation = generation
            if generation == emulator.generation:
                emulator.warm.add(function)
            last_answer = time.monotonic()
            log(f"{function} is up (emulator generation {generation})")
        try:
            messages = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                AttributeNames=["All"],
            ).get("Messages", [])
        except Exception as error:  # the emulator restarting: try again shortly
            print(
                f"sqs_poller: receive from {name_of(queue_url)} failed: {error}",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(1)
            continue
        if not messages:
            if time.monotonic() - last_answer >= HEALTH_EVERY_SECONDS:
                try:
                    invoke(base_url, function, {"Records": []}, HEALTH_TIMEOUT_SECONDS)
                    last_answer = time.monotonic()
                except Dead as dead:
                    emulator.restart(
                        generation,
                        f"health check: {function} did not answer an empty batch ({dead})",
                    )
                continue
            time.sleep(IDLE_SECONDS)
            continue
        try:
            failed = invoke(base_url, function, lambda_event(arn, messages), INVOKE_TIMEOUT_SECONDS)
        except Dead as dead:
            # Nothing is deleted: the batch comes back after the visibility timeout.
            emulator.restart(
                generation, f"invoking {function} with {len(messages)} message(s) failed ({dead})"
            )
            continue
        last_answer = time.monotonic()
        if failed is None:
            continue
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + 10])
                ],
            )
        log(f"{function}: {len(messages)} message(s), {len(failed)} failed")


def main(argv):
    args = argv[1:]
    command, log_path = [], os.devnull
    if "--" in args:
        split = args.index("--")
        args, command = args[:split], args[split + 1 :]
    if len(args) == 3 and args[1] == "--log":
        log_path = args[2]
        args = args[:1]
    if len(args) != 1 or (command and log_path == os.devnull):
        print(__doc__, file=sys.stderr)
        return 2
    base_url = args[0]
    emulator = Emulator(command, log_path, base_url)

    def on_signal(signum, _frame):
        emulator.shutdown()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        urls = create_queues(sqs_client())
        log(f"events queue {urls['EVENTS_QUEUE_URL']}; visibility timeout {VISIBILITY_SECONDS} s")
        emulator.start()
        if command:
            threading.Thread(target=emulator.watch_processes, daemon=True).start()
        threads = [
            threading.Thread(
                target=poll,
                args=(base_url, "fanout", urls["EVENTS_QUEUE_URL"], emulator),
                daemon=True,
            ),
            threading.Thread(
                target=poll,
                args=(base_url, "deliver", urls["DELIVERIES_QUEUE_URL"], emulator),
                daemon=True,
            ),
        ]
        for thread in threads:
            thread.start()
        while all(thread.is_alive() for thread in threads):
            time.sleep(1)
        alert("PIPELINE DOWN: a poller thread ended (see above)")
        return 1
    finally:
        emulator.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
