package appender

import (
	"context"

	"github.com/lullhq/lull/internal/store"
)

// SetAppendMany replaces the store's AppendMany (before Start).
func (a *Appender) SetAppendMany(f func(context.Context, []store.AppendJob) ([]store.Appended, []error)) {
	a.appendMany = f
}
