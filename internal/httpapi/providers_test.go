package httpapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/batch"
	"github.com/lullhq/lull/internal/config"
	"github.com/lullhq/lull/internal/hmacsig"
	"github.com/lullhq/lull/internal/httpapi"
	"github.com/lullhq/lull/internal/ingest"
	"github.com/lullhq/lull/internal/provider/providertest"
	"github.com/lullhq/lull/internal/provider/twilio"
	"github.com/lullhq/lull/internal/provider/whatsapp"
	"github.com/lullhq/lull/internal/testenv"
)

// Secrets of the provider test vectors (Meta's signature vectors, Twilio's documented example).
const (
	appSecret    = "test_app_secret"
	verifyToken  = "test_verify_token"
	twilioToken  = "test_auth_token"
	evoJWTKey    = "test_jwt_key"
	evoHeader    = "X-Lull-Token: s3cret"
	docSignature = "sha256=fc8df1f241b598c7b4bfc3ff8df84c07038ba087463cd586cab05dfa45797d14"
	// The §3.5 form signed for https://bot.example.com/webhook/twilio, by hand
	// with Python's hmac (base64 HMAC-SHA1 of URL + sorted key+value pairs).
	twilioSignature = "wMWcuOf+d18DfRXKHbrFhj8XX88="
	// The same, for https://bot.example.com/webhook/twilio?tenant=a%20b.
	twilioQuerySignature = "L9ZcoXJ1C0dmIsXWQuOQAm/Io+c="
)

func withProviders(o httpapi.ProviderOptions) func(*httpapi.Options) {
	return func(opts *httpapi.Options) {
		opts.Providers = o
		opts.BodyLimit = 64 << 10
	}
}

var configured = withProviders(httpapi.ProviderOptions{
	WhatsAppVerifyToken: verifyToken, WhatsAppAppSecret: appSecret,
	EvolutionJWTKey: evoJWTKey, EvolutionHeader: evoHeader,
	TwilioAuthToken: twilioToken, PublicURL: "https://bot.example.com/",
})

func fixture(t *testing.T, provider, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "provider", provider, "testdata", name))
	require.NoError(t, err)
	return string(b)
}

func request(method, target, contentType, body string, headers ...string) *http.Request {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return req
}

func status(t *testing.T, tb testBundle, req *http.Request) (int, string, string) {
	t.Helper()
	resp := tb.api(req)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func TestWhatsApp_HandshakeEchoesTheChallenge(t *testing.T) {
	tb := setup(t, testenv.AMQPURL(), configured)
	get := func(mode, token string) *http.Request {
		q := url.Values{"hub.mode": {mode}, "hub.verify_token": {token}, "hub.challenge": {"1158201444"}}
		return request(http.MethodGet, "/webhook/whatsapp?"+q.Encode(), "", "")
	}
	code, ctype, body := status(t, tb, get("subscribe", verifyToken))
	require.Equal(t, http.StatusOK, code)
	require.True(t, strings.HasPrefix(ctype, "text/plain"), ctype)
	require.Equal(t, "1158201444", body, "verbatim, not JSON")

	for _, r := range []*http.Request{get("subscribe", "wrong"), get("unsubscribe", verifyToken), get("subscribe", "")} {
		code, _, _ := status(t, tb, r)
		require.Equal(t, http.StatusForbidden, code)
	}
}

func TestWhatsApp_HandshakeRefusedWithoutVerifyToken(t *testing.T) {
	tb := setup(t, testenv.AMQPURL())
	q := url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {""}, "hub.challenge": {"1"}}
	code, _, _ := status(t, tb, request(http.MethodGet, "/webhook/whatsapp?"+q.Encode(), "", ""))
	require.Equal(t, http.StatusForbidden, code)
}

func TestWhatsApp_SignedBatchIsQueuedPerMessage(t *testing.T) {
	tb := setup(t, testenv.AMQPURL(), configured)
	body := fixture(t, "whatsapp", "doc_batch_text_voice.json")
	code, ctype, resp := status(t, tb, request(http.MethodPost, "/webhook/whatsapp", "application/json", body,
		whatsapp.SignatureHeader, docSignature))
	require.Equal(t, http.StatusOK, code, resp)
	require.Equal(t, "application/json", ctype)
	require.JSONEq(t, `{"status":"ok"}`, resp)

	got := tb.queued(t)
	require.Len(t, got, 2)
	ids := map[string]string{}
	for _, e := range got {
		require.Equal(t, "whatsapp:200000000000002:BR.100000000000000001", e.Key)
		require.Equal(t, ingest.KindMessage, e.Kind)
		ids[e.Message.ID] = e.Message.Type
	}
	require.Equal(t, map[string]string{"wamid.TEST000000000001": batch.TypeText, "wamid.TEST000000000002": batch.TypeAudio}, ids)
}

