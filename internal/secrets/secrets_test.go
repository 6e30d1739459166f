package secrets_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/secrets"
)

func TestInitCreatesAMatchingSetOnce(t *testing.T) {
	dir := t.TempDir()
	db := secrets.Database{Host: "postgres", Port: "5432", Name: "platform", User: "stale"}
	admin, err := secrets.Init(dir, db)
	if err != nil || admin == "" {
		t.Fatalf("first init: %q %v", admin, err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	password := read(secrets.PostgresPassword)
	if len(password) < 32 || read(secrets.Passfile) != "postgres:5432:platform:stale:"+password+"\n" {
		t.Fatalf("password %q and passfile %q do not match", password, read(secrets.Passfile))
	}
	tokens, err := auth.LoadTokens(filepath.Join(dir, secrets.TokensFile))
	if err != nil {
		t.Fatal(err)
	}
	for secret, want := range map[string]auth.Role{read(secrets.AlertmanagerFile): auth.RoleAlertmanager, admin: auth.RoleAdmin} {
		if _, role, err := tokens.Authenticate("Bearer " + secret); err != nil || role != want {
			t.Errorf("token for %s: role %q, %v", want, role, err)
		}
	}
	info, err := os.Stat(filepath.Join(dir, secrets.TokensFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("tokens file mode %v %v", info.Mode(), err)
	}

	tokensBefore := read(secrets.TokensFile)
	again, err := secrets.Init(dir, db)
	if err != nil || again != "" || read(secrets.PostgresPassword) != password || read(secrets.TokensFile) != tokensBefore {
		t.Fatalf("second init changed things: %q %v", again, err)
	}
}
