package store

import (
	"context"
	"time"

	"github.com/lullhq/lull/internal/keys"
)

// Test-only access, for the store_test package.

// Keys is the store's key space.
func (b *Store) Keys() keys.Space { return b.keys }

// Flush claims one conversation (FlushDue for one key).
func (b *Store) Flush(ctx context.Context, key, owner string) (*Claim, FlushResult, error) {
	f := b.FlushDue(ctx, []string{key}, owner)[0]
	return f.Claim, f.Result, f.Err
}

// Renew extends the claim's lease once, counting nothing.
func (c *Claim) Renew(ctx context.Context) error {
	_, err := c.renew(ctx, 0, "")
	return err
}

// Age makes the claim's own view of its lease d older, as if it had waited
// that long for a delivery slot.
func (c *Claim) Age(d time.Duration) { c.held.Add(-d.Nanoseconds()) }

// GlobEscape is globEscape, for its test.
var GlobEscape = globEscape

// IsShardKey is isShardKey, for its test.
var IsShardKey = isShardKey
