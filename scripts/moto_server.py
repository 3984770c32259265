"""moto_server, serving one request at a time. Same arguments as moto_server.

moto applies a DynamoDB transaction by snapshotting the tables and restoring the snapshot when a
condition fails. With requests served on parallel threads, one transaction's restore can bring
back another one's half-applied writes, so a cancelled transaction can leave an item behind
(seen: 53 records for 50 admitted creates). Real DynamoDB transactions are atomic; serving
requests one at a time makes moto's atomic too. moto speaks HTTP/1.0 (a connection per request),
so an idle client connection cannot block the server.
"""

import sys

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

if __name__ == "__main__":
    moto.server.main(sys.argv[1:])
