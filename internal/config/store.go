package config

import (
	"log/slog"

	"github.com/lullhq/lull/internal/store"
)

// StoreOptions are the buffering rules of c, for store.New: the api, the
// worker and the dlq tool build their store from them.
func (c Config) StoreOptions(log *slog.Logger) store.Options {
	o := store.Options{
		QuietWindow:   c.QuietWindow,
		MaxWait:       c.MaxWait,
		MaxMessages:   c.MaxBatchMessages,
		MaxBytes:      c.MaxBatchBytes,
		DedupeWindow:  c.DedupeWindow,
		TTL:           c.KeyTTL,
		Lease:         c.Lease,
		DeadLetterTTL: c.DeadLetterTTL,
		DeadLetterMax: c.DeadLetterMax,
		RedisTimeout:  c.RedisTimeout,
		Logger:        log,
	}
	c.windowOptions(&o)
	return o
}
