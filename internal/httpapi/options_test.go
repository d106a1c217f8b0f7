package httpapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/httpapi"
)

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, string, []byte) error { return nil }
func (nopPublisher) Ready() bool                                   { return true }

// TestNew_PanicsOnOptionsConfigRefuses: options that come from variables
// config.Load checks are not checked again at request time; a caller that
// passes bad ones gets a panic naming the option.
func TestNew_PanicsOnOptionsConfigRefuses(t *testing.T) {
	t.Parallel()
	valid := func() httpapi.Options {
		return httpapi.Options{Publisher: nopPublisher{}, BodyLimit: 4096, PublishTimeout: time.Second}
	}
	require.NotPanics(t, func() { httpapi.New(valid()) })
	for name, change := range map[string]func(*httpapi.Options){
		"Options.BodyLimit":                 func(o *httpapi.Options) { o.BodyLimit = 0 },
		"Options.PublishTimeout":            func(o *httpapi.Options) { o.PublishTimeout = 0 },
		"Options.Publisher":                 func(o *httpapi.Options) { o.Publisher = nil },
		"ProviderOptions.EvolutionHeader: ": func(o *httpapi.Options) { o.Providers.EvolutionHeader = "no-colon" },
	} {
		o := valid()
		change(&o)
		require.Contains(t, panicOf(t, func() { httpapi.New(o) }), name)
	}
}

func panicOf(t *testing.T, f func()) (msg string) {
	t.Helper()
	defer func() { msg, _ = recover().(string) }()
	f()
	t.Fatal("no panic")
	return ""
}
