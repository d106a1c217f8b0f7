package testenv_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/config"
	"github.com/lullhq/lull/internal/testenv"
)

func TestTopology_IsTheConfigurationsRetention(t *testing.T) {
	t.Parallel()
	d := config.Defaults()
	o := testenv.Topology()
	require.Equal(t, d.DeadLetterTTL, o.DeadLetterTTL)
	require.Equal(t, d.DeadLetterMax, o.DeadLetterMax)
}
