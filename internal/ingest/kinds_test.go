package ingest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/ingest"
)

// Pause and resume travel the queue like typing: no message id needed.
func TestDecode_ControlKinds(t *testing.T) {
	for _, kind := range []string{ingest.KindTyping, ingest.KindPause, ingest.KindResume} {
		e, err := ingest.Decode([]byte(`{"key":"chatwoot:1:2","kind":"` + kind + `","message":{}}`))
		require.NoError(t, err, kind)
		require.Equal(t, kind, e.Kind)
		require.True(t, ingest.IsControl(kind))
	}
	require.False(t, ingest.IsControl(ingest.KindMessage))
	_, err := ingest.Decode([]byte(`{"key":"k","kind":"handoff","message":{"id":"1"}}`))
	require.ErrorContains(t, err, `unknown kind "handoff"`)
}
