#!/usr/bin/env python3
"""Cold starts of the release binary, measured: exec → ready → first 201, N times.

Each start is a new process under a local Lambda Runtime API stand-in (scripts/lambda_stand_in.py)
with moto behind it (tables, pepper and the dev key of local.env, created by webhooks-admin).
As in a Lambda cold start, the invocation is already waiting when the process starts:

  ready        exec → the function's first GET .../invocation/next (its init is over)
  first 201    exec → its POST .../invocation/{id}/response carrying statusCode 201
  first invoke ready → first 201 (reads the pepper and the key, then CreateSecret and the
               transaction: 4 AWS calls, each on a new connection)
  warm invoke  a second create in the same process (2 AWS calls, key cached)
  cpu          CPU time the process used (all threads, /proc/PID/task/*/schedstat) by then

    .venv/bin/python scripts/cold-start.py [--runs 20] [--tls] [--binary PATH] [--json FILE]

--tls puts an HTTPS front with keep-alive before moto (one listener per service, RSA 2048
certificate, CA appended to the system roots through SSL_CERT_FILE), so that the SDK pays for
loading the roots and two TLS handshakes as it does against AWS (less the network's round
trips). The binary is built with `cargo build --release` unless --no-build is given (mind that
`cargo bench` leaves its own panic=unwind build at target/release/create-webhook; the
`cargo build --release` this script runs puts the release build back).
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, str(Path(__file__).resolve().parent))
import lambda_stand_in as stand_in  # noqa: E402


def one_start(binary, env, event, log):
    function = stand_in.Function(binary, env, log, first_event=event)
    api = function.api
    try:
        ready_ns = function.wait_ready()
        ready_cpu = stand_in.cpu_ns(function.process.pid)
        first = api.wait(function.first)
        first_cpu = stand_in.cpu_ns(function.process.pid)
        if stand_in.status_of(first) != 201:
            raise SystemExit(f"first invocation answered {stand_in.status_of(first)}")
        warm_ns, warm = function.invoke(event)
        if stand_in.status_of(warm) != 201:
            raise SystemExit(f"second invocation answered {stand_in.status_of(warm)}")
        ms = 1e-6
        return {
            "ready_ms": (ready_ns - function.started_ns) * ms,
            "first_201_ms": (first[0] - function.started_ns) * ms,
            "first_invoke_ms": (first[0] - api.delivered[function.first]) * ms,
            "warm_invoke_ms": warm_ns * ms,
            "cpu_at_ready_ms": ready_cpu * ms,
            "cpu_at_first_201_ms": first_cpu * ms,
        }
    finally:
        function.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="measured starts (default 20)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="starts run first and not counted (default 1: page cache)",
    )
    parser.add_argument("--tls", action="store_true", help="HTTPS front before moto")
    parser.add_argument(
        "--roots",
        type=Path,
        help="with --tls: the roots the function trusts, besides the front's "
        "(default: the system bundle)",
    )
    parser.add_argument("--binary", type=Path, default=stand_in.FUNCTION)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra variable for the function (repeatable), for experiments",
    )
    parser.add_argument("--json", type=Path, help="write every start's figures here")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if any("=" not in e for e in args.env):
        parser.error("--env takes NAME=VALUE")
    extra_env = dict(e.split("=", 1) for e in args.env)

    if not args.no_build:
        stand_in.build(release_function=args.binary == stand_in.FUNCTION)
    logs = stand_in.log_dir()
    work = stand_in.temp_dir()
    local = stand_in.read_local_env()
    event = stand_in.seed_event(local["DEV_API_TOKEN"])
    moto = stand_in.Moto(logs)
    front = stand_in.TlsFront(moto.port, work, args.roots) if args.tls else None
    endpoints = front.endpoints() if front else {"AWS_ENDPOINT_URL": moto.endpoint}
    endpoints.update(extra_env)
    runs = []
    try:
        with open(logs / "cold-start-function.log", "wb") as log:
            for i in range(args.warmup + args.runs):
                result = one_start(args.binary, endpoints, event, log)
                if i >= args.warmup:
                    runs.append(result)
                time.sleep(0.05)
    finally:
        if front:
            front.stop()
        moto.stop()

    size = args.binary.stat().st_size
    print(f"binary     {args.binary} ({size:,} bytes)")
    print(f"machine    {stand_in.machine()}")
    print(
        "backend    moto"
        f"{' behind an HTTPS front (TLS handshakes)' if args.tls else ' (plain HTTP)'}"
        f"; {args.runs} starts after {args.warmup} warm-up"
    )
    if extra_env:
        print(f"extra env  {' '.join(args.env)}")
    if front:
        print(f"handshakes {front.handshakes} TLS handshakes in {args.warmup + args.runs} starts")
    print(f"{'':22}{'min':>9}{'median':>9}{'p90':>9}{'max':>9}   (ms)")
    summary = {}
    for key in runs[0]:
        s = stand_in.stats([r[key] for r in runs])
        summary[key] = s
        print(f"{key:22}{s['min']:9.2f}{s['median']:9.2f}{s['p90']:9.2f}{s['max']:9.2f}")
    verdict = "met" if summary["ready_ms"]["median"] < 20 else "MISSED"
    print(f"target: median exec → ready under 20 ms: {verdict}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "binary": str(args.binary),
                    "bytes": size,
                    "tls": args.tls,
                    "env": extra_env,
                    "machine": stand_in.machine(),
                    "summary": summary,
                    "runs": runs,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
