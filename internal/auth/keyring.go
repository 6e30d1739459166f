package auth

import (
	"fmt"
	"sync/atomic"
)

// Keyring is the tokens in force, read from their file and reloadable: a
// reload that fails keeps the tokens in force, so that a bad edit never
// locks everyone out or lets anyone in.
type Keyring struct {
	path   string
	tokens atomic.Pointer[Tokens]
}

// OpenKeyring reads the tokens file at path.
func OpenKeyring(path string) (*Keyring, error) {
	k := &Keyring{path: path}
	if _, err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Path is the tokens file.
func (k *Keyring) Path() string { return k.path }

// Reload reads the tokens file again and returns how many tokens are now in
// force. On error the tokens in force stay.
func (k *Keyring) Reload() (int, error) {
	t, err := LoadTokens(k.path)
	if err != nil {
		return 0, fmt.Errorf("reload tokens (the tokens in force stay): %w", err)
	}
	k.tokens.Store(t)
	return t.Len(), nil
}

// Len is the number of tokens in force.
func (k *Keyring) Len() int { return k.tokens.Load().Len() }

// Authenticate finds the token of an Authorization header among the tokens
// in force (see Tokens.Authenticate).
func (k *Keyring) Authenticate(header string) (name string, role Role, err error) {
	return k.tokens.Load().Authenticate(header)
}
