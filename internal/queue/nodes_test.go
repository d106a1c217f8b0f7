package queue

import (
	"context"
	"net"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNodes_SplitsTheList(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"amqp://a/", "amqp://b/"}, Nodes(" amqp://a/ ,, amqp://b/,"))
	require.Equal(t, []string{"amqp://a/"}, Nodes("amqp://a/"))
	require.NoError(t, ParseNodes("amqp://a/,amqps://b:5671/vh"))
	require.ErrorContains(t, ParseNodes("amqp://a/,http://b/"), "node 2 of 2")
	require.Error(t, ParseNodes(" , "))
}

// A dead node in the list is skipped, wherever the random start puts it.
func TestDial_SkipsADeadNode(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "amqp://guest:guest@" + l.Addr().String() + "/"
	require.NoError(t, l.Close())
	live := os.Getenv("AMQP_URL")
	if live == "" {
		live = "amqp://guest:guest@127.0.0.1:5672/"
	}
	urls := dead + "," + live + "," + dead
	for range 6 {
		conn, err := dial(context.Background(), urls, "lull-test-dial")
		require.NoError(t, err)
		closeConn(conn)
	}
	_, err = dial(context.Background(), dead+","+dead, "lull-test-dial")
	require.Error(t, err)
}
