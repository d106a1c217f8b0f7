package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
)

// systemPython is Debian's Python, where python3-celery installs Celery.
const systemPython = "/usr/bin/python3"

func TestCeleryTaskID_IsUUID5OfNamespaceAndBatchID(t *testing.T) {
	t.Parallel()
	// Computed with Python: uuid.uuid5(uuid.NAMESPACE_URL, f"lull:{ns}:{batch_id}").
	require.Equal(t, "803731b9-5ee4-5d47-a146-7f21ef9966fb", CeleryTaskID("lull", "5511999990000:17"))
	require.Equal(t, "7fb99339-0ad4-5862-bf09-e55e653a140c", CeleryTaskID("prod-br", "5511999990000:17"))
	require.Equal(t, CeleryTaskID("lull", "k:1"), CeleryTaskID("lull", "k:1"), "a redelivered batch is the same task")
	require.NotEqual(t, CeleryTaskID("lull", "k:1"), CeleryTaskID("lull", "k:2"))
	require.NotEqual(t, CeleryTaskID("a", "k:1"), CeleryTaskID("b", "k:1"), "namespaces never share task ids")
}

func TestCelery_MessageIsAProtocol2Task(t *testing.T) {
	t.Parallel()
	bb := setupBroker(t, names(".celery"), names())
	c := bb.celery(t, CeleryOptions{Queue: bb.ns + ".celery", Task: "lull.process_batch"})

	b, body := sampleBatch(t)
	require.NoError(t, c.Deliver(context.Background(), b, body))

	d := bb.get(t, bb.ns+".celery")
	id := CeleryTaskID(bb.ns, b.BatchID)
	require.Equal(t, "", d.Exchange, "the default exchange, as Celery publishes to direct queues")
	require.Equal(t, bb.ns+".celery", d.RoutingKey)
	require.Equal(t, "application/json", d.ContentType)
	require.Equal(t, "utf-8", d.ContentEncoding)
	require.Equal(t, uint8(amqp.Persistent), d.DeliveryMode)
	require.Equal(t, uint8(0), d.Priority)
	require.Equal(t, id, d.CorrelationId)
	require.Equal(t, "", d.ReplyTo)
	require.Equal(t, amqp.Table{
		"lang":          "py",
		"task":          "lull.process_batch",
		"id":            id,
		"shadow":        nil,
		"eta":           nil,
		"expires":       nil,
		"group":         nil,
		"group_index":   nil,
		"retries":       int32(0),
		"timelimit":     []any{nil, nil},
		"root_id":       id,
		"parent_id":     nil,
		"argsrepr":      "({'batch_id': '5511999990000:17', 'key': '5511999990000', 'reason': 'quiet', 'attempt': 1, 'messages': <3 messages>},)",
		"kwargsrepr":    "{}",
		"origin":        c.origin,
		"ignore_result": false,
	}, d.Headers)
	require.True(t, strings.HasPrefix(c.origin, "lull@"), c.origin)

	want := `[[` + string(body) + `],{},{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]`
	require.Equal(t, want, string(d.Body))
	var parts []json.RawMessage
	require.NoError(t, json.Unmarshal(d.Body, &parts))
	require.Len(t, parts, 3, "(args, kwargs, embed)")
	var args []batch.Batch
	require.NoError(t, json.Unmarshal(parts[0], &args))
	require.Equal(t, []batch.Batch{b}, args, "one positional argument: the batch")
}

func TestCelery_QueueDeclaredAsACeleryWorkerDeclaresIt(t *testing.T) {
	t.Parallel()
	bb := setupBroker(t, names(".celery"), names(".celery"))
	bb.celery(t, CeleryOptions{Queue: bb.ns + ".celery", Task: testCeleryTask})

	// What `celery worker -Q <queue>` declares for a queue missing from
	// task_queues: a direct exchange and a durable classic queue, without
	// arguments, bound by the queue's name.
	ch := bb.channel(t)
	require.NoError(t, ch.ExchangeDeclare(bb.ns+".celery", amqp.ExchangeDirect, true, false, false, false, nil))
	_, err := ch.QueueDeclare(bb.ns+".celery", true, false, false, false, nil)
	require.NoError(t, err, "no PRECONDITION_FAILED for the Celery worker")
	require.NoError(t, ch.QueueBind(bb.ns+".celery", bb.ns+".celery", bb.ns+".celery", false, nil))
}