func TestWhatsApp_RejectedRequestsPublishNothing(t *testing.T) {
	tb := setup(t, testenv.AMQPURL(), configured)
	body := fixture(t, "whatsapp", "doc_batch_text_voice.json")
	malformed := `{"object":`
	tests := []struct {
		name   string
		req    *http.Request
		status int
	}{
		{"no signature", request(http.MethodPost, "/webhook/whatsapp", "application/json", body), 401},
		{"wrong signature", request(http.MethodPost, "/webhook/whatsapp", "application/json", body,
			whatsapp.SignatureHeader, hmacsig.Sign("other", []byte(body))), 401},
		{"body changed", request(http.MethodPost, "/webhook/whatsapp", "application/json", body+" ",
			whatsapp.SignatureHeader, docSignature), 401},
		{"wrong content type", request(http.MethodPost, "/webhook/whatsapp", "text/plain", body,
			whatsapp.SignatureHeader, docSignature), 415},
		{"malformed, signed", request(http.MethodPost, "/webhook/whatsapp", "application/json", malformed,
			whatsapp.SignatureHeader, hmacsig.Sign(appSecret, []byte(malformed))), 400},
	}
	for _, tt := range tests {
		code, _, resp := status(t, tb, tt.req)
		require.Equal(t, tt.status, code, "%s: %s", tt.name, resp)
	}
	require.Empty(t, tb.queued(t))
}

func TestWhatsApp_StatusesOnlyIs200WithNothingQueued(t *testing.T) {
	tb := setup(t, testenv.AMQPURL(), configured)
	body := fixture(t, "whatsapp", "statuses.json")
	code, _, resp := status(t, tb, request(http.MethodPost, "/webhook/whatsapp", "application/json", body,
		whatsapp.SignatureHeader, hmacsig.Sign(appSecret, []byte(body))))
	require.Equal(t, http.StatusOK, code, resp)
	require.Empty(t, tb.queued(t))
}

func TestWhatsApp_UnsignedAcceptedWithoutAppSecret(t *testing.T) {
	tb := setup(t, testenv.AMQPURL())
	code, _, resp := status(t, tb, request(http.MethodPost, "/webhook/whatsapp", "application/json", fixture(t, "whatsapp", "text.json")))
	require.Equal(t, http.StatusOK, code, resp)
	require.Len(t, tb.queued(t), 1)
}

func TestWhatsApp_BrokerDownIs503SoMetaRetries(t *testing.T) {
	tb := setup(t, "amqp://guest:guest@127.0.0.1:1/", configured)
	body := fixture(t, "whatsapp", "doc_batch_text_voice.json")
	resp := tb.api(request(http.MethodPost, "/webhook/whatsapp", "application/json", body, whatsapp.SignatureHeader, docSignature))
	defer resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, httpapi.RetryAfterSeconds, resp.Header.Get("Retry-After"))
}

func evolutionAuth(t *testing.T) []string {
	t.Helper()
	iat := time.Now().Unix()
	tok, err := providertest.SignJWT(map[string]any{"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook"}, []byte(evoJWTKey))
	require.NoError(t, err)
	return []string{"Authorization", "Bearer " + tok, "X-Lull-Token", "s3cret"}
}

func TestEvolution_MessagesAndTypingAreQueued(t *testing.T) {
	tb := setup(t, testenv.AMQPURL(), configured)
	auth := evolutionAuth(t)
	for path, name := range map[string]string{
		"/webhook/evolution":                   "text_conversation.json",
		"/webhook/evolution/messages-upsert":   "image.json",
		"/webhook/evolution/presence-update":   "presence_composing.json",
		"/webhook/evolution/connection-update": "other_event.json",
		"/webhook/evolution/":                  "from_me.json",
	} {
		code, _, resp := status(t, tb, request(http.MethodPost, path, "application/json", fixture(t, "evolution", name), auth...))
		require.Equal(t, http.StatusOK, code, "%s: %s", path, resp)
		require.JSONEq(t, `{"status":"ok"}`, resp)
	}
	got := map[string]ingest.Envelope{}
	for _, e := range tb.queued(t) {
		require.Equal(t, "evolution:bot-01:5511900000001@s.whatsapp.net", e.Key)
		if e.Kind == ingest.KindTyping {
			require.NotEmpty(t, e.Message.ID, "given an id for the queue")
			e.Message.ID = ""
		}
		got[e.Kind+"/"+e.Message.ID] = e
	}
	require.Len(t, got, 3, "a text, an image and a typing hint; the other event and fromMe ignored")
	require.Contains(t, got, "/3EB0A1B2C3D4E5F6A7B8C9")
	require.Contains(t, got, "/3EB000000000000000000A")
	require.JSONEq(t, `{"presence":"composing"}`, string(got["typing/"].Message.Metadata))
}

