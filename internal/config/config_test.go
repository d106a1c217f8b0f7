package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/config"
)

// Tests here set environment variables, so they do not run in parallel.

func TestLoad_DefaultsMatchTheContract(t *testing.T) {
	c, err := config.Load()
	require.NoError(t, err)
	require.Equal(t, ":8000", c.HTTPAddr)
	require.Equal(t, "redis://127.0.0.1:6379/0", c.RedisURL)
	require.Equal(t, "amqp://guest:guest@127.0.0.1:5672/", c.AMQPURL)
	require.Equal(t, "lull", c.Namespace)
	require.Equal(t, 12*time.Second, c.QuietWindow)
	require.Equal(t, 60*time.Second, c.MaxWait)
	require.Equal(t, 100, c.MaxBatchMessages)
	require.Equal(t, []string{"log"}, c.Sinks)
}

func TestLoad_SeedNamesAreFallbacks(t *testing.T) {
	t.Setenv("REDIS_HOST", "redis.internal")
	t.Setenv("REDIS_PORT", "16985")
	t.Setenv("REDIS_USER", "default")
	t.Setenv("REDIS_PASS", "s3cr3t")
	t.Setenv("CELERY_BROKER", "amqp://u:p@rabbit:5672/vh")
	c, err := config.Load()
	require.NoError(t, err)
	require.Equal(t, "redis://default:s3cr3t@redis.internal:16985/0", c.RedisURL)
	require.Equal(t, "amqp://u:p@rabbit:5672/vh", c.AMQPURL)

	t.Setenv("REDIS_URL", "redis://other:6379/1")
	t.Setenv("AMQP_URL", "amqp://x:y@z:5672/")
	c, err = config.Load()
	require.NoError(t, err)
	require.Equal(t, "redis://other:6379/1", c.RedisURL, "the URL form wins")
	require.Equal(t, "amqp://x:y@z:5672/", c.AMQPURL)
}

func TestLoad_ListsAndZeroCap(t *testing.T) {
	t.Setenv("SINKS", "log, http")
	t.Setenv("CALLBACK_URL", "http://127.0.0.1:9000/batches")
	t.Setenv("MAX_WAIT", "0")
	c, err := config.Load()
	require.NoError(t, err)
	require.Equal(t, []string{"log", "http"}, c.Sinks)
	require.Zero(t, c.MaxWait)
}

