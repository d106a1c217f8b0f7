package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/config"
)

func TestLoad_HealthAddr(t *testing.T) {
	c, err := config.Load()
	require.NoError(t, err)
	require.Empty(t, c.HealthAddr, "off unless set")

	for _, ok := range []string{":8081", "127.0.0.1:8081", "[::1]:8081", "localhost:0"} {
		t.Setenv("HEALTH_ADDR", ok)
		c, err := config.Load()
		require.NoError(t, err, ok)
		require.Equal(t, ok, c.HealthAddr)
	}
	for _, bad := range []string{"8081", "localhost", "host:port", ":70000", "::1:8081"} {
		t.Setenv("HEALTH_ADDR", bad)
		_, err := config.Load()
		require.ErrorContains(t, err, "HEALTH_ADDR", bad)
	}
}
