package ingest_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/ingest"
)

var limits = ingest.Limits{MetadataBytes: 64 << 10, MessageBytes: 4 << 20}

func nested(levels int) string {
	return strings.Repeat(`{"a":`, levels) + "1" + strings.Repeat("}", levels)
}

func TestPrepare_DeepMetadataIsRefusedNamingTheField(t *testing.T) {
	t.Parallel()
	// 9,998 levels passed the api once, and the worker, one level deeper,
	// dead-lettered the message it had answered 202 for.
	for _, levels := range []int{ingest.MaxMetadataDepth + 1, 9998} {
		env, err := ingest.ParseGeneric([]byte(`{"unique_id":"u","message":"oi","metadata":`+nested(levels)+`}`), received, fixedID)
		require.NoError(t, err)
		_, err = limits.Prepare(env)
		var fe *ingest.FieldError
		require.ErrorAs(t, err, &fe, "%d levels", levels)
		require.Equal(t, "metadata", fe.Field)
	}
	env, err := ingest.ParseGeneric([]byte(`{"unique_id":"u","message":"oi","metadata":`+nested(ingest.MaxMetadataDepth)+`}`), received, fixedID)
	require.NoError(t, err)
	_, err = limits.Prepare(env)
	require.NoError(t, err, "exactly the limit is accepted")
	// Brackets inside strings are text, not nesting.
	env, err = ingest.ParseGeneric([]byte(`{"unique_id":"u","message":"oi","metadata":{"s":"`+strings.Repeat("[{", 100)+`\"]"}}`), received, fixedID)
	require.NoError(t, err)
	_, err = limits.Prepare(env)
	require.NoError(t, err)
}

func TestPrepare_SizeLimits(t *testing.T) {
	t.Parallel()
	small := ingest.Limits{MetadataBytes: 100, MessageBytes: 2000}
	env, err := ingest.ParseGeneric([]byte(`{"unique_id":"u","message":"oi","metadata":{"k":"`+strings.Repeat("x", 200)+`"}}`), received, fixedID)
	require.NoError(t, err)
	_, err = small.Prepare(env)
	var fe *ingest.FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "metadata", fe.Field)

	env, err = ingest.ParseGeneric([]byte(`{"unique_id":"u","message":"`+strings.Repeat("<", 3000)+`"}`), received, fixedID)
	require.NoError(t, err)
	_, err = small.Prepare(env)
	require.True(t, errors.Is(err, ingest.ErrTooLarge), "%v", err)
}

func TestPrepare_NoHTMLEscaping(t *testing.T) {
	t.Parallel()
	text := strings.Repeat("<>&", 1000)
	env, err := ingest.ParseGeneric([]byte(`{"unique_id":"u","message":"`+text+`","metadata":{"h":"<&>"}}`), received, fixedID)
	require.NoError(t, err)
	body, err := limits.Prepare(env)
	require.NoError(t, err)
	require.Contains(t, string(body), text)
	require.Contains(t, string(body), `"h":"<&>"`)
	require.Less(t, len(body), len(text)+400, "stored as written, not 6x")
}

// FuzzPrepare_AcceptedDecodes: whatever the api would answer 2xx for (it
// parses and Prepare accepts), the worker decodes to the same message.
func FuzzPrepare_AcceptedDecodes(f *testing.F) {
	f.Add([]byte(`{"unique_id":"u","message":"oi","metadata":{"a":[1,{"b":"<"}]}}`))
	f.Add([]byte(`{"unique_id":5511,"message":"x","message_id":"m","timestamp":"1700000000","metadata":` + nested(40) + `}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := ingest.ParseGeneric(body, received, fixedID)
		if err != nil {
			return
		}
		q, err := limits.Prepare(env)
		if err != nil {
			var fe *ingest.FieldError
			require.True(t, errors.As(err, &fe) || errors.Is(err, ingest.ErrTooLarge), "unclassified refusal: %v", err)
			return
		}
		got, err := ingest.Decode(q)
		require.NoError(t, err)
		require.Equal(t, env.Key, got.Key)
		require.Equal(t, env.Message.ID, got.Message.ID)
		require.Equal(t, env.Message.Text, got.Message.Text)
		require.JSONEq(t, string(env.Message.Metadata), string(got.Message.Metadata))
	})
}
