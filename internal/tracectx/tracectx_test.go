package tracectx_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/tracectx"
)

const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{valid, valid, true},
		{"  " + valid + " ", valid, true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", true},
		{"", "", false},
		{valid + "-x", "", false}, // version 00 is exactly 55 characters
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", "", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "", false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "", false}, // uppercase
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", "", false},
	} {
		got, ok := tracectx.Parse(tc.in)
		require.Equal(t, tc.ok, ok, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", tracectx.TraceID(valid))
	require.Empty(t, tracectx.TraceID("nope"))
}

func FuzzParse(f *testing.F) {
	f.Add(valid)
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := tracectx.Parse(in)
		if !ok {
			require.Empty(t, got)
			return
		}
		require.Len(t, tracectx.TraceID(got), 32)
		again, ok := tracectx.Parse(got)
		require.True(t, ok, "a parsed traceparent parses again")
		require.Equal(t, got, again)
		for i := 0; i < len(got); i++ {
			require.False(t, got[i] < 0x20 || got[i] == 0x7f, "a kept traceparent is a valid header value")
		}
	})
}
