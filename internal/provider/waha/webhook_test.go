package waha_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/provider"
	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/waha"
)

// docSignature is the documented X-Webhook-Hmac of testdata/doc_text.json
// under the key "test_waha_key".
const docSignature = "f78b5571b896627b838ad691cf88ae27b2864b7616fea54102ba818fe5af6c900e85c6ce51d6780925a3fe99151959488ff4cb1e69d33687376f7bff2d455933"

func request(body []byte, headers map[string]string) provider.Request {
	h := http.Header{}
	for k, v := range headers {
		h.Set(k, v)
	}
	return provider.Request{Body: body, Header: h.Get, Now: providertest.Received}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	body := providertest.Fixture(t, "doc_text.json")
	w := waha.New("test_waha_key")
	tests := []struct {
		name    string
		body    []byte
		headers map[string]string
		ok      bool
	}{
		{"documented signature", body, map[string]string{waha.SignatureHeader: docSignature, waha.AlgorithmHeader: "sha512"}, true},
		{"upper-case hex, no algorithm", body, map[string]string{waha.SignatureHeader: strings.ToUpper(docSignature)}, true},
		{"missing", body, nil, false},
		{"other key", body, map[string]string{waha.SignatureHeader: waha.Sign("other", body)}, false},
		{"body changed", append(append([]byte{}, body...), ' '), map[string]string{waha.SignatureHeader: docSignature}, false},
		{"not hex", body, map[string]string{waha.SignatureHeader: "zz"}, false},
		{"other algorithm", body, map[string]string{waha.SignatureHeader: docSignature, waha.AlgorithmHeader: "sha256"}, false},
	}
	for _, tt := range tests {
		err := w.Authenticate(request(tt.body, tt.headers))
		providertest.RequireVerdict(t, tt.name, err, tt.ok, provider.ErrUnauthorized)
		if !tt.ok {
			require.ErrorIs(t, err, waha.ErrSignature, tt.name)
		}
	}
	// Without a key every request is accepted, and the api warns at start.
	require.NoError(t, waha.New("").Authenticate(request(body, nil)))
	require.NotEmpty(t, waha.New("").Info().Warning)
	require.Empty(t, w.Info().Warning)
}
