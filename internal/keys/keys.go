// Package keys builds every Redis key lull uses. All keys of one
// conversation share the hash tag of its shard ({sNN}), so each Lua script
// touches a single hash slot and lull runs on Redis Cluster unchanged.
//
// Layout, for NAMESPACE=lull and a conversation key K in shard 07:
//
//	lull:{s07}:due          ZSET  member K, score = flush deadline (Unix ms)
//	lull:{s07}:inflight     ZSET  member K, score = lease expiry (Unix ms)
//	lull:{s07}:buf:K        LIST  buffered messages (JSON), arrival order
//	lull:{s07}:meta:K       HASH  gen, first_at, last_at, deadline, reason
//	lull:{s07}:seen:K       ZSET  message ids already stored, score = receipt (Unix ms)
//	lull:{s07}:batch:K      HASH  the claimed batch: gen, reason, messages, flushed_at, attempt, owner
//	lull:{s07}:last:K       HASH  the last delivered batch, kept DISCARD_WINDOW for a discard (only with the /v1 API)
//	lull:{s07}:dead         ZSET  dead-lettered batch ids, score = when (Unix ms)
//	lull:{s07}:dead:K:G     HASH  a dead-lettered batch (batch id K:G): the batch's fields, error, dead_at
//	lull:{s07}:stats        HASH  the shard's cumulative counters: appended, duplicates, flushed, lateness_ms, delivered, dead
package keys

import (
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// DefaultShards is SHARDS unset.
const DefaultShards = 16

// MaxShards bounds SHARDS: every poll of every worker reads each shard.
const MaxShards = 1024

// Shards is how many shards conversations are spread over (SHARDS). It is
// part of the key layout: changing it moves conversations to other keys,
// so Redis records it (store.CheckShards) and a process with another count
// refuses to start. Set it once, with SetShards, before anything runs.
var Shards = DefaultShards

// SetShards sets Shards to n, 1 to MaxShards.
func SetShards(n int) error {
	if n < 1 || n > MaxShards {
		return fmt.Errorf("shards %d must be between 1 and %d", n, MaxShards)
	}
	Shards = n
	return nil
}

// Space builds the keys of one namespace.
type Space struct {
	ns string
}

// New returns the key space of namespace ns.
func New(ns string) Space { return Space{ns: ns} }

// Namespace is the prefix of every key.
func (s Space) Namespace() string { return s.ns }

// Shard is the shard a conversation key lives in.
func Shard(key string) int {
	return int(crc32.ChecksumIEEE([]byte(key)) % uint32(Shards))
}

// Slot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of its hash
// tag, the first non-empty {...}, or of the whole key, modulo 16384. Every
// key of a shard has the same slot, so each script runs on one node.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc % 16384)
}

func (s Space) tag(shard int) string {
	return fmt.Sprintf("%s:{s%02d}", s.ns, shard)
}

// ShardsKey is the string holding the namespace's shard count (SHARDS), as
// the first process to start recorded it.
func (s Space) ShardsKey() string { return s.ns + ":shards" }

// Due is the sorted set of conversations waiting for their deadline in shard.
func (s Space) Due(shard int) string { return s.tag(shard) + ":due" }

// Inflight is the sorted set of leases of claimed batches in shard.
func (s Space) Inflight(shard int) string { return s.tag(shard) + ":inflight" }

// Dead is the sorted set of dead-lettered batch ids in shard.
func (s Space) Dead(shard int) string { return s.tag(shard) + ":dead" }

// Stats is the hash of shard's cumulative counters (see store.Totals).
func (s Space) Stats(shard int) string { return s.tag(shard) + ":stats" }

// Conversation holds the keys of one conversation.
type Conversation struct {
	Key      string // the conversation key (unique_id), the member in Due and Inflight
	Due      string
	Inflight string
	Buf      string
	Meta     string
	Seen     string
	Batch    string
	Last     string // the last delivered batch (kept for a discard)
	Dead     string // the shard's dead-letter set
	Stats    string // the shard's counters
}

// DeadRecord is the key of the conversation's dead-lettered batch of generation gen.
func (c Conversation) DeadRecord(gen int64) string {
	return strings.TrimSuffix(c.Dead, "dead") + "dead:" + c.Key + ":" + strconv.FormatInt(gen, 10)
}

// ParseBatchID splits a batch id (key:generation) into its parts.
func ParseBatchID(id string) (key string, gen int64, ok bool) {
	i := strings.LastIndexByte(id, ':')
	if i <= 0 {
		return "", 0, false
	}
	gen, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil || gen <= 0 {
		return "", 0, false
	}
	return id[:i], gen, true
}

// Conversation returns the keys of conversation key.
func (s Space) Conversation(key string) Conversation {
	shard := Shard(key)
	tag := s.tag(shard)
	return Conversation{
		Key:      key,
		Due:      s.Due(shard),
		Inflight: s.Inflight(shard),
		Buf:      tag + ":buf:" + key,
		Meta:     tag + ":meta:" + key,
		Seen:     tag + ":seen:" + key,
		Batch:    tag + ":batch:" + key,
		Last:     tag + ":last:" + key,
		Dead:     s.Dead(shard),
		Stats:    s.Stats(shard),
	}
}
