package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/hmacsig"
	"github.com/lullhq/lull/internal/provider/whatsapp"
	"github.com/lullhq/lull/internal/testenv"
)

// gzipBomb is a small body that inflates to size bytes of zeros.
func gzipBomb(t *testing.T, size int) string {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(make([]byte, size))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.String()
}

func TestCompressedBodies_RefusedBeforeInflating(t *testing.T) {
	tb := setup(t, testenv.AMQPURL(), configured)
	bomb := gzipBomb(t, 16<<20)
	for _, path := range []string{"/webhook", "/webhook/whatsapp", "/webhook/evolution"} {
		for _, enc := range []string{"gzip", "deflate, gzip", "br"} {
			code, _, body := status(t, tb, request(http.MethodPost, path, "application/json", bomb, "Content-Encoding", enc))
			require.Equal(t, http.StatusUnsupportedMediaType, code, "%s %s: %s", path, enc, body)
			require.Contains(t, body, "Content-Encoding")
		}
	}
	code, _, _ := status(t, tb, request(http.MethodPost, "/webhook", "application/json", `{"unique_id":"u","message":"m"}`, "Content-Encoding", "identity"))
	require.Equal(t, http.StatusAccepted, code, "identity is no encoding")
	require.Len(t, tb.queued(t), 1, "only the identity request was stored")
}

func TestWhatsApp_BatchKeepsPayloadOrderPerConversation(t *testing.T) {
	tb := setup(t, testenv.AMQPURL(), configured)
	var msgs []string
	for i := range 8 {
		for _, user := range []string{"5511900000001", "5511900000002"} {
			msgs = append(msgs, fmt.Sprintf(`{"from":%q,"id":"wamid.%s.%d","timestamp":"1700000000","type":"text","text":{"body":"m%d"}}`, user, user, i, i))
		}
	}
	body := `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"200000000000002"},"messages":[` +
		strings.Join(msgs, ",") + `]}}]}]}`
	code, _, answer := status(t, tb, request(http.MethodPost, "/webhook/whatsapp", "application/json", body,
		whatsapp.SignatureHeader, hmacsig.Sign(appSecret, []byte(body))))
	require.Equal(t, http.StatusOK, code, answer)

	perUser := map[string][]string{}
	for _, e := range tb.queued(t) {
		perUser[e.Message.From] = append(perUser[e.Message.From], e.Message.Text)
	}
	want := []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"}
	require.Equal(t, want, perUser["5511900000001"], "same-second messages reach the queue in payload order")
	require.Equal(t, want, perUser["5511900000002"])
}
