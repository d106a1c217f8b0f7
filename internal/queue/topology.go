// Package queue owns lull's RabbitMQ side: the topology of a namespace, a
// confirming publisher for the api (and, with another target and Topology,
// for the worker's amqp and celery sinks) and a reconnecting consumer for
// the worker.
//
// Topology of namespace ns:
//
//	<ns>.inbound       durable quorum queue, fed through the default exchange,
//	                   with a single active consumer (x-single-active-consumer:
//	                   of the workers subscribed, one at a time gets messages,
//	                   so a conversation's messages are appended in queue order
//	                   by one process; the others stand by and take over, in
//	                   order, when it goes); dead-letters to <ns>.inbound.dlx,
//	                   at the latest after 50 deliveries (poison that crashes
//	                   the consumer)
//	<ns>.inbound.dlx   durable fanout exchange
//	<ns>.inbound.dead  durable quorum queue bound to <ns>.inbound.dlx, with
//	                   x-message-ttl and x-max-length (TopologyOptions): poison
//	                   messages wait there for an operator, but not forever
package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/lullhq/lull/internal/valutil"
)

// DeliveryLimit is the x-delivery-limit of the inbound queue: a message
// delivered this many times without being settled goes to the dead-letter
// exchange instead of being redelivered forever.
const DeliveryLimit = 50

// InboundQueue is the name of the queue the api publishes to and the worker
// consumes from.
func InboundQueue(ns string) string { return ns + ".inbound" }

// DeadLetterExchange is the name of the fanout exchange that receives the
// inbound queue's rejected and over-delivered messages.
func DeadLetterExchange(ns string) string { return ns + ".inbound.dlx" }

// DeadLetterQueue is the name of the queue bound to DeadLetterExchange, where
// dead-lettered messages wait for an operator.
func DeadLetterQueue(ns string) string { return ns + ".inbound.dead" }

// declareFanout declares exchange as a durable fanout exchange and, unless
// queueName is empty, a durable quorum queue of that name bound to it.
func declareFanout(ch *amqp.Channel, exchange, queueName string) error {
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", exchange, err)
	}
	if queueName == "" {
		return nil
	}
	if _, err := ch.QueueDeclare(queueName, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg: amqp.QueueTypeQuorum,
	}); err != nil {
		return fmt.Errorf("declare queue %s: %w", queueName, err)
	}
	if err := ch.QueueBind(queueName, "", exchange, false, nil); err != nil {
		return fmt.Errorf("bind queue %s to %s: %w", queueName, exchange, err)
	}
	return nil
}

// TopologyOptions configures the topology of a namespace. The retention
// is required: it is the configuration's (DEAD_LETTER_TTL,
// DEAD_LETTER_MAX), and NewPublisher and NewConsumer refuse it unset.
type TopologyOptions struct {
	// DeadLetterTTL is the x-message-ttl of DeadLetterQueue: a poison
	// message is dropped this long after it was dead-lettered. Whole
	// milliseconds, at least 1 (DEAD_LETTER_TTL).
	DeadLetterTTL time.Duration
	// DeadLetterMax is its x-max-length: beyond it the oldest messages are
	// dropped. Positive (DEAD_LETTER_MAX).
	DeadLetterMax int
	// Logger receives the warning about a dead-letter queue that exists
	// with other arguments. Default slog.Default().
	Logger *slog.Logger
}

// validate reports a retention NewPublisher and NewConsumer refuse.
func (o TopologyOptions) validate() error {
	if o.DeadLetterTTL < time.Millisecond {
		return fmt.Errorf("DeadLetterTTL %s must be at least 1ms (DEAD_LETTER_TTL)", o.DeadLetterTTL)
	}
	if o.DeadLetterMax <= 0 {
		return fmt.Errorf("DeadLetterMax %d must be positive (DEAD_LETTER_MAX)", o.DeadLetterMax)
	}
	return nil
}

// logTo sets the logger when o has none.
func (o TopologyOptions) logTo(log *slog.Logger) TopologyOptions {
	o.Logger = valutil.ValOrDefault(o.Logger, log)
	return o
}

