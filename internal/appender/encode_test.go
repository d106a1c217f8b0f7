package appender

import (
	"testing"

	"github.com/stretchr/testify/require"
)

type boom struct{}

func (boom) MarshalJSON() ([]byte, error) { panic("boom") }

// A message whose encoding panics is an error (rejected), not a crash.
func TestEncode_PanicIsAnError(t *testing.T) {
	_, err := encode(boom{})
	require.ErrorContains(t, err, "panic: boom")
	body, err := encode(map[string]string{"text": "<oi>"})
	require.NoError(t, err)
	require.Equal(t, `{"text":"<oi>"}`, string(body))
}
