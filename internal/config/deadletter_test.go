package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/config"
)

func TestLoad_DeadLetterRetention(t *testing.T) {
	c, err := config.Load()
	require.NoError(t, err)
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
			t.Setenv(bad[0], bad[1])
			_, err := config.Load()
			require.Error(t, err)
			require.Contains(t, err.Error(), bad[0])
		})
	}
}