// errQueueDiffers marks a PRECONDITION_FAILED on a queue that exists with
// other arguments (declared by an earlier lull): the dead-letter queue
// before its retention, the inbound queue before its single active
// consumer.
var errQueueDiffers = errors.New("exists with other arguments")

// queueDiffers is the error of a declaration of queue refused because
// the queue exists with other arguments.
type queueDiffers struct {
	queue string
	err   error
}

func (e *queueDiffers) Error() string {
	return fmt.Sprintf("declare queue %s: %v: %v", e.queue, errQueueDiffers, e.err)
}

func (e *queueDiffers) Unwrap() []error { return []error{errQueueDiffers, e.err} }

// declareQueue declares queue with args, or, when asIs, takes it as it
// exists (a passive declare). A refusal because it exists with other
// arguments is a *queueDiffers.
func declareQueue(ch *amqp.Channel, queue string, args amqp.Table, asIs bool) error {
	if asIs {
		if _, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare queue %s passively: %w", queue, err)
		}
		return nil
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, args); err != nil {
		var aerr *amqp.Error
		if errors.As(err, &aerr) && aerr.Code == amqp.PreconditionFailed {
			return &queueDiffers{queue: queue, err: err}
		}
		return fmt.Errorf("declare queue %s: %w", queue, err)
	}
	return nil
}

// declare declares the topology of ns on ch, taking the queues in asIs as
// they exist: the dead-letter queue with whatever arguments it has, the
// inbound queue without a single active consumer.
func declare(ch *amqp.Channel, ns string, o TopologyOptions, asIs map[string]bool) error {
	dlx, dead, inbound := DeadLetterExchange(ns), DeadLetterQueue(ns), InboundQueue(ns)
	if err := ch.ExchangeDeclare(dlx, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", dlx, err)
	}
	if err := declareQueue(ch, dead, amqp.Table{
		amqp.QueueTypeArg:       amqp.QueueTypeQuorum,
		amqp.QueueMessageTTLArg: o.DeadLetterTTL.Milliseconds(),
		amqp.QueueMaxLenArg:     int64(o.DeadLetterMax),
	}, asIs[dead]); err != nil {
		return err
	}
	if err := ch.QueueBind(dead, "", dlx, false, nil); err != nil {
		return fmt.Errorf("bind queue %s to %s: %w", dead, dlx, err)
	}
	args := amqp.Table{
		amqp.QueueTypeArg:            amqp.QueueTypeQuorum,
		amqp.SingleActiveConsumerArg: true,
		"x-dead-letter-exchange":     dlx,
		"x-delivery-limit":           int32(DeliveryLimit),
	}
	if asIs[inbound] {
		// Declared before it had a single active consumer: everything
		// else is still checked (the broker names only the first argument
		// that differs).
		delete(args, amqp.SingleActiveConsumerArg)
	}
	return declareQueue(ch, inbound, args, false)
}

// InboundTopology is the topology of namespace ns (see the package
// comment) with opts' retention, as given: what the api's Publisher and the
// worker's Consumer declare on every (re)connect. It is idempotent.
//
// A queue that already exists with other arguments makes the broker
// refuse the declaration with PRECONDITION_FAILED and close the channel:
// a dead-letter queue declared before it had a retention, or with another
// DEAD_LETTER_TTL / DEAD_LETTER_MAX, or an inbound queue declared before it
// had a single active consumer. Redeclaring a queue never changes its
// arguments, so InboundTopology then declares everything again on a new
// channel, taking that queue as it is, and logs once per process what that
// costs and how to apply the arguments (a policy, or deleting the empty
// queue). Any other failure is returned.
func InboundTopology(ns string, opts TopologyOptions) Topology {
	o := opts.logTo(slog.Default())
	return func(conn *amqp.Connection) error {
		asIs := map[string]bool{}
		var refused []error
		for {
			err := OnChannel(func(ch *amqp.Channel) error { return declare(ch, ns, o, asIs) })(conn)
			var differs *queueDiffers
			if !errors.As(err, &differs) || asIs[differs.queue] || !tolerated(ns, differs) {
				if err != nil && len(refused) > 0 {
					// Not there after all: the arguments themselves were refused.
					return fmt.Errorf("%w; then %w", errors.Join(refused...), err)
				}
				if err == nil {
					for _, why := range refused {
						warnQueueArgs(conn, ns, o, why)
					}
				}
				return err
			}
			asIs[differs.queue] = true
			refused = append(refused, err)
		}
	}
}

