package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/redis/rueidis"

	"github.com/lullhq/lull/internal/config"
	"github.com/lullhq/lull/internal/jsonenc"
	"github.com/lullhq/lull/internal/redisconn"
	"github.com/lullhq/lull/internal/store"
)

const dlqUsage = `usage: worker dlq list            list dead-lettered batches
       worker dlq show BATCH_ID   print one dead-lettered batch as JSON
       worker dlq replay BATCH_ID put it back in flight (same batch_id); a running worker delivers it`

// dlq is the dead-letter store's command line, for operators and Taskfile.
func dlq(args []string) int {
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if len(args) == 0 || (args[0] != "list" && len(args) != 2) {
		fmt.Fprintln(os.Stderr, dlqUsage)
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
	buf := store.New(client, cfg.Namespace, cfg.StoreOptions(nil))

	switch args[0] {
	case "list":
		all, err := buf.DeadLetters(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if len(all) == 0 {
			fmt.Println("no dead letters in namespace", cfg.Namespace)
		}
		for _, d := range all {
			fmt.Printf("%s\t%d messages\tattempts %d\tdead at %s\t%s\n",
				d.Batch.BatchID, len(d.Batch.Messages), d.Batch.Attempt, d.DeadAt, d.Error)
		}
	case "show":
		d, err := buf.DeadLetterByID(ctx, args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		out, _ := jsonenc.MarshalIndent(d, "", "  ")
		fmt.Println(string(out))
	case "replay":
		err := buf.Replay(ctx, args[1])
		switch {
		case errors.Is(err, store.ErrBusy):
			fmt.Fprintln(os.Stderr, err, "- try again once it is delivered")
			return 1
		case err != nil:
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("replaying", args[1], "- a running worker delivers it within POLL_INTERVAL")
	default:
		fmt.Fprintln(os.Stderr, dlqUsage)
		return 2
	}
	return 0
}
