package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/httpapi"
	"github.com/lullhq/lull/internal/store"
	"github.com/lullhq/lull/internal/testenv"
)

const adminToken = "test-admin-token-0123456789"

func admin(method, path, token string) *http.Request {
	req := httptest.NewRequest(method, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// storeOptions are testenv.StoreOptions as change says.
func storeOptions(change func(*store.Options)) store.Options {
	o := testenv.StoreOptions()
	change(&o)
	return o
}

// deadLetter leaves one dead-lettered batch of key in buf.
func deadLetter(t *testing.T, buf *store.Store, key string) string {
	t.Helper()
	ctx := context.Background()
	_, err := buf.Append(ctx, key, "m1", []byte(`{"id":"m1","text":"oi","received_at":"2026-11-25T20:00:00.000Z"}`), false)
	require.NoError(t, err)
	var c *store.Claim
	require.Eventually(t, func() bool {
		f := buf.FlushDue(ctx, []string{key}, "w1")[0]
		require.NoError(t, f.Err)
		c = f.Claim
		return f.Result == ""
	}, 2*time.Second, 5*time.Millisecond)
	require.NoError(t, c.DeadLetter(ctx, "status 400"))
	return batch.ID(key, c.Generation)
}

func TestAdmin_DeadLettersListedAndReplayed(t *testing.T) {
	ns := testenv.Namespace(t, "admin")
	buf := store.New(testenv.Redis(t, ns), ns, storeOptions(func(o *store.Options) {
		o.QuietWindow = time.Millisecond
		o.TTL = time.Hour
		o.Lease = time.Minute
	}))
	tb := setup(t, testenv.AMQPURL(), func(o *httpapi.Options) { o.AdminToken, o.Admin = adminToken, buf })
	id := deadLetter(t, buf, "5511 a:b")
	q := "?batch_id=" + url.QueryEscape(id)

	for _, token := range []string{"", "wrong-token-0123456789"} {
		resp := tb.api(admin(http.MethodGet, "/admin/dead-letters", token))
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		resp.Body.Close()
	}

	resp := tb.api(admin(http.MethodGet, "/admin/dead-letters", adminToken))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.EqualValues(t, 1, decode(t, resp)["count"])

	resp = tb.api(admin(http.MethodGet, "/admin/dead-letters"+q, adminToken))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	got := decode(t, resp)
	require.Equal(t, "status 400", got["error"])
	require.Equal(t, id, got["batch"].(map[string]any)["batch_id"])

	resp = tb.api(admin(http.MethodPost, "/admin/dead-letters/replay"+q, adminToken))
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Equal(t, id, decode(t, resp)["batch_id"])

	resp = tb.api(admin(http.MethodPost, "/admin/dead-letters/replay"+q, adminToken))
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "replayed once")
	resp.Body.Close()
	resp = tb.api(admin(http.MethodPost, "/admin/dead-letters/replay", adminToken))
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	resp.Body.Close()
}

func TestAdmin_ManualFlush(t *testing.T) {
	ns := testenv.Namespace(t, "admin")
	buf := store.New(testenv.Redis(t, ns), ns, storeOptions(func(o *store.Options) {
		o.QuietWindow = time.Hour
		o.Lease = time.Minute
	}))
	tb := setup(t, testenv.AMQPURL(), func(o *httpapi.Options) { o.AdminToken, o.Admin = adminToken, buf })
	ctx := context.Background()

	resp := tb.api(admin(http.MethodPost, "/admin/flush?unique_id=u1", adminToken))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "nothing buffered", decode(t, resp)["status"])

	_, err := buf.Append(ctx, "u1", "m1", []byte(`{"id":"m1","text":"oi"}`), false)
	require.NoError(t, err)
	resp = tb.api(admin(http.MethodPost, "/admin/flush?unique_id=u1", adminToken))
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	resp.Body.Close()
	f := buf.FlushDue(ctx, []string{"u1"}, "w1")[0]
	require.NoError(t, f.Err)
	require.Empty(t, f.Result, "due at once, though the quiet window is an hour")
	require.Equal(t, "manual", f.Claim.Batch.Reason)
}

func TestAdmin_AbsentWithoutToken(t *testing.T) {
	tb := setup(t, testenv.AMQPURL())
	resp := tb.api(admin(http.MethodGet, "/admin/dead-letters", adminToken))
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp.Body.Close()
}
