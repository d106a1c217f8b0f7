"""A minimal Celery app that answers lull's batches.

lull (SINKS=celery) sends every batch as one Celery task message, protocol 2,
JSON, to the queue CELERY_QUEUE (default "celery"), task name CELERY_TASK
(default "lull.process_batch"), with ONE positional argument: the batch as a
dict (see "Batch JSON" in the README). Run it next to lull:

    celery -A tasks worker -Q celery -l info

Environment:
    AMQP_URL          the broker lull uses (or CELERY_BROKER, the seed's name);
                      default amqp://guest:guest@127.0.0.1:5672//
    CELERY_TASK       the task name lull sends; default lull.process_batch
    LULL_BATCHES_FILE when set, each batch is also appended to this file as a
                      JSON line {"task_id": ..., "batch": {...}} (lull's e2e
                      test reads it)
"""

import json
import os

from celery import Celery

BROKER = (
    os.environ.get("AMQP_URL")
    or os.environ.get("CELERY_BROKER")
    or "amqp://guest:guest@127.0.0.1:5672//"
)
TASK = os.environ.get("CELERY_TASK", "lull.process_batch")
BATCHES_FILE = os.environ.get("LULL_BATCHES_FILE")

app = Celery("tasks", broker=BROKER)
app.conf.update(
    # lull sends JSON; accept nothing else.
    accept_content=["json"],
    # Ack only after the task ran, and give the batch back if the worker
    # process dies mid-task: lull counts a batch as delivered once the
    # broker has it, so from then on it is this worker's to keep.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # print() in a task is logged at INFO, not WARNING.
    worker_redirect_stdouts_level="INFO",
)


@app.task(name=TASK)
def process_batch(batch):
    """Handle one burst of a conversation: every message, in order, once.

    The task id is the same for every delivery of the same batch
    (uuid5 of the namespace and batch_id), and so is batch["batch_id"]:
    dedupe on either before doing anything that must not happen twice,
    such as answering the user.
    """
    messages = batch["messages"]
    print(
        f"── batch {batch['batch_id']} · {len(messages)} message(s) · "
        f"{batch['reason']} · attempt {batch['attempt']}"
    )
    print(f"   {batch['key']}")
    for m in messages:
        clock = m["received_at"][11:23]  # HH:MM:SS.mmm of the RFC 3339 time
        kind = "" if m["type"] == "text" else f" ({m['type']})"
        print(f"   [{clock}]{kind} {m['text']!r}")

    # Here the messages would go to an AI agent, as one prompt:
    #   reply = agent.answer("\n".join(m["text"] for m in messages))

    if BATCHES_FILE:
        line = json.dumps({"task_id": process_batch.request.id, "batch": batch})
        with open(BATCHES_FILE, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    return {"batch_id": batch["batch_id"], "messages": len(messages)}
