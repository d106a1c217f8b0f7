package e2e

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSIGTERM_WorkerExitsPromptly(t *testing.T) {
	b := setup(t, options{})
	const key = "5511999990013"
	b.send(key, msgText(key, 0))
	b.waitDelivered(10 * time.Second) // the worker has worked, and is idle again

	const prompt = 5 * time.Second
	for _, p := range []*proc{b.workers[0], b.api} {
		code, took, err := p.terminate(stopTimeout)
		require.NoError(t, err)
		assert.Equal(t, 0, code, "%s exit status after SIGTERM", p.name)
		assert.Less(t, took, prompt, "%s took too long to exit", p.name)
		t.Logf("%s exited %d, %s after SIGTERM", p.name, code, took.Round(time.Millisecond))
	}
	assertExactlyOnce(t, b.sentSoFar(), b.recv.accepted())
}

// A client that opened a connection and has not sent a request yet (a
// pre-connecting proxy, Go's transport after a dial race) must not hold up
// the api's shutdown (Fiber's own Shutdown would wait for it until
// ReadTimeout; httpapi.Server.Drain waits only for requests under way).
func TestSIGTERM_APIExitsPromptlyWithASilentConnection(t *testing.T) {
	b := setup(t, options{})
	conn, err := net.Dial("tcp", b.addr) // connects, sends nothing
	require.NoError(t, err)
	defer conn.Close()
	time.Sleep(100 * time.Millisecond) // let the api accept it

	code, took, err := b.api.terminate(stopTimeout)
	require.NoError(t, err)
	assert.Equal(t, 0, code)
	assert.Less(t, took, 2*time.Second, "api shutdown waited for a connection that never sent a request")
}
