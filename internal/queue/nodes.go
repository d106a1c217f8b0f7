package queue

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Nodes splits AMQP_URL into its node URLs: one URL, or the comma-separated
// URLs of a RabbitMQ cluster's nodes. Blank entries are dropped.
func Nodes(urls string) []string {
	var out []string
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// ParseNodes checks that urls names at least one node and that each node's
// URL parses as the client will read it.
func ParseNodes(urls string) error {
	nodes := Nodes(urls)
	if len(nodes) == 0 {
		return errors.New("no AMQP URL")
	}
	for i, u := range nodes {
		if _, err := amqp.ParseURI(u); err != nil {
			if len(nodes) == 1 {
				return err
			}
			return fmt.Errorf("node %d of %d: %w", i+1, len(nodes), err)
		}
	}
	return nil
}

// dialOrder is the order dial tries the nodes in: all of them, from a
// random one on, so that processes spread over the nodes and a dead node
// is tried first only by some of them.
func dialOrder(nodes []string) []string {
	if len(nodes) < 2 {
		return nodes
	}
	start := rand.IntN(len(nodes))
	return append(append([]string{}, nodes[start:]...), nodes[:start]...)
}
