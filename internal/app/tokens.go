package app

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/docker-watcher/stale-exporter/internal/auth"
)

// loadTokens reads the tokens file, and refuses basic auth in the web config
// beside it: the toolkit would answer 401 to every bearer token.
func loadTokens(cfg Config, logger *slog.Logger) (*auth.Keyring, error) {
	if cfg.TokensFile == "" {
		logger.Warn("no --api.tokens-file: cleanup endpoints and the webhook are closed")
		return nil, nil
	}
	if cfg.Web != nil && cfg.Web.WebConfigFile != nil && *cfg.Web.WebConfigFile != "" {
		users, err := basicAuthUsers(*cfg.Web.WebConfigFile)
		if err != nil {
			return nil, err
		}
		if users > 0 {
			return nil, errors.New("--web.config.file sets basic_auth_users and --api.tokens-file is set: " +
				"basic auth answers 401 to every bearer token, so the API and the webhook would be unreachable; use one of them")
		}
	}
	if info, err := os.Stat(cfg.TokensFile); err == nil && info.Mode().Perm()&0o077 != 0 {
		// As ssh does for keys: digests are not the tokens, but who may
		// read or change the file decides who may clean up.
		logger.Warn("the tokens file may be read or written by others than its owner: chmod 600 it",
			"file", cfg.TokensFile, "mode", fmt.Sprintf("%#o", info.Mode().Perm()))
	}
	k, err := auth.OpenKeyring(cfg.TokensFile)
	if err != nil {
		return nil, err
	}
	if k.Len() == 0 {
		logger.Warn("the tokens file holds no tokens: cleanup endpoints and the webhook refuse every request until tokens are added (stale-exporter tokens add) and reloaded",
			"file", cfg.TokensFile)
	}
	return k, nil
}

// Reload reads the tokens file again (SIGHUP, POST /-/reload). On error the
// tokens in force stay, and the error says why.
func (a *App) Reload() error {
	if a.tokens == nil {
		return errors.New("no --api.tokens-file to reload")
	}
	n, err := a.tokens.Reload()
	if err != nil {
		return err
	}
	a.logger.Info("tokens reloaded", "tokens", n, "file", a.tokens.Path())
	return nil
}

func basicAuthUsers(path string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read web config: %w", err)
	}
	var c struct {
		Users map[string]string `yaml:"basic_auth_users"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		return 0, fmt.Errorf("parse web config %s: %w", path, err)
	}
	return len(c.Users), nil
}
