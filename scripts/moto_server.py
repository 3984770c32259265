"""moto_server, serving one request at a time. Same arguments as moto_server.

moto applies a DynamoDB transaction by snapshotting the tables and restoring the snapshot when a
condition fails. With requests served on parallel threads, one transaction's restore can bring
back another one's half-applied writes, so a cancelled transaction can leave an item behind
(seen: 53 records for 50 admitted creates). Real DynamoDB transactions are atomic; serving
requests one at a time makes moto's atomic too. moto speaks HTTP/1.0 (a connection per request),
so an idle client connection cannot block the server.

With MOTO_EXIT_WITH_STDIN=1 (the Rust tests' starter, tests/support/moto.rs), it exits when its
stdin closes: the test process holds the other end, so the server ends with it on every platform.
"""

import os
import sys
import threading

import moto.server
import werkzeug.serving

_run_simple = werkzeug.serving.run_simple


def _run_simple_serially(*args, **kwargs):
    kwargs["threaded"] = False
    return _run_simple(*args, **kwargs)


moto.server.run_simple = _run_simple_serially
# One request at a time means many waiting connections under load: let the kernel queue them
# (werkzeug's default backlog of 128 refuses the rest).
werkzeug.serving.BaseWSGIServer.request_queue_size = 1024


def _exit_when_stdin_closes():
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


if __name__ == "__main__":
    if os.environ.get("MOTO_EXIT_WITH_STDIN") == "1":
        threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    moto.server.main(sys.argv[1:])