func TestLoad_BadValuesNameTheVariable(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"QUIET_WINDOW": "soon"}, "QUIET_WINDOW"},
		{map[string]string{"QUIET_WINDOW": "0s"}, "QUIET_WINDOW"},
		{map[string]string{"MAX_WAIT": "-1s"}, "MAX_WAIT"},
		{map[string]string{"MAX_BATCH_MESSAGES": "0"}, "MAX_BATCH_MESSAGES"},
		{map[string]string{"MAX_BATCH_MESSAGES": "many"}, "MAX_BATCH_MESSAGES"},
		{map[string]string{"NAMESPACE": "a{b}"}, "NAMESPACE"},
		{map[string]string{"NAMESPACE": "-x"}, "NAMESPACE"},
		{map[string]string{"SINKS": "log,kafka"}, "SINKS"},
		{map[string]string{"SINKS": "http"}, "CALLBACK_URL"},
		{map[string]string{"SINKS": "http", "CALLBACK_URL": "ftp://x"}, "CALLBACK_URL"},
		{map[string]string{"REDIS_URL": "http://x"}, "REDIS_URL"},
		{map[string]string{"AMQP_URL": "redis://x"}, "AMQP_URL"},
		{map[string]string{"HTTP_ADDR": "8000"}, "HTTP_ADDR"},
		{map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{map[string]string{"KEY_TTL": "1m"}, "KEY_TTL"},
		{map[string]string{"RETRY_BACKOFF_MIN": "1m", "RETRY_BACKOFF_MAX": "1s"}, "RETRY_BACKOFF_MAX"},
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/abc"}, "REDIS_URL"},
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:99999/0"}, "REDIS_URL"},
		{map[string]string{"REDIS_URL": "redis://:6379/0"}, "REDIS_URL"},
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:port/0"}, "REDIS_URL"},
		{map[string]string{"REDIS_URL": "redis://h:1/0?addr=h2"}, "REDIS_URL"},
		{map[string]string{"REDIS_URL": "redis://h:1:2/0"}, "REDIS_URL"},
		{map[string]string{"AMQP_URL": "amqp://guest:guest@:5672/"}, "AMQP_URL"},
		{map[string]string{"AMQP_URL": "amqp://guest:guest@h:0/"}, "AMQP_URL"},
		{map[string]string{"NAMESPACE": ""}, "NAMESPACE"},
		{map[string]string{"NAMESPACE": "  "}, "NAMESPACE"},
		{map[string]string{"ADMIN_TOKEN": "                    "}, "ADMIN_TOKEN"},
		{map[string]string{"ADMIN_TOKEN": " padded-token-0123456789 "}, "ADMIN_TOKEN"},
		{map[string]string{"WEBHOOK_TOKEN": "short"}, "WEBHOOK_TOKEN"},
		{map[string]string{"MAX_BATCH_BYTES": "10"}, "MAX_BATCH_BYTES"},
		{map[string]string{"MAX_BUFFERED_MESSAGES": "0"}, "MAX_BUFFERED_MESSAGES"},
	}
	for _, tt := range tests {
		t.Run(tt.want+"="+strings.Join(values(tt.env), ","), func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := config.Load()
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func values(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestLoad_PasswordsAreNotPrinted(t *testing.T) {
	for name, value := range map[string]string{
		"AMQP_URL":  "http://user:hunter2@rabbit/",
		"REDIS_URL": "redis://default:hunter2@redis:6379/abc",
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, value)
			_, err := config.Load()
			require.ErrorContains(t, err, name)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
	// '#' in the password: the URL does not parse, which is when a naive
	// redaction gives up and prints it whole.
	t.Setenv("AMQP_URL", "amqp://guest:SECRET#PW@host/")
	_, err := config.Load()
	require.ErrorContains(t, err, "AMQP_URL")
	require.NotContains(t, err.Error(), "SECRET")
	require.NotContains(t, err.Error(), "PW")
}

func TestLoad_CallbackTokenIsNotPrinted(t *testing.T) {
	t.Setenv("SINKS", "http")
	t.Setenv("CALLBACK_URL", "ftp://bot.example/cb?token=hunter2")
	_, err := config.Load()
	require.ErrorContains(t, err, "CALLBACK_URL")
	require.NotContains(t, err.Error(), "hunter2")
}

func TestLoad_SinkNamesAreCaseInsensitive(t *testing.T) {
	t.Setenv("SINKS", "LOG, Http")
	t.Setenv("CALLBACK_URL", "http://127.0.0.1:9000/batches")
	c, err := config.Load()
	require.NoError(t, err)
	require.Equal(t, []string{"log", "http"}, c.Sinks)
}

func TestLoad_ClusterAndUnixRedisURLs(t *testing.T) {
	for _, u := range []string{
		"redis://h1:7000?addr=h2:7001&addr=h3:7002",
		"rediss://user:pw@redis.example:6380/2",
		"redis://[::1]:6379/0",
		"redis://redis.internal/0",
		"unix:///run/redis.sock",
	} {
		t.Setenv("REDIS_URL", u)
		_, err := config.Load()
		require.NoError(t, err, u)
	}
}

func TestLoad_ImmediateFlushPerProvider(t *testing.T) {
	t.Setenv("IMMEDIATE_FLUSH_TWILIO", "none")
	t.Setenv("IMMEDIATE_FLUSH_WHATSAPP", "media,command")
	c, err := config.Load()
	require.NoError(t, err)
	rs, err := c.FlushRules()
	require.NoError(t, err)
	require.Len(t, rs.BySource, 2)

	t.Setenv("IMMEDIATE_FLUSH_EVOLUTION", "typing")
	_, err = config.Load()
	require.ErrorContains(t, err, "IMMEDIATE_FLUSH_EVOLUTION")
}
