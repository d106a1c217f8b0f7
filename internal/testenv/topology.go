package testenv

import (
	"time"

	"github.com/lullhq/lull/internal/queue"
)

// Topology is the configuration's dead-letter retention (the defaults of
// DEAD_LETTER_TTL and DEAD_LETTER_MAX), for the publishers and consumers
// of a test. The values are literal: internal/config imports packages
// whose internal tests import testenv, so testenv cannot import it;
// TestTopology_IsTheConfigurationsRetention keeps them in step.
func Topology() queue.TopologyOptions {
	return queue.TopologyOptions{DeadLetterTTL: 720 * time.Hour, DeadLetterMax: 10000}
}
