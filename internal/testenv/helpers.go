package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/auth"
)

// EngineName is the name tests give the engine an exporter watches (its
// docker_host).
const EngineName = "test-engine"

// Ahead is a clock that runs d ahead of the real one, so that a container a
// test just created is older than a threshold under d by it (a container's
// creation counts as a sign of life) without waiting.
func Ahead(d time.Duration) func() time.Time {
	return func() time.Time { return time.Now().Add(d) }
}

var (
	buildOnce   sync.Once
	builtBinary string
	buildErr    error
)

// BuildExporter compiles stale-exporter once per test process and returns
// the binary's path.
func BuildExporter(tb testing.TB) string {
	tb.Helper()
	needsServices(tb)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "stale-exporter-bin")
		if err != nil {
			buildErr = err
			return
		}
		_, self, _, _ := runtime.Caller(0)
		builtBinary = filepath.Join(dir, "stale-exporter")
		build := exec.Command("go", "build", "-o", builtBinary, "./cmd/stale-exporter")
		build.Dir = filepath.Join(filepath.Dir(self), "..", "..")
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		tb.Fatalf("build stale-exporter: %v", buildErr)
	}
	return builtBinary
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// Tokens writes a tokens file (mode 0600) into dir with one new token per
// role, named test-<role>, and returns the file and the tokens by role.
func Tokens(tb testing.TB, dir string, roles ...auth.Role) (path string, tokens map[auth.Role]string) {
	tb.Helper()
	tokens = map[auth.Role]string{}
	var entries []auth.TokenEntry
	for _, role := range roles {
		secret, entry, err := auth.NewToken("test-"+string(role), role)
		if err != nil {
			tb.Fatal(err)
		}
		tokens[role], entries = secret, append(entries, entry)
	}
	file, err := auth.FormatEntries(entries...)
	if err != nil {
		tb.Fatal(err)
	}
	path = filepath.Join(dir, "tokens.yml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path, tokens
}