// tolerated reports whether a queue that exists with other arguments is
// taken as it is: the dead-letter queue whatever differs, the inbound
// queue only when the broker names its single active consumer (the queue
// of an earlier lull); its type and its other arguments are then checked
// by declaring it again without that one.
func tolerated(ns string, differs *queueDiffers) bool {
	return differs.queue == DeadLetterQueue(ns) ||
		strings.Contains(differs.err.Error(), "'"+amqp.SingleActiveConsumerArg+"'")
}

// queueWarned holds the queues already warned about, so a process says it
// once, not on every reconnect.
var queueWarned sync.Map

// warnQueueArgs tells the operator, once per queue and process, that a
// queue keeps its old arguments (why is its *queueDiffers), what that
// costs, and how to apply the new ones.
func warnQueueArgs(conn *amqp.Connection, ns string, o TopologyOptions, why error) {
	var differs *queueDiffers
	if !errors.As(why, &differs) {
		return
	}
	if _, warned := queueWarned.LoadOrStore(differs.queue, true); warned {
		return
	}
	reason := why.Error()
	var aerr *amqp.Error
	if errors.As(why, &aerr) {
		reason = aerr.Reason
	}
	deleteCommand := "rabbitmqctl delete_queue" + vhostFlag(vhostOf(conn)) + " --if-empty " + differs.queue
	if differs.queue == InboundQueue(ns) {
		o.Logger.Warn("inbound queue exists with other arguments and keeps them: it has no single active consumer, "+
			"so several workers consume it at once and, while Redis refuses writes, a conversation's messages can be "+
			"appended out of order; to apply it, stop the apis, let the workers empty the queue, delete it "+
			"(delete_command) and restart",
			slog.String("queue", differs.queue),
			slog.String("broker_reason", reason),
			slog.String("delete_command", deleteCommand),
		)
		return
	}
	o.Logger.Warn("dead-letter queue exists with other arguments and keeps them: its retention is not applied; "+
		"apply it with a RabbitMQ policy (policy_command), or delete the queue while it is empty "+
		"(delete_command) and restart to re-declare it",
		slog.String("queue", differs.queue),
		slog.String("broker_reason", reason),
		slog.Duration("dead_letter_ttl", o.DeadLetterTTL),
		slog.Int("dead_letter_max", o.DeadLetterMax),
		slog.String("policy_command", RetentionPolicyCommand(ns, vhostOf(conn), o)),
		slog.String("delete_command", deleteCommand),
	)
}

// RetentionPolicyCommand is the rabbitmqctl command that applies o's
// dead-letter retention to DeadLetterQueue(ns) in vhost as a policy: the way
// to bound a queue declared before it had those arguments.
func RetentionPolicyCommand(ns, vhost string, o TopologyOptions) string {
	def, _ := json.Marshal(map[string]int64{
		"message-ttl": o.DeadLetterTTL.Milliseconds(),
		"max-length":  int64(o.DeadLetterMax),
	})
	return fmt.Sprintf("rabbitmqctl set_policy%s --apply-to queues %s-dead-letter-retention '^%s$' '%s'",
		vhostFlag(vhost), ns, regexp.QuoteMeta(DeadLetterQueue(ns)), def)
}

func vhostOf(conn *amqp.Connection) string {
	if conn == nil {
		return ""
	}
	return conn.Config.Vhost
}

// vhostFlag is rabbitmqctl's -p for vhost, or nothing for the default one.
func vhostFlag(vhost string) string {
	if vhost == "" || vhost == "/" {
		return ""
	}
	return " -p '" + strings.ReplaceAll(vhost, "'", `'\''`) + "'"
}
