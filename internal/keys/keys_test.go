package keys_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/keys"
)

func TestConversation_KeysShareTheShardsHashTag(t *testing.T) {
	t.Parallel()
	// The shard must match scripts/inspect.sh (Python's zlib.crc32 % 16).
	require.Equal(t, 2, keys.Shard("5511999990000"))
	c := keys.New("lull").Conversation("a{b}:c")
	tag := fmt.Sprintf("lull:{s%02d}:", keys.Shard("a{b}:c"))
	for _, k := range []string{c.Due, c.Inflight, c.Buf, c.Meta, c.Seen, c.Batch, c.Dead, c.DeadRecord(7)} {
		require.True(t, strings.HasPrefix(k, tag), "%s: every key of a conversation starts with its shard's hash tag", k)
	}
	require.Equal(t, tag+"dead:a{b}:c:7", c.DeadRecord(7))
}

func TestParseBatchID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		key  string
		gen  int64
		okay bool
	}{
		{"5511:1795638741524", "5511", 1795638741524, true},
		{"whatsapp:+1:whatsapp:+55:17", "whatsapp:+1:whatsapp:+55", 17, true},
		{"nogen", "", 0, false},
		{":5", "", 0, false},
		{"u:0", "", 0, false},
		{"u:-3", "", 0, false},
		{"u:x", "", 0, false},
	}
	for _, tt := range tests {
		key, gen, ok := keys.ParseBatchID(tt.id)
		require.Equal(t, tt.okay, ok, tt.id)
		if ok {
			require.Equal(t, tt.key, key)
			require.Equal(t, tt.gen, gen)
		}
	}
}

func TestSlot_IsRedisClusterKeySlot(t *testing.T) {
	t.Parallel()
	// CLUSTER KEYSLOT answers of Redis 7.
	require.Equal(t, 12182, keys.Slot("foo"))
	require.Equal(t, 5061, keys.Slot("bar"))
	require.Equal(t, keys.Slot("user1000"), keys.Slot("{user1000}.following"))
	require.Equal(t, 8363, keys.Slot("foo{}{bar}"), "an empty first tag hashes the whole key")
	require.NotEqual(t, keys.Slot("bar"), keys.Slot("foo{}{bar}"))
	c := keys.New("lull").Conversation("a{b}:c")
	for _, k := range []string{c.Due, c.Inflight, c.Buf, c.Meta, c.Seen, c.Batch, c.Last, c.Dead, c.Stats, c.DeadRecord(3)} {
		require.Equal(t, keys.Slot(c.Due), keys.Slot(k), k)
	}
}

func TestSetShards_Bounds(t *testing.T) {
	t.Parallel()
	require.Error(t, keys.SetShards(0))
	require.Error(t, keys.SetShards(keys.MaxShards+1))
}
