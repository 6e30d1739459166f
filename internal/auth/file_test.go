package auth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker-watcher/stale-exporter/internal/auth"
)

// The entry `stale-exporter token` prints appends to a tokens file any
// number of times, and holds no token.
func TestEntriesAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yml")
	file := "tokens:\n"
	var secrets []string
	for _, name := range []string{"grafana-ui", "ana@example.com", "true"} {
		var entry, secret strings.Builder
		if err := auth.WriteNewToken(&entry, &secret, name, auth.RoleViewer); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(secret.String()), "\n")
		token := lines[len(lines)-1]
		if strings.Contains(entry.String(), token) {
			t.Fatalf("the entry holds the token:\n%s", entry.String())
		}
		file += entry.String()
		secrets = append(secrets, token)
	}
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.LoadTokens(path)
	if err != nil {
		t.Fatalf("three appended entries:\n%s\n%v", file, err)
	}
	for i, name := range []string{"grafana-ui", "ana@example.com", "true"} {
		if got, _, err := tokens.Authenticate("Bearer " + secrets[i]); err != nil || got != name {
			t.Errorf("token %d: %q %v, want %q", i, got, err, name)
		}
	}
	for _, bad := range []string{"", "two words", "new\nline", "-dash", strings.Repeat("a", 65)} {
		if err := auth.WriteNewToken(&strings.Builder{}, &strings.Builder{}, bad, auth.RoleViewer); err == nil {
			t.Errorf("token name %q accepted", bad)
		}
	}
}

func TestAddAndRemoveTokens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.yml")
	a, err := auth.AddToken(path, "a", auth.RoleAdmin)
	if err != nil {
		t.Fatalf("add to a missing file: %v", err)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("new file: %v %v, want mode 0600", info.Mode(), err)
	}
	// Comments and a wider mode are kept.
	raw, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append([]byte("# who may clean up\n"), raw...), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := auth.AddToken(path, "b", auth.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.AddToken(path, "b", auth.RoleAdmin); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("a second b: %v", err)
	}
	raw, _ = os.ReadFile(path)
	if !strings.HasPrefix(string(raw), "# who may clean up\n") || strings.Contains(string(raw), a) || strings.Contains(string(raw), b) {
		t.Fatalf("after adding b:\n%s", raw)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the file's 0640 kept", info.Mode().Perm())
	}
	tokens, err := auth.LoadTokens(path)
	if err != nil || tokens.Len() != 2 {
		t.Fatalf("after adding b: %v, %d tokens", err, tokens.Len())
	}
	if err := auth.RemoveToken(path, "a"); err != nil {
		t.Fatal(err)
	}
	if err := auth.RemoveToken(path, "a"); err == nil {
		t.Fatal("removed a twice")
	}
	tokens, _ = auth.LoadTokens(path)
	if _, _, err := tokens.Authenticate("Bearer " + a); err == nil {
		t.Error("a still accepted after its removal")
	}
	if name, _, err := tokens.Authenticate("Bearer " + b); err != nil || name != "b" {
		t.Errorf("b after removing a: %q %v", name, err)
	}
	// A file that does not load is not edited.
	broken := "tokens:\n  - {name: x, role: root, sha256: abc}\n"
	if err := os.WriteFile(path, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.AddToken(path, "c", auth.RoleViewer); err == nil {
		t.Fatal("edited a broken file")
	}
	if raw, _ := os.ReadFile(path); string(raw) != broken {
		t.Fatalf("the broken file changed:\n%s", raw)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// A reload that fails keeps the tokens in force.
func TestKeyringReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yml")
	a, err := auth.AddToken(path, "a", auth.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	k, err := auth.OpenKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := auth.AddToken(path, "b", auth.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.Authenticate("Bearer " + b); err == nil {
		t.Fatal("b accepted before a reload")
	}
	if n, err := k.Reload(); err != nil || n != 2 {
		t.Fatalf("reload: %d %v", n, err)
	}
	if _, _, err := k.Authenticate("Bearer " + b); err != nil {
		t.Fatalf("b after the reload: %v", err)
	}
	if err := os.WriteFile(path, []byte("tokens: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Reload(); err == nil || !strings.Contains(err.Error(), "stay") {
		t.Fatalf("reload of a broken file: %v", err)
	}
	if _, _, err := k.Authenticate("Bearer " + a); err != nil || k.Len() != 2 {
		t.Fatalf("after a failed reload: %v, %d tokens; want the two in force", err, k.Len())
	}
}
