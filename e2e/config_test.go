package e2e

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestConfig_BadValueStopsTheProcess: a process that cannot start exits
// non-zero at once, naming the variable, without printing its secret.
func TestConfig_BadValueStopsTheProcess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, variable, value string
	}{
		{"redis database", "REDIS_URL", "redis://default:hunter2@127.0.0.1:6379/abc"},
		{"redis port", "REDIS_URL", "redis://127.0.0.1:99999/0"},
		{"amqp password with #", "AMQP_URL", "amqp://guest:hunter2#PW@127.0.0.1/"},
		{"empty namespace", "NAMESPACE", ""},
	}
	for _, tt := range tests {
		for _, bin := range []struct{ name, path string }{{"api", bins.api}, {"worker", bins.worker}} {
			t.Run(tt.name+"/"+bin.name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin.path)
				cmd.Env = append(os.Environ(), "HTTP_ADDR=127.0.0.1:0", tt.variable+"="+tt.value)
				out, err := cmd.CombinedOutput()
				require.NoError(t, ctx.Err(), "%s kept running with %s=%s:\n%s", bin.name, tt.variable, tt.value, out)
				var exit *exec.ExitError
				require.ErrorAs(t, err, &exit, "%s exited 0 with %s=%s:\n%s", bin.name, tt.variable, tt.value, out)
				require.NotZero(t, exit.ExitCode())
				require.Contains(t, string(out), tt.variable)
				require.NotContains(t, string(out), "hunter2")
			})
		}
	}
}
