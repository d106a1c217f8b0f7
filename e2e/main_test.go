package e2e

import (
	"os"
	"testing"

	"github.com/lullhq/lull/e2e/harness"
)

// TestMain builds the service binaries once for every test.
func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
