"""A bot on lull's http sink that never answers a stale burst (standard library only).

For each batch it "thinks" (an LLM call would go here), then asks lull whether
the batch is still the conversation's last word (GET status_url with the API
token). If the user wrote again meanwhile, it throws its answer away and tells
lull so, answering 409 with X-Lull-Discard: 1: lull puts the batch's messages
back in front of the conversation's buffer, and the next batch holds them
first, then the newer ones, with "replaces" naming this batch.

    LULL_URL=http://127.0.0.1:8000 API_TOKEN=change-me-please-16 CALLBACK_SECRET=change-me \
        python3 examples/bot_python/bot.py            # listens on :8090
    # lull: SINKS=http CALLBACK_URL=http://127.0.0.1:8090/batches CALLBACK_SECRET=change-me
    #       API_TOKEN=change-me-please-16 (api and worker)

Answers lull reads: 200 = handled; 409 + X-Lull-Discard: 1 = stale, discarded;
503 = try again later.
"""
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LULL_URL = os.environ.get("LULL_URL", "http://127.0.0.1:8000").rstrip("/")
API_TOKEN = os.environ.get("API_TOKEN", "")
SECRET = os.environ.get("CALLBACK_SECRET", "")
THINK = float(os.environ.get("THINK_SECONDS", "2"))

answered = set()  # batch ids answered (lull may redeliver one)
lock = threading.Lock()


def signed(body: bytes, header: str) -> bool:
    want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header.strip(), want)


def batch_status(batch: dict) -> dict:
    """GET /v1/batches/{id}: {"state", "current", "newer_messages", ...}."""
    url = batch["status_url"]
    if url.startswith("/"):  # relative unless lull's PUBLIC_URL is set
        url = LULL_URL + url
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + API_TOKEN})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.load(resp)


def compose(batch: dict) -> str:
    time.sleep(THINK)  # the slow part: an LLM call, say
    return "you said: " + " / ".join(m["text"] for m in batch["messages"])


class Bot(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if SECRET and not signed(body, self.headers.get("X-Lull-Signature", "")):
            return self.answer(401)
        batch = json.loads(body)
        with lock:
            if batch["batch_id"] in answered:
                return self.answer(200)  # a redelivery of a batch already answered
        answer = compose(batch)
        try:
            status = batch_status(batch)
        except Exception as e:  # lull unreachable: let it retry the batch
            print(batch["batch_id"], "status:", e, flush=True)
            return self.answer(503)
        if not status["current"]:
            print(batch["batch_id"], "stale:", status["newer_messages"], "newer messages; discarding", flush=True)
            return self.answer(409, {"X-Lull-Discard": "1"})
        print(batch["batch_id"], "answering:", answer, flush=True)  # send it to the user here
        with lock:
            answered.add(batch["batch_id"])
        self.answer(200)

    def answer(self, code, headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8090"))
    print(f"bot listening on :{port}, lull at {LULL_URL}", flush=True)
    ThreadingHTTPServer(("", port), Bot).serve_forever()
