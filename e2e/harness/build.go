package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// bins are the service binaries Main builds once for every test.
var bins struct{ api, worker string }

// Main builds the api and worker binaries into a temporary directory, runs
// the tests and returns their exit code, for TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "lull-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	for _, b := range []struct {
		pkg string
		out *string
	}{{"api", &bins.api}, {"worker", &bins.worker}} {
		*b.out = filepath.Join(dir, b.pkg)
		cmd := exec.Command(goTool(), "build", "-o", *b.out, "./"+b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build ./%s: %v\n%s", b.pkg, err, out)
			return 1
		}
	}
	return m.Run()
}

// APIBinary is the path of the api binary Main built.
func APIBinary() string { return bins.api }

// WorkerBinary is the path of the worker binary Main built.
func WorkerBinary() string { return bins.worker }

// ModuleRoot is the directory of the go.mod above the working directory
// (a test runs in its package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("module root not found: no go.mod above the working directory")
		}
		dir = parent
	}
}

// goTool is the go command that runs the tests, or the one on PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
