// Package secrets creates the secrets a docker compose stack shares through
// a volume: the PostgreSQL password and a passfile for the exporter, the API
// tokens file, and the token Alertmanager sends to the webhook. Existing
// files are kept, so restarts change nothing.
package secrets

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/docker-watcher/stale-exporter/internal/auth"
)

// File names inside the secrets directory.
const (
	PostgresPassword = "postgres-password"
	Passfile         = "pgpass"
	TokensFile       = "api-tokens.yml"
	AlertmanagerFile = "alertmanager-token"
	AdminFile        = "admin-token"
)

// Database names the PostgreSQL the passfile is for.
type Database struct {
	Host, Port, Name, User string
}

// Init creates the missing secrets in dir. It returns the admin token when
// it made a new one, so it can be shown once.
func Init(dir string, db Database) (newAdminToken string, err error) {
	if _, err := os.Stat(filepath.Join(dir, TokensFile)); err == nil {
		return "", nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("stat tokens file: %w", err)
	}
	password := make([]byte, 24)
	if _, err := rand.Read(password); err != nil {
		return "", fmt.Errorf("read random: %w", err)
	}
	amSecret, amEntry, err := auth.NewToken("alertmanager", auth.RoleAlertmanager)
	if err != nil {
		return "", err
	}
	adminSecret, adminEntry, err := auth.NewToken("admin", auth.RoleAdmin)
	if err != nil {
		return "", err
	}
	tokens, err := auth.FormatEntries(amEntry, adminEntry)
	if err != nil {
		return "", err
	}
	pw := hex.EncodeToString(password)
	files := []struct{ name, content string }{
		{PostgresPassword, pw},
		{Passfile, fmt.Sprintf("%s:%s:%s:%s:%s\n", db.Host, db.Port, db.Name, db.User, pw)},
		{AlertmanagerFile, amSecret},
		{AdminFile, adminSecret},
		// Last: its presence means the set is complete.
		{TokensFile, tokens},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.content), 0o600); err != nil {
			return "", fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return adminSecret, nil
}
