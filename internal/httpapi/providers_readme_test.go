package httpapi_test

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lullhq/lull/internal/httpapi"
	"github.com/lullhq/lull/internal/ingest"
)

const providerTableHeader = "| provider | routes | authentication | conversation key | typing |"

// providerRows are the README's provider table rows, made from the registry.
func providerRows() []string {
	var rows []string
	for _, w := range httpapi.Providers(httpapi.ProviderOptions{}) {
		d := w.Info().Doc
		rows = append(rows, "| "+strings.Join([]string{d.Name, d.Routes, d.Auth, d.Key, d.Typing}, " | ")+" |")
	}
	return rows
}

// TestREADME_ProviderTable: the README's provider table is the registry's.
func TestREADME_ProviderTable(t *testing.T) {
	f, err := os.Open("../../README.md")
	require.NoError(t, err)
	defer f.Close()
	var got []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == providerTableHeader:
			in = true
		case in && strings.HasPrefix(line, "|---"):
		case in && strings.HasPrefix(line, "|"):
			got = append(got, line)
		case in:
			in = false
		}
	}
	require.NoError(t, sc.Err())
	want := providerRows()
	require.Equal(t, want, got, "the README's provider table (under %q) must be, exactly:\n%s", providerTableHeader, strings.Join(want, "\n"))
}

// Every provider of the table has a reserved key space, and a route of
// its own.
func TestProviders_SourcesAreReservedAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, w := range httpapi.Providers(httpapi.ProviderOptions{}) {
		s := w.Info().Source
		require.Contains(t, ingest.ProviderSources, s)
		require.False(t, seen[s], "%s registered twice", s)
		seen[s] = true
	}
}