func TestCelery_UsesAnExistingQuorumQueue(t *testing.T) {
	t.Parallel()
	bb := setupBroker(t, names(".celery"), names())
	ch := bb.channel(t)
	_, err := ch.QueueDeclare(bb.ns+".celery", true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
	require.NoError(t, err)

	c := bb.celery(t, CeleryOptions{Queue: bb.ns + ".celery", Task: testCeleryTask})
	b, body := sampleBatch(t)
	require.NoError(t, c.Deliver(context.Background(), b, body))
	require.Equal(t, testCeleryTask, bb.get(t, bb.ns+".celery").Headers["task"])
}

func TestCelery_BrokerDownIsRetryable(t *testing.T) {
	t.Parallel()
	c, err := NewCelery(BrokerOptions{URL: "amqp://guest:guest@127.0.0.1:1/", Namespace: "test-sink-down", Timeout: testPublishTimeout, Logger: testLogger(t)},
		CeleryOptions{Queue: "test-sink-down.celery", Task: testCeleryTask})
	require.NoError(t, err)
	closeAtEnd(t, c)
	b, body := sampleBatch(t)
	err = c.Deliver(context.Background(), b, body)
	require.Error(t, err)
	require.False(t, IsPermanent(err))
}

// TestCelery_MessageMatchesCeleryOwnClient builds the same task message
// with Celery's own client code (as_task_v2) and compares it with the
// sink's, header by header.
func TestCelery_MessageMatchesCeleryOwnClient(t *testing.T) {
	t.Parallel()
	if err := exec.Command(systemPython, "-c", "import celery").Run(); err != nil {
		t.Skipf("Celery is not installed for %s (apt-get install -y python3-celery): %v", systemPython, err)
	}
	b, body := sampleBatch(t)
	id := CeleryTaskID("lull", b.BatchID)
	msg := celeryMessage(id, "lull.process_batch", "lull@test", b, body)

	const script = `
import json, sys
from celery import Celery
id, origin = sys.argv[1], sys.argv[2]
batch = json.load(sys.stdin)
m = Celery(set_as_current=False).amqp.as_task_v2(id, "lull.process_batch", args=(batch,), origin=origin)
json.dump({"headers": m.headers, "properties": m.properties, "body": m.body}, sys.stdout)
`
	cmd := exec.Command(systemPython, "-c", script, id, "lull@test")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.Output()
	require.NoError(t, err, "python: %s", out)
	var celery struct {
		Headers    map[string]any    `json:"headers"`
		Properties map[string]string `json:"properties"`
		Body       json.RawMessage   `json:"body"`
	}
	require.NoError(t, json.Unmarshal(out, &celery))

	// Ours, as the same JSON types.
	raw, err := json.Marshal(map[string]any(msg.Headers))
	require.NoError(t, err)
	var ours map[string]any
	require.NoError(t, json.Unmarshal(raw, &ours))

	// argsrepr is a summary on purpose (no user text in Celery's logs).
	delete(celery.Headers, "argsrepr")
	delete(ours, "argsrepr")
	// Headers newer Celery versions add; a worker does without them.
	for _, optional := range []string{"stamped_headers", "stamps", "replaced_task_nesting"} {
		delete(celery.Headers, optional)
	}
	require.Equal(t, celery.Headers, ours)
	require.Equal(t, celery.Properties["correlation_id"], msg.CorrelationId)
	require.Equal(t, celery.Properties["reply_to"], msg.ReplyTo)
	require.JSONEq(t, string(celery.Body), string(msg.Body))
}

func TestPyRepr(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"5511:17":               `'5511:17'`,
		"it's":                  `'it\'s'`,
		`back\slash`:            `'back\\slash'`,
		"two\nlines\t\r":        `'two\nlines\t\r'`,
		"nul\x00 bell\a":        `'nul\x00 bell\x07'`,
		"olá 👋":                 `'olá 👋'`,
		"bad\xffutf8":           "'bad\uFFFDutf8'",
		strings.Repeat("a", 70): "'" + strings.Repeat("a", 64) + "...'",
	}
	for in, want := range tests {
		require.Equal(t, want, pyRepr(in), "%q", in)
	}
}
