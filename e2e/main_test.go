package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// bins are the service binaries TestMain builds once for every test.
var bins struct{ api, worker string }

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "lull-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := filepath.Abs("..") // the module root: e2e/ lives in it
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: module root not found:", err)
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
