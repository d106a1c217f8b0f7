// Package queue owns lull's RabbitMQ side: the topology of a namespace, a
// confirming publisher for the api (and, with another target and Topology,
// for the worker's amqp and celery sinks) and a reconnecting consumer for
// the worker.
//
// Topology of namespace ns:
//
//	<ns>.inbound       durable quorum queue, fed through the default exchange;
//	                   dead-letters to <ns>.inbound.dlx, at the latest after
//	                   50 deliveries (poison that crashes the consumer)
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

// errDeadQueueDiffers marks a PRECONDITION_FAILED on the dead-letter queue:
// it exists with other arguments (a deployment from before its retention).
var errDeadQueueDiffers = errors.New("exists with other arguments")

// declare declares the topology of ns on ch; with deadAsIs it takes the
// dead-letter queue as it exists (a passive declare) instead of declaring
// its arguments.
func declare(ch *amqp.Channel, ns string, o TopologyOptions, deadAsIs bool) error {
	dlx, dead, inbound := DeadLetterExchange(ns), DeadLetterQueue(ns), InboundQueue(ns)
	if err := ch.ExchangeDeclare(dlx, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", dlx, err)
	}
	if deadAsIs {
		if _, err := ch.QueueDeclarePassive(dead, true, false, false, false, nil); err != nil {
			return fmt.Errorf("declare queue %s passively: %w", dead, err)
		}
	} else if _, err := ch.QueueDeclare(dead, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:       amqp.QueueTypeQuorum,
		amqp.QueueMessageTTLArg: o.DeadLetterTTL.Milliseconds(),
		amqp.QueueMaxLenArg:     int64(o.DeadLetterMax),
	}); err != nil {
		var aerr *amqp.Error
		if errors.As(err, &aerr) && aerr.Code == amqp.PreconditionFailed {
			return fmt.Errorf("declare queue %s: %w: %w", dead, errDeadQueueDiffers, err)
		}
		return fmt.Errorf("declare queue %s: %w", dead, err)
	}
	if err := ch.QueueBind(dead, "", dlx, false, nil); err != nil {
		return fmt.Errorf("bind queue %s to %s: %w", dead, dlx, err)
	}
	if _, err := ch.QueueDeclare(inbound, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:        amqp.QueueTypeQuorum,
		"x-dead-letter-exchange": dlx,
		"x-delivery-limit":       int32(DeliveryLimit),
	}); err != nil {
		return fmt.Errorf("declare queue %s: %w", inbound, err)
	}
	return nil
}

// InboundTopology is the topology of namespace ns (see the package
// comment) with opts' retention, as given: what the api's Publisher and the
// worker's Consumer declare on every (re)connect. It is idempotent.
//
// A dead-letter queue that already exists with other arguments (declared
// before it had a retention, or with another DEAD_LETTER_TTL /
// DEAD_LETTER_MAX) makes the broker refuse the declaration with
// PRECONDITION_FAILED and close the channel. Redeclaring a queue never
// changes its arguments, so InboundTopology then declares everything again
// on a new channel, taking that queue as it is, and logs once per process
// how to apply the retention (a policy, or deleting the empty queue). Any
// other failure is returned.
func InboundTopology(ns string, opts TopologyOptions) Topology {
	o := opts.logTo(slog.Default())
	return func(conn *amqp.Connection) error {
		err := OnChannel(func(ch *amqp.Channel) error { return declare(ch, ns, o, false) })(conn)
		if !errors.Is(err, errDeadQueueDiffers) {
			return err
		}
		if err2 := OnChannel(func(ch *amqp.Channel) error { return declare(ch, ns, o, true) })(conn); err2 != nil {
			// Not there after all: the arguments themselves were refused.
			return fmt.Errorf("%w; then %w", err, err2)
		}
		warnDeadQueueArgs(conn, ns, o, err)
		return nil
	}
}

// deadQueueWarned holds the dead-letter queues already warned about, so a
// process says it once, not on every reconnect.
var deadQueueWarned sync.Map

// warnDeadQueueArgs tells the operator, once per queue and process, that
// the dead-letter queue keeps its old arguments, and how to bound it.
func warnDeadQueueArgs(conn *amqp.Connection, ns string, o TopologyOptions, why error) {
	dead := DeadLetterQueue(ns)
	if _, warned := deadQueueWarned.LoadOrStore(dead, true); warned {
		return
	}
	reason := why.Error()
	var aerr *amqp.Error
	if errors.As(why, &aerr) {
		reason = aerr.Reason
	}
	o.Logger.Warn("dead-letter queue exists with other arguments and keeps them: its retention is not applied; "+
		"apply it with a RabbitMQ policy (policy_command), or delete the queue while it is empty "+
		"(delete_command) and restart to re-declare it",
		slog.String("queue", dead),
		slog.String("broker_reason", reason),
		slog.Duration("dead_letter_ttl", o.DeadLetterTTL),
		slog.Int("dead_letter_max", o.DeadLetterMax),
		slog.String("policy_command", RetentionPolicyCommand(ns, vhostOf(conn), o)),
		slog.String("delete_command", "rabbitmqctl delete_queue"+vhostFlag(vhostOf(conn))+" --if-empty "+dead),
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
