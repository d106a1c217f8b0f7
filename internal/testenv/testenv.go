// Package testenv gives tests what they share: the real Redis and RabbitMQ
// they talk to, and a namespace of their own so parallel tests never collide.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"testing"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/store"
)

// RedisURL is REDIS_URL, or the local default.
func RedisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// AMQPURL is AMQP_URL, or the local default.
func AMQPURL() string {
	if u := os.Getenv("AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// Namespace returns a fresh namespace named after prefix.
func Namespace(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "test-" + prefix + "-" + hex.EncodeToString(b)
}

// Redis connects to RedisURL and, when the test ends, deletes every key of
// namespace ns (and only those) and closes the client.
func Redis(t testing.TB, ns string) rueidis.Client {
	t.Helper()
	return RedisAt(t, RedisURL(), ns)
}

// RedisAt is Redis for the Redis at url (a Redis Cluster too: then the keys
// are deleted from every master).
func RedisAt(t testing.TB, url, ns string) rueidis.Client {
	t.Helper()
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DisableCache = true
	client, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatalf("redis %s: %v", url, err)
	}
	t.Cleanup(func() {
		DeleteNamespace(context.Background(), client, ns)
		client.Close()
	})
	return client
}

// Keys lists every key of namespace ns (of every node, on a Redis Cluster),
// each once.
func Keys(ctx context.Context, client rueidis.Client, ns string) []string {
	keys, _ := store.ScanKeys(ctx, client, store.NamespacePattern(ns))
	return keys
}

// DeleteNamespace deletes every key of namespace ns.
func DeleteNamespace(ctx context.Context, client rueidis.Client, ns string) {
	for _, k := range Keys(ctx, client, ns) {
		client.Do(ctx, client.B().Del().Key(k).Build())
	}
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
