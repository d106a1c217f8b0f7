package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/queue"
)

// CeleryOptions configures the celery sink.
type CeleryOptions struct {
	// Queue is the queue the Celery worker consumes (CELERY_QUEUE;
	// `celery worker -Q <queue>`); required, at most 255 bytes.
	Queue string
	// Task is the registered task name (CELERY_TASK;
	// `@app.task(name=...)`); required.
	Task string
}

// Celery sends each batch as a Celery task message (protocol 2, JSON), so
// a plain Celery worker runs
//
//	@app.task(name="lull.process_batch")
//	def process_batch(batch): ...
//
// with the batch (the README's "Batch JSON") as a dict. It publishes through the
// default exchange with routing key = Queue, as Celery does for its own
// direct queues, persistent, mandatory and publisher-confirmed. It declares
// Queue the way a Celery 5 worker does (durable, classic, no arguments),
// unless a queue of that name exists already, which it then uses as it is.
//
// The task id is CeleryTaskID(namespace, batch_id): a redelivered batch
// is the same task, so a result backend or the task itself can dedupe.
// Every failure is retryable, like the amqp sink's.
type Celery struct {
	pub    *queue.Publisher
	ns     string
	task   string
	origin string
}

// NewCelery returns a celery sink. It connects in the background (Deliver
// fails, retryably, until it has) and must be closed with Close.
func NewCelery(broker BrokerOptions, opts CeleryOptions) (*Celery, error) {
	if err := broker.validate(NameCelery); err != nil {
		return nil, err
	}
	if opts.Queue == "" {
		return nil, errors.New("celery sink: Queue is required (CELERY_QUEUE)")
	}
	if opts.Task == "" {
		return nil, errors.New("celery sink: Task is required (CELERY_TASK)")
	}
	if len(opts.Queue) > 255 {
		return nil, fmt.Errorf("celery sink: Queue %q: longer than 255 bytes (CELERY_QUEUE)", opts.Queue)
	}
	pub, err := broker.publisher(NameCelery, queue.PublisherOptions{
		RoutingKey: opts.Queue,
		Topology:   queue.ClassicQueueTopology(opts.Queue),
	})
	if err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return &Celery{pub: pub, ns: broker.Namespace, task: opts.Task, origin: "lull@" + host}, nil
}

// Name is "celery".
func (c *Celery) Name() string { return NameCelery }

// Ready reports whether the sink is connected to the broker.
func (c *Celery) Ready() bool { return c.pub.Ready() }

// Deliver publishes the batch as one task message and waits for the
// broker's confirm.
func (c *Celery) Deliver(ctx context.Context, b batch.Batch, body []byte) error {
	if b.BatchID == "" {
		return Permanent(errors.New("celery sink: batch has no batch_id"))
	}
	msg := celeryMessage(CeleryTaskID(c.ns, b.BatchID), c.task, c.origin, b, body)
	if err := c.pub.PublishMessage(ctx, msg); err != nil {
		// Every publish error is retryable (see Celery).
		return fmt.Errorf("celery sink: task %s: %w", msg.CorrelationId, err)
	}
	return nil
}

// Close waits for publishes under way (bounded by ctx) and closes the
// connection.
func (c *Celery) Close(ctx context.Context) error { return c.pub.Close(ctx) }

// CeleryTaskID is the Celery task id of batch batchID in namespace ns: a
// UUID v5 in the URL namespace of the name "lull:<ns>:<batch_id>", the
// same for every delivery of the batch. In Python:
//
//	uuid.uuid5(uuid.NAMESPACE_URL, f"lull:{ns}:{batch_id}")
func CeleryTaskID(ns, batchID string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("lull:"+ns+":"+batchID)).String()
}

// celeryEmbed is the third element of a protocol 2 body: no callbacks,
// errbacks, chain or chord.
const celeryEmbed = `{"callbacks":null,"errbacks":null,"chain":null,"chord":null}`

// celeryMessage builds the task message Celery's own client would send
// for task(batch) (celery.app.amqp.as_task_v2), with id as task id.
// body is the batch's JSON; the message body is
// [[batch], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}].
func celeryMessage(id, task, origin string, b batch.Batch, body []byte) amqp.Publishing {
	var buf bytes.Buffer
	buf.Grow(len(body) + len(celeryEmbed) + 8)
	buf.WriteString("[[")
	buf.Write(body)
	buf.WriteString("],{},")
	buf.WriteString(celeryEmbed)
	buf.WriteString("]")
	return amqp.Publishing{
		Headers: withTrace(amqp.Table{
			"lang":          "py",
			"task":          task,
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
			"argsrepr":      celeryArgsRepr(b),
			"kwargsrepr":    "{}",
			"origin":        origin,
			"ignore_result": false,
		}, b),
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		DeliveryMode:    amqp.Persistent,
		Priority:        0,
		CorrelationId:   id,
		ReplyTo:         "",
		// Not set by Celery's client; lull needs it to match a message
		// the broker returns as unroutable. Celery ignores it.
		MessageId: id,
		Body:      buf.Bytes(),
	}
}

// celeryArgsRepr is the argsrepr header: what Celery's logs, events and
// Flower show for the arguments. It names the batch but, unlike Celery's
// full repr, leaves the users' messages out of those places:
//
//	({'batch_id': '5511999990000:17', 'key': '5511999990000', 'reason': 'quiet', 'attempt': 1, 'messages': <3 messages>},)
func celeryArgsRepr(b batch.Batch) string {
	return fmt.Sprintf("({'batch_id': %s, 'key': %s, 'reason': %s, 'attempt': %d, 'messages': <%s>},)",
		pyRepr(b.BatchID), pyRepr(b.Key), pyRepr(b.Reason), b.Attempt, plural(len(b.Messages), "message"))
}

// pyRepr writes s as a Python string literal, single-quoted, printable
// ASCII and Unicode as is, everything else escaped, cut after 64
// characters.
func pyRepr(s string) string {
	const limit = 64
	var sb strings.Builder
	sb.WriteByte('\'')
	n := 0
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if n == limit {
			sb.WriteString("...")
			break
		}
		n++
		switch {
		case r == '\\' || r == '\'':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case !unicode.IsPrint(r) && r < 0x100:
			fmt.Fprintf(&sb, `\x%02x`, r)
		case !unicode.IsPrint(r) && r < 0x10000:
			fmt.Fprintf(&sb, `\u%04x`, r)
		case !unicode.IsPrint(r):
			fmt.Fprintf(&sb, `\U%08x`, r)
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('\'')
	return sb.String()
}
