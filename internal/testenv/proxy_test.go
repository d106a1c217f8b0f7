package testenv_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/testenv"
)

func TestStallProxy_HoldsBytesWhileStalledAndClosesNothing(t *testing.T) {
	t.Parallel()
	// An echo server behind the proxy.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1024)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	proxy := testenv.StartStallProxy(t, ln.Addr().String())
	conn, err := net.Dial("tcp", proxy.Addr())
	require.NoError(t, err)
	defer conn.Close()
	r := bufio.NewReader(conn)
	echo := func(line string, within time.Duration) (string, error) {
		if _, err := conn.Write([]byte(line + "\n")); err != nil {
			return "", err
		}
		_ = conn.SetReadDeadline(time.Now().Add(within))
		return r.ReadString('\n')
	}

	got, err := echo("one", 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, "one\n", got)

	proxy.Stall()
	_, err = echo("two", 200*time.Millisecond)
	var nerr net.Error
	require.ErrorAs(t, err, &nerr, "nothing arrives while stalled")
	require.True(t, nerr.Timeout(), "and nothing is closed: %v", err)

	proxy.Resume()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	got, err = r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "two\n", got, "held bytes arrive once resumed")
}
