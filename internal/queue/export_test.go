package queue

import "time"

// SetAckCoalescing sets how many acks of a run c sends as one multiple ack
// at once and how long an ack waits at most. Call it before Start.
func SetAckCoalescing(c *Consumer, batch int, delay time.Duration) {
	c.ackBatch, c.ackDelay = batch, delay
}

// AckFrames is how many basic.ack frames c sent.
func AckFrames(c *Consumer) int64 { return c.ackFrames.Load() }
