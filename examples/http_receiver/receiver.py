"""A minimal receiver for lull's http sink (Python standard library only).

lull (SINKS=http) POSTs every batch as JSON to CALLBACK_URL with
    Idempotency-Key:  the batch_id, the same on every redelivery
    X-Lull-Signature: sha256=<hex HMAC-SHA256(CALLBACK_SECRET, raw body)>,
                      when CALLBACK_SECRET is set

This receiver checks the signature (in constant time), handles each batch
once, and answers 200 to a redelivered batch without handling it again.

    CALLBACK_SECRET=change-me python3 receiver.py         # listens on :8080
    # lull: SINKS=http CALLBACK_URL=http://127.0.0.1:8080/batches CALLBACK_SECRET=change-me

How lull reads the answer: 2xx = delivered; 408, 409, 425, 429 and 5xx =
try again later (Retry-After is honoured); any other 4xx = give up on the
batch (dead-letter), so answer 401 only when the signature is really wrong.

Environment: PORT (default 8080), CALLBACK_SECRET (unset = no signature
check; set it in production).
"""

import hashlib
import hmac
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ.get("CALLBACK_SECRET", "").encode()
PORT = int(os.environ.get("PORT", "8080"))
MAX_BODY = 16 << 20  # a batch of 100 messages is far below this

# Batch ids already handled, and those being handled right now. In
# production keep the first in a database, written in the same transaction
# as the work, so a crash between the two cannot lose or repeat a batch.
done = set()
busy = set()
lock = threading.Lock()


def signature_ok(body: bytes, header: str) -> bool:
    """X-Lull-Signature is "sha256=" + hex HMAC-SHA256(secret, raw body)."""
    if not SECRET:
        return True
    want = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want.encode(), (header or "").encode())


def handle(batch: dict) -> None:
    """The work: here, print the burst as one block."""
    print(f"batch {batch['batch_id']}: {len(batch['messages'])} message(s) from {batch['key']}", flush=True)
    for m in batch["messages"]:
        print(f"  [{m['received_at']}] {m['text']!r}", flush=True)


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            return self.answer(413 if length > MAX_BODY else 400, {"error": "bad body size"})
        body = self.rfile.read(length)  # verify the RAW bytes, before parsing
        if not signature_ok(body, self.headers.get("X-Lull-Signature")):
            return self.answer(401, {"error": "bad signature"})
        key = self.headers.get("Idempotency-Key", "")
        if not key:
            return self.answer(400, {"error": "no Idempotency-Key"})

        with lock:
            if key in done:  # a redelivery: it was handled, say so again
                return self.answer(200, {"batch_id": key, "duplicate": True})
            if key in busy:  # the same batch is being handled right now
                return self.answer(409, {"error": "in progress"})
            busy.add(key)
        try:
            handle(json.loads(body))
        except Exception as e:  # noqa: BLE001 - any failure: lull retries later
            self.log_error("batch %s failed: %r", key, e)
            with lock:
                busy.discard(key)
            return self.answer(503, {"error": "try again"})
        with lock:  # one step, so no request sees the batch in neither set
            done.add(key)
            busy.discard(key)
        return self.answer(200, {"batch_id": key})

    def answer(self, status: int, doc: dict) -> None:
        out = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


if __name__ == "__main__":
    if not SECRET:
        print("warning: CALLBACK_SECRET is not set; signatures are not checked")
    print(f"listening on :{PORT}")
    ThreadingHTTPServer(("", PORT), Receiver).serve_forever()