func TestEvolution_RejectedRequestsPublishNothing(t *testing.T) {
	tb := setup(t, testenv.AMQPURL(), configured)
	body := fixture(t, "evolution", "text_conversation.json")
	good := evolutionAuth(t)
	expired, err := providertest.SignJWT(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}, []byte(evoJWTKey))
	require.NoError(t, err)
	tests := []struct {
		name    string
		ctype   string
		body    string
		headers []string
		status  int
	}{
		{"no credentials", "application/json", body, nil, 401},
		{"header only", "application/json", body, good[2:], 401},
		{"JWT only", "application/json", body, good[:2], 401},
		{"wrong header value", "application/json", body, []string{good[0], good[1], "X-Lull-Token", "nope"}, 401},
		{"expired JWT", "application/json", body, []string{"Authorization", "Bearer " + expired, "X-Lull-Token", "s3cret"}, 401},
		{"wrong content type", "text/plain", body, good, 415},
		{"malformed", "application/json", `{"event":`, good, 400},
		{"no key id", "application/json", `{"event":"messages.upsert","instance":"i","data":{"key":{"remoteJid":"1@s.whatsapp.net"}}}`, good, 422},
	}
	for _, tt := range tests {
		code, _, resp := status(t, tb, request(http.MethodPost, "/webhook/evolution", tt.ctype, tt.body, tt.headers...))
		require.Equal(t, tt.status, code, "%s: %s", tt.name, resp)
	}
	require.Empty(t, tb.queued(t))
}

func twilioPost(target, body string, headers ...string) *http.Request {
	return request(http.MethodPost, target, "application/x-www-form-urlencoded", body, headers...)
}

func TestTwilio_SignedMessageIsQueuedAndAnsweredWithTwiML(t *testing.T) {
	tb := setup(t, testenv.AMQPURL(), configured)
	body := fixture(t, "twilio", "text_doc.txt")
	code, ctype, resp := status(t, tb, twilioPost("/webhook/twilio", body, "X-Twilio-Signature", twilioSignature))
	require.Equal(t, http.StatusOK, code, resp)
	require.True(t, strings.HasPrefix(ctype, "text/xml"), ctype)
	require.Equal(t, `<?xml version="1.0" encoding="UTF-8"?><Response></Response>`, resp)

	code, _, resp = status(t, tb, twilioPost("/webhook/twilio?tenant=a%20b", body, "X-Twilio-Signature", twilioQuerySignature))
	require.Equal(t, http.StatusOK, code, "the query is part of the signed URL: %s", resp)

	got := tb.queued(t)
	require.Len(t, got, 2, "queued twice; the worker dedupes on the MessageSid")
	for _, e := range got {
		require.Equal(t, "twilio:whatsapp:+15550001111:whatsapp:+5511900000001", e.Key)
		require.Equal(t, "SM00000000000000000000000000000001", e.Message.ID)
	}
}

// Without PUBLIC_URL the signed URL is rebuilt from the proxy's headers.
func TestTwilio_URLFromForwardedHeaders(t *testing.T) {
	tb := setup(t, testenv.AMQPURL(), withProviders(httpapi.ProviderOptions{TwilioAuthToken: twilioToken}))
	body := fixture(t, "twilio", "text_doc.txt")
	code, _, resp := status(t, tb, twilioPost("/webhook/twilio", body, "X-Twilio-Signature", twilioSignature,
		"X-Forwarded-Proto", "https", "X-Forwarded-Host", "bot.example.com"))
	require.Equal(t, http.StatusOK, code, resp)
	code, _, _ = status(t, tb, twilioPost("/webhook/twilio", body, "X-Twilio-Signature", twilioSignature))
	require.Equal(t, http.StatusForbidden, code, "signed for the public URL, not http://127.0.0.1")
	require.Len(t, tb.queued(t), 1)
}

