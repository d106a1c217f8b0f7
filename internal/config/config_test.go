package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/config"
)

// Tests here set environment variables, so they do not run in parallel.

// setenv sets the variables of kv, name and value pairs, for the test.
func setenv(t *testing.T, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		t.Setenv(kv[i], kv[i+1])
	}
}

// load sets the variables of kv (name and value pairs) and loads the
// configuration, which must be valid.
func load(t *testing.T, kv ...string) config.Config {
	t.Helper()
	setenv(t, kv...)
	c, err := config.Load()
	require.NoError(t, err)
	return c
}

// loadErr sets the variables of kv (name and value pairs) and returns the
// error loading the configuration gives.
func loadErr(t *testing.T, kv ...string) error {
	t.Helper()
	setenv(t, kv...)
	_, err := config.Load()
	return err
}

// requireRejected checks that loading with the variables of kv fails with
// an error naming want.
func requireRejected(t *testing.T, want string, kv ...string) {
	t.Helper()
	err := loadErr(t, kv...)
	require.Error(t, err)
	require.Contains(t, err.Error(), want)
}

func TestLoad_DefaultsMatchTheContract(t *testing.T) {
	c := load(t)
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
	c := load(t,
		"REDIS_HOST", "redis.internal",
		"REDIS_PORT", "16985",
		"REDIS_USER", "default",
		"REDIS_PASS", "s3cr3t",
		"CELERY_BROKER", "amqp://u:p@rabbit:5672/vh")
	require.Equal(t, "redis://default:s3cr3t@redis.internal:16985/0", c.RedisURL)
	require.Equal(t, "amqp://u:p@rabbit:5672/vh", c.AMQPURL)

	c = load(t, "REDIS_URL", "redis://other:6379/1", "AMQP_URL", "amqp://x:y@z:5672/")
	require.Equal(t, "redis://other:6379/1", c.RedisURL, "the URL form wins")
	require.Equal(t, "amqp://x:y@z:5672/", c.AMQPURL)
}

func TestLoad_ListsAndZeroCap(t *testing.T) {
	c := load(t, "SINKS", "log, http", "CALLBACK_URL", "http://127.0.0.1:9000/batches", "MAX_WAIT", "0")
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
			var kv []string
			for k, v := range tt.env {
				kv = append(kv, k, v)
			}
			requireRejected(t, tt.want, kv...)
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
			err := loadErr(t, name, value)
			require.ErrorContains(t, err, name)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
	// '#' in the password: the URL does not parse, which is when a naive
	// redaction gives up and prints it whole.
	err := loadErr(t, "AMQP_URL", "amqp://guest:SECRET#PW@host/")
	require.ErrorContains(t, err, "AMQP_URL")
	require.NotContains(t, err.Error(), "SECRET")
	require.NotContains(t, err.Error(), "PW")
}

func TestLoad_CallbackTokenIsNotPrinted(t *testing.T) {
	err := loadErr(t, "SINKS", "http", "CALLBACK_URL", "ftp://bot.example/cb?token=hunter2")
	require.ErrorContains(t, err, "CALLBACK_URL")
	require.NotContains(t, err.Error(), "hunter2")
}

func TestLoad_SinkNamesAreCaseInsensitive(t *testing.T) {
	c := load(t, "SINKS", "LOG, Http", "CALLBACK_URL", "http://127.0.0.1:9000/batches")
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
		require.NoError(t, loadErr(t, "REDIS_URL", u), u)
	}
}

func TestLoad_ImmediateFlushPerProvider(t *testing.T) {
	c := load(t, "IMMEDIATE_FLUSH_TWILIO", "none", "IMMEDIATE_FLUSH_WHATSAPP", "media,command")
	rs, err := c.FlushRules()
	require.NoError(t, err)
	// The two set, and the four providers with a default of their own.
	require.Len(t, rs.BySource, 6)

	err = loadErr(t, "IMMEDIATE_FLUSH_EVOLUTION", "typing")
	require.ErrorContains(t, err, "IMMEDIATE_FLUSH_EVOLUTION")
}

func TestLoad_DeadLetterRetention(t *testing.T) {
	c := load(t)
	require.Equal(t, 720*time.Hour, c.DeadLetterTTL)
	require.Equal(t, 10000, c.DeadLetterMax)

	for _, bad := range [][2]string{
		{"DEAD_LETTER_TTL", "0s"},
		{"DEAD_LETTER_TTL", "-1h"},
		{"DEAD_LETTER_TTL", "1ns"},
		{"DEAD_LETTER_TTL", "87600h"}, // over RabbitMQ's largest x-message-ttl
		{"DEAD_LETTER_MAX", "0"},
		{"DEAD_LETTER_MAX", "-5"},
	} {
		t.Run(bad[0]+"="+bad[1], func(t *testing.T) {
			requireRejected(t, bad[0], bad[0], bad[1])
		})
	}
}

func TestLoad_HealthAddr(t *testing.T) {
	c := load(t)
	require.Empty(t, c.HealthAddr, "off unless set")

	for _, ok := range []string{":8081", "127.0.0.1:8081", "[::1]:8081", "localhost:0"} {
		t.Setenv("HEALTH_ADDR", ok)
		c, err := config.Load()
		require.NoError(t, err, ok)
		require.Equal(t, ok, c.HealthAddr)
	}
	for _, bad := range []string{"8081", "localhost", "host:port", ":70000", "::1:8081"} {
		require.ErrorContains(t, loadErr(t, "HEALTH_ADDR", bad), "HEALTH_ADDR", bad)
	}
}

func TestLoad_MetricsAddr(t *testing.T) {
	c := load(t)
	require.Equal(t, ":9090", c.MetricsListenAddr(config.ProcessAPI), "the api's default")
	require.Equal(t, ":9091", c.MetricsListenAddr(config.ProcessWorker), "the worker's default")

	for _, off := range []string{"off", "OFF"} {
		c = load(t, "METRICS_ADDR", off)
		require.Empty(t, c.MetricsListenAddr(config.ProcessAPI), off)
		require.Empty(t, c.MetricsListenAddr(config.ProcessWorker), off)
	}
	for _, ok := range []string{":9100", "127.0.0.1:9100", "[::1]:9100", "localhost:0"} {
		c = load(t, "METRICS_ADDR", ok)
		require.Equal(t, ok, c.MetricsListenAddr(config.ProcessAPI), "set, it is every process's")
		require.Equal(t, ok, c.MetricsListenAddr(config.ProcessWorker))
	}
	for _, bad := range []string{"9100", "on", "host:port", ":70000"} {
		require.ErrorContains(t, loadErr(t, "METRICS_ADDR", bad), "config: METRICS_ADDR: ", bad)
	}
	require.ErrorContains(t, loadErr(t, "METRICS_ADDR", "127.0.0.1:8000"), "must not share HTTP_ADDR's port")
	require.ErrorContains(t, loadErr(t, "METRICS_ADDR", "", "HTTP_ADDR", ":9090"), "must not share HTTP_ADDR's port",
		"the api's default too")
}
