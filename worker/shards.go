package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/config"
	"github.com/lullhq/lull/internal/keys"
	"github.com/lullhq/lull/internal/redisconn"
	"github.com/lullhq/lull/internal/store"
)

const shardsUsage = `usage: worker shards          print the namespace's recorded shard count
       worker shards set N    record N, once the namespace is drained (nothing buffering,
                              in flight or dead-lettered); then start every process with SHARDS=N`

// checkShards makes SHARDS the key layout of this process and checks it
// against the count Redis records for the namespace (recording it first).
func checkShards(ctx context.Context, client rueidis.Client, cfg config.Config) error {
	if err := keys.SetShards(cfg.Shards); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return store.CheckShards(ctx, client, cfg.Namespace, cfg.Shards)
}

// shards is the shard count's command line.
func shards(args []string) int {
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var n int
	switch {
	case len(args) == 0:
	case len(args) == 2 && args[0] == "set":
		if n, err = strconv.Atoi(args[1]); err != nil {
			fmt.Fprintln(os.Stderr, shardsUsage)
			return 2
		}
	default:
		fmt.Fprintln(os.Stderr, shardsUsage)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opt, err := redisconn.Options(cfg.RedisURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	client, err := rueidis.NewClient(opt)
	if err != nil {
		fmt.Fprintln(os.Stderr, "redis:", err)
		return 1
	}
	defer client.Close()
	if len(args) == 0 {
		got, err := store.RecordedShards(ctx, client, cfg.Namespace)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if got == 0 {
			fmt.Printf("namespace %s: no shard count recorded yet (the first process records its SHARDS, default %d)\n", cfg.Namespace, keys.DefaultShards)
			return 0
		}
		fmt.Printf("namespace %s: SHARDS=%d\n", cfg.Namespace, got)
		return 0
	}
	if err := store.ChangeShards(ctx, client, cfg.Namespace, n); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("namespace %s: SHARDS=%d recorded; start every api and worker with SHARDS=%d\n", cfg.Namespace, n, n)
	return 0
}
