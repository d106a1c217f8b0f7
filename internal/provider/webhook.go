package provider

import (
	"errors"
	"time"
)

// Webhook is one provider, as the api serves it at /webhook/<Info().Source>.
// The api does the HTTP around it, the same for every provider: the
// content type, the body limit, Authenticate before Parse, the publish of
// what Parse returned (each key prefixed with ingest.ProviderKey), the
// status codes and the metrics. A provider only reads bytes and headers.
//
// Adding a provider is one package implementing Webhook, and one line in
// the api's table of providers (internal/httpapi).
type Webhook interface {
	// Info describes the routes, the checks and the answers.
	Info() Info
	// Authenticate checks r before any of its body's fields is read: an
	// error wrapping ErrUnauthorized is answered Info().AuthStatus; an
	// ingest.ErrMalformed or *ingest.FieldError, 400 or 422 (a signed body
	// that does not decode). It must compare secrets in constant time.
	Authenticate(r Request) error
	// Parse reads an authenticated request: messages and typing hints
	// (ingest.KindTyping), each keyed by the provider's conversation key
	// without the source prefix. Errors are ingest.ErrMalformed or
	// *ingest.FieldError; an item lull does not buffer is counted in
	// Result.Ignored, never an error.
	Parse(r Request) (Result, error)
}

// Handshaker is a Webhook that also answers a GET subscription handshake
// (Meta's): the answer is sent verbatim as text/plain; an error is 403.
type Handshaker interface {
	Handshake(r Request) (string, error)
}

// Request is what a provider sees of one webhook request.
type Request struct {
	Body   []byte                   // the raw body, exactly as received
	Header func(name string) string // a request header, "" when absent
	Query  func(name string) string // a query parameter, "" when absent
	// Suffix is the path after /webhook/<source> ("" or "/…"), on the
	// routes of an Info with Subpaths.
	Suffix string
	// URL is the URL the provider called, as it would have signed it
	// (PUBLIC_URL + path + query, or rebuilt from the proxy's headers).
	URL string
	Now time.Time // the time of receipt
}

// ErrUnauthorized wraps every authentication failure.
var ErrUnauthorized = errors.New("unauthorized")

// Info describes a provider's webhook. The README's provider table is
// made of the Doc fields of every registered provider.
type Info struct {
	// Source names the provider: the route /webhook/<Source>, every
	// message's source and its key space (one of ingest.ProviderSources).
	Source string
	// Subpaths also routes /webhook/<Source>/* to it (Request.Suffix).
	Subpaths bool
	// Form: the body is application/x-www-form-urlencoded, not JSON.
	Form bool
	// Disabled, when not "", is why the route answers 503 (a secret it
	// cannot work without is unset): e.g. "set TWILIO_AUTH_TOKEN".
	Disabled string
	// AuthStatus answers an ErrUnauthorized (401 or 403, the provider's
	// convention); AuthMessage is the answer's error text.
	AuthStatus  int
	AuthMessage string
	// Reply is the body of a success (200); ReplyType its content type.
	// Empty: {"status":"ok"} as JSON.
	Reply, ReplyType string
	// Warning and Notice, when set, are logged once at startup (at warn
	// and info): e.g. that the route accepts unsigned requests.
	Warning, Notice string
	// Doc is the provider's row in the README's provider table.
	Doc Doc
}

// Doc is one row of the README's provider table.
type Doc struct {
	Name   string // the provider, as people call it
	Routes string // e.g. "`POST /webhook/waha`"
	Auth   string // how a request is authenticated, and the variables
	Key    string // the conversation key, e.g. "`waha:<session>:<chat id>`"
	Typing string // what extends the quiet window ("—": nothing)
}
