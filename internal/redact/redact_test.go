package redact_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/redact"
)

func TestURL_HidesUserinfoAndQueryValues(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"amqp://guest:guest@127.0.0.1:5672/", "amqp://xxxxx@127.0.0.1:5672/"},
		// '#' starts a fragment for url.Parse, so the URL does not parse.
		{"amqp://guest:SECRET#PW@host/", "amqp://xxxxx@host/"},
		{"amqp://u:p@ss/w?rd@host:5672/vh", "amqp://xxxxx@host:5672/vh"},
		{"redis://default:s3cr3t@redis:6379/0", "redis://xxxxx@redis:6379/0"},
		{"https://bot.example/cb?token=abc123&v=2", "https://bot.example/cb?token=xxxxx&v=xxxxx"},
		{"https://bot.example/cb?flag", "https://bot.example/cb?flag"},
		{"https://bot.example/cb#frag-secret", "https://bot.example/cb"},
		{"http://127.0.0.1:9000/batches", "http://127.0.0.1:9000/batches"},
		{"not a url ?k=v", "not a url ?k=xxxxx"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, redact.URL(tt.in), tt.in)
	}
}

func FuzzURL_NeverShowsThePassword(f *testing.F) {
	f.Add("amqp://guest:", "SECRET#PW", "@host/")
	f.Add("https://", "tok", "@h/?q=1")
	f.Fuzz(func(t *testing.T, prefix, secret, suffix string) {
		if len(secret) < 4 || strings.ContainsAny(secret, "@") || !strings.Contains(prefix, "://") ||
			!strings.HasPrefix(suffix, "@") || strings.Contains(prefix[strings.Index(prefix, "://")+3:], "@") ||
			strings.Contains(prefix+suffix+redact.Mask, secret) {
			t.Skip()
		}
		out := redact.URL(prefix + secret + suffix)
		require.NotContains(t, out, secret)
	})
}