func TestTwilio_RejectedRequestsPublishNothing(t *testing.T) {
	tb := setup(t, testenv.AMQPURL(), configured)
	body := fixture(t, "twilio", "text_doc.txt")
	tests := []struct {
		name   string
		req    *http.Request
		status int
	}{
		{"no signature", twilioPost("/webhook/twilio", body), 403},
		{"wrong signature", twilioPost("/webhook/twilio", body, "X-Twilio-Signature", "fahqpY952k+OkfmTjYB/YoJsQUY="), 403},
		{"a parameter added", twilioPost("/webhook/twilio", body+"&Body=x", "X-Twilio-Signature", twilioSignature), 403},
		{"other query", twilioPost("/webhook/twilio?x=1", body, "X-Twilio-Signature", twilioSignature), 403},
		{"JSON", request(http.MethodPost, "/webhook/twilio", "application/json", `{}`, "X-Twilio-Signature", twilioSignature), 415},
		{"malformed form, wrong signature", twilioPost("/webhook/twilio", "a=%zz", "X-Twilio-Signature", twilioSignature), 403},
	}
	for _, tt := range tests {
		code, _, resp := status(t, tb, tt.req)
		require.Equal(t, tt.status, code, "%s: %s", tt.name, resp)
	}
	require.Empty(t, tb.queued(t))
}

// The signature is checked before the body is interpreted: a request that
// fails it is 403 whatever its body would have earned (400 for a bad
// encoding, 422 from twilio.Parse), and only a signed one gets that far.
func TestTwilio_SignatureIsCheckedBeforeTheBody(t *testing.T) {
	tb := setup(t, testenv.AMQPURL(), configured)
	const signedURL = "https://bot.example.com/webhook/twilio"
	signedFor := func(body string) string {
		params, _ := url.ParseQuery(body) // what decodes of it
		return twilio.Signature(twilioToken, signedURL, params)
	}
	noFrom := "MessageSid=SM1&To=whatsapp%3A%2B15550001111&Body=oi"
	badMedia := "MessageSid=SM2&From=whatsapp%3A%2B5511900000001&To=whatsapp%3A%2B15550001111&NumMedia=lots"
	badEncoding := noFrom + "&x=%zz"
	manyParams := strings.Repeat("a=1&", twilio.MaxParams) + "b=2"
	wrong := signedFor("Body=something+else")
	tests := []struct {
		name   string
		body   string
		sig    string
		status int
	}{
		{"bad encoding, wrong signature", badEncoding, wrong, 403},
		{"bad encoding, no signature", badEncoding, "", 403},
		{"no From, wrong signature", noFrom, wrong, 403},
		{"bad NumMedia, wrong signature", badMedia, wrong, 403},
		{"malformed signature", noFrom, "not-a-signature", 403},
		{"too many parameters to be Twilio", manyParams, signedFor(manyParams), 403},
		// Signed: now the body's own problems are reported.
		{"no From, signed", noFrom, signedFor(noFrom), 422},
		{"bad NumMedia, signed", badMedia, signedFor(badMedia), 422},
		{"bad encoding, signed over what decodes", badEncoding, signedFor(badEncoding), 400},
	}
	for _, tt := range tests {
		req := twilioPost("/webhook/twilio", tt.body)
		if tt.sig != "" {
			req.Header.Set("X-Twilio-Signature", tt.sig)
		}
		code, _, resp := status(t, tb, req)
		require.Equal(t, tt.status, code, "%s: %s", tt.name, resp)
	}
	require.Empty(t, tb.queued(t))
}

func TestTwilio_NotConfiguredIs503(t *testing.T) {
	tb := setup(t, testenv.AMQPURL())
	body := fixture(t, "twilio", "text_doc.txt")
	code, _, resp := status(t, tb, twilioPost("/webhook/twilio", body, "X-Twilio-Signature", twilioSignature))
	require.Equal(t, http.StatusServiceUnavailable, code, resp)
	require.Contains(t, resp, "TWILIO_AUTH_TOKEN")
	require.Empty(t, tb.queued(t))
}

// IMMEDIATE_FLUSH applies to provider messages as to generic ones.
func TestProviders_ImmediateFlushRulesApply(t *testing.T) {
	tb := setup(t, testenv.AMQPURL(), configured, func(o *httpapi.Options) {
		o.Rules.Default, _ = ingest.ParseRules(config.Defaults().ImmediateFlush)
	})
	body := fixture(t, "whatsapp", "interactive_button_reply.json")
	code, _, resp := status(t, tb, request(http.MethodPost, "/webhook/whatsapp", "application/json", body,
		whatsapp.SignatureHeader, hmacsig.Sign(appSecret, []byte(body))))
	require.Equal(t, http.StatusOK, code, resp)
	got := tb.queued(t)
	require.Len(t, got, 1)
	require.True(t, got[0].FlushNow, "a button reply is a complete intent")
}
