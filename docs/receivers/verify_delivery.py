"""Verifying an InstaView delivery in Python (the README's snippet; `make test` runs it against
a real delivery: tests/api/receivers.rs).

Usage: SIGNING_SECRET=<64 hex> python verify_delivery.py BODY_FILE HEADERS_JSON_FILE
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time

from standardwebhooks import Webhook


# --- README: Python, with the Standard Webhooks library ------------------------------------
def verify_with_library(signing_secret: str, body: bytes, headers: dict) -> dict:
    """The event, if the delivery is InstaView's; raises otherwise (bad signature, old timestamp)."""
    whsec = "whsec_" + base64.b64encode(bytes.fromhex(signing_secret)).decode()
    return Webhook(whsec).verify(body, headers)


# --- README: Python, plain HMAC -------------------------------------------------------------
def verify_with_hmac(signing_secret: str, body: bytes, headers: dict, tolerance: int = 300) -> bool:
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False  # too old or from the future: a replay
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(
        hmac.new(bytes.fromhex(signing_secret), signed, hashlib.sha256).digest()
    ).decode()
    # During a secret rotation the header holds two signatures: accept either.
    return any(
        hmac.compare_digest(expected, sig.split(",", 1)[1])
        for sig in headers["webhook-signature"].split(" ")
        if sig.startswith("v1,")
    )
# --- end of the README's snippets -----------------------------------------------------------


if __name__ == "__main__":
    secret = os.environ["SIGNING_SECRET"]
    with open(sys.argv[1], "rb") as f:
        body = f.read()
    with open(sys.argv[2]) as f:
        headers = {name.lower(): value for name, value in json.load(f).items()}
    ok_hmac = verify_with_hmac(secret, body, headers)
    try:
        event = verify_with_library(secret, body, headers)
        ok_library = True
    except Exception as error:  # the library raises WebhookVerificationError
        print(f"library: refused ({type(error).__name__})")
        ok_library = False
    print(f"library: {'verified ' + event['event'] if ok_library else 'refused'}")
    print(f"hmac: {'verified' if ok_hmac else 'refused'}")
    sys.exit(0 if ok_library and ok_hmac else 1)
