#!/usr/bin/env python3
"""Peak memory of one execution environment serving creates: the release binary under the local
Runtime API stand-in (scripts/lambda_stand_in.py), moto behind it, N seed creates in a row
(default 1,000), then VmHWM (peak resident set) and VmRSS from /proc/PID/status.

    .venv/bin/python scripts/peak-rss.py [--creates 1000] [--tls] [--binary PATH]

Every invocation must answer 201. Lambda bills and limits memory by the whole environment, of
which this process is the part that grows; the figure to compare with the function's 256 MB
(template.yaml) and the 30 MB target is VmHWM. It also prints the function's own CPU time and
context switches per create (all threads, from /proc), which moto's growing latency does not
distort.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, str(Path(__file__).resolve().parent))
import lambda_stand_in as stand_in  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument("--tls", action="store_true", help="HTTPS front before moto")
    parser.add_argument("--binary", type=Path, default=stand_in.FUNCTION)
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()

    if not args.no_build:
        stand_in.build(release_function=args.binary == stand_in.FUNCTION)
    logs = stand_in.log_dir()
    local = stand_in.read_local_env()
    event = stand_in.seed_event(local["DEV_API_TOKEN"])
    moto = stand_in.Moto(logs)
    front = stand_in.TlsFront(moto.port, stand_in.temp_dir()) if args.tls else None
    endpoints = front.endpoints() if front else {"AWS_ENDPOINT_URL": moto.endpoint}
    marks = {}
    latencies = []
    try:
        with open(logs / "peak-rss-function.log", "wb") as log:
            function = stand_in.Function(args.binary, endpoints, log)
            pid = function.process.pid
            try:
                function.wait_ready()
                marks["ready"] = stand_in.proc_status(pid, "VmHWM", "VmRSS")
                cpu_before = stand_in.cpu_ns(pid)
                switches_before = stand_in.context_switches(pid)
                started = time.monotonic()
                for n in range(1, args.creates + 1):
                    elapsed, answer = function.invoke(event)
                    status = stand_in.status_of(answer)
                    if status != 201:
                        raise SystemExit(f"create {n} answered {status}")
                    latencies.append(elapsed / 1e6)
                    if n in (1, 10, 100) or n == args.creates:
                        marks[f"after {n}"] = stand_in.proc_status(pid, "VmHWM", "VmRSS")
                seconds = time.monotonic() - started
                cpu_per_create = (stand_in.cpu_ns(pid) - cpu_before) / args.creates / 1000
                switches = (stand_in.context_switches(pid) - switches_before) / args.creates
                threads = len(os.listdir(f"/proc/{pid}/task"))
            finally:
                function.stop()
    finally:
        if front:
            front.stop()
        moto.stop()

    print(f"binary   {args.binary} ({args.binary.stat().st_size:,} bytes)")
    print(f"machine  {stand_in.machine()}")
    print(
        f"backend  moto{' behind an HTTPS front' if args.tls else ' (plain HTTP)'}; "
        f"{args.creates} creates in {seconds:.1f} s, all 201"
    )
    print(f"{'':14}{'VmHWM (peak)':>14}{'VmRSS':>12}")
    for mark, values in marks.items():
        print(f"{mark:14}{values['VmHWM'] / 1024:11.2f} MiB{values['VmRSS'] / 1024:8.2f} MiB")
    peak = max(values["VmHWM"] for values in marks.values()) / 1024
    print(
        f"target: peak RSS under 30 MB: {'met' if peak * 1.048576 < 30 else 'MISSED'} "
        f"({peak:.2f} MiB)"
    )
    s = stand_in.stats(latencies)
    print(
        f"per create: {cpu_per_create:.0f} µs of the function's CPU (all {threads} threads), "
        f"{switches:.1f} context switches"
    )
    slowest = max(range(len(latencies)), key=latencies.__getitem__) + 1
    print(
        f"invoke latency (ms): min {s['min']:.2f}  median {s['median']:.2f}  "
        f"p90 {s['p90']:.2f}  max {s['max']:.2f} (create {slowest}); these are mostly moto's"
    )


if __name__ == "__main__":
    main()
