// Package redisconn opens lull's Redis client, waiting for Redis to come up.
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"time"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/backoff"
	"github.com/lullhq/lull/internal/redact"
)

// Options of the client: no client-side cache (lull reads nothing twice).
func Options(url string) (rueidis.ClientOption, error) {
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		// *url.Error quotes the whole URL, password included: keep the cause.
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return rueidis.ClientOption{}, fmt.Errorf("redis url %s: %w", redact.URL(url), err)
	}
	opt.DisableCache = true
	return opt, nil
}

// Connect opens a client to url, retrying with backoff until Redis answers or
// ctx ends. rueidis reconnects by itself afterwards.
func Connect(ctx context.Context, url string, log *slog.Logger) (rueidis.Client, error) {
	opt, err := Options(url)
	if err != nil {
		return nil, err
	}
	policy := backoff.Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for attempt := 1; ; attempt++ {
		client, err := rueidis.NewClient(opt)
		if err == nil {
			return client, nil
		}
		log.Warn("redis not reachable, retrying", "attempt", attempt, "err", err)
		if err := backoff.Sleep(ctx, policy.Delay(attempt)); err != nil {
			return nil, fmt.Errorf("connect redis: %w", err)
		}
	}
}
