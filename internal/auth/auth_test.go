package auth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker-watcher/stale-exporter/internal/auth"
)

func TestLoadTokensRefusesBadFiles(t *testing.T) {
	const digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	for name, c := range map[string]struct{ file, errorHas string }{
		"bad role":              {"tokens:\n  - {name: a, role: root, sha256: " + digest + "}\n", "role"},
		"short digest":          {"tokens:\n  - {name: a, role: viewer, sha256: abc}\n", "64 hex"},
		"no name":               {"tokens:\n  - {role: viewer, sha256: " + digest + "}\n", "no name"},
		"duplicate":             {"tokens:\n  - {name: a, role: viewer, sha256: " + digest + "}\n  - {name: a, role: admin, sha256: " + digest + "}\n", "twice"},
		"one digest, two roles": {"tokens:\n  - {name: a, role: viewer, sha256: " + digest + "}\n  - {name: b, role: admin, sha256: " + strings.ToUpper(digest) + "}\n", "same sha256"},
		"unknown field":         {"tokens:\n  - {name: a, role: viewer, token: secret}\n", "token"},
		"not YAML":              {"tokens: [\n", "parse"},
		"two documents":         {"tokens:\n  - {name: a, role: viewer, sha256: " + digest + "}\n---\ntokens:\n  - {name: b, role: admin, sha256: " + digest[1:] + "0}\n", "more than one YAML document"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.yml")
			if err := os.WriteFile(path, []byte(c.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := auth.LoadTokens(path)
			if err == nil || !strings.Contains(err.Error(), c.errorHas) {
				t.Fatalf("LoadTokens: %v, want an error about %q", err, c.errorHas)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	// The example of the README: sha256("test").
	path := filepath.Join(t.TempDir(), "tokens.yml")
	if err := os.WriteFile(path, []byte("tokens:\n  - name: grafana-ui\n    role: viewer\n    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	for header, want := range map[string]bool{
		"Bearer test": true, "bearer test": true, "Bearer  test ": true,
		"Bearer tes": false, "Bearer ": false, "test": false, "Basic dGVzdA==": false, "": false,
	} {
		name, role, err := tokens.Authenticate(header)
		if ok := err == nil && name == "grafana-ui" && role == auth.RoleViewer; ok != want {
			t.Errorf("Authenticate(%q) = %q %q %v, want accepted=%v", header, name, role, err, want)
		}
	}
	if _, _, err := auth.NewToken("x", "root"); err == nil {
		t.Error("NewToken accepted role root")
	}
}
