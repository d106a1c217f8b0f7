package testenv

import (
	"time"

	"github.com/lullhq/lull/internal/store"
)

// StoreOptions are valid store options for a test (a quiet window of 10s,
// a lease of 30s, ...); a test changes what it is about.
func StoreOptions() store.Options {
	return store.Options{
		QuietWindow:   10 * time.Second,
		MaxWait:       60 * time.Second,
		MaxMessages:   100,
		DedupeWindow:  time.Hour,
		TTL:           24 * time.Hour,
		Lease:         30 * time.Second,
		DeadLetterTTL: 720 * time.Hour,
		DeadLetterMax: 10000,
		RedisTimeout:  2 * time.Second,
	}
}
