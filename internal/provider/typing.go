package provider

import (
	"time"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/ingest"
)

// Typing is the typing hint of conversation key (already built with Key):
// the user from is typing or recording (presence, as the provider says it)
// to the business side to. It extends the quiet window; nothing is stored.
func Typing(source, key, from, to, presence string, receivedAt time.Time) ingest.Envelope {
	meta := Meta{}
	meta.Str("presence", presence)
	return ingest.Envelope{Key: key, Kind: ingest.KindTyping, Message: batch.Message{
		ReceivedAt: batch.FormatTime(receivedAt),
		Source:     source,
		From:       Truncate(from, ingest.MaxKeyBytes),
		To:         to,
		Metadata:   meta.JSON(),
	}}
}
