// Package auth holds the API's bearer tokens: the roles, the tokens file of
// SHA-256 digests, constant-time authentication, and new tokens for it.
package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Role is what a token may do.
type Role string

// Roles: viewer < operator < admin; alertmanager may only call the webhook.
const (
	RoleViewer       Role = "viewer"
	RoleOperator     Role = "operator"
	RoleAdmin        Role = "admin"
	RoleAlertmanager Role = "alertmanager"
)

// Roles is every role, the one list that validation, errors and flags use.
var Roles = []Role{RoleViewer, RoleOperator, RoleAdmin, RoleAlertmanager}

// RoleNames are the names of Roles.
func RoleNames() []string {
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = string(r)
	}
	return names
}

func (r Role) valid() bool { return slices.Contains(Roles, r) }

// TokenEntry is one entry of the tokens file. The token itself is never
// stored, only its SHA-256 digest.
type TokenEntry struct {
	Name   string `yaml:"name"`
	Role   Role   `yaml:"role"`
	SHA256 string `yaml:"sha256"`
}

type tokensFile struct {
	Tokens []TokenEntry `yaml:"tokens"`
}

type token struct {
	name   string
	role   Role
	digest []byte
}

// Tokens are the bearer tokens the API accepts.
type Tokens struct {
	tokens []token
}

// LoadTokens reads a tokens file.
func LoadTokens(path string) (*Tokens, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var f tokensFile
	// An empty file holds no tokens, like tokens: with nothing after it.
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse tokens file %s: %w", path, err)
	}
	// A second YAML document would be silently dropped by a reader that
	// takes the first: tokens written there would never work, or a removed
	// one would look gone while another reader still accepts it.
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("tokens file %s holds more than one YAML document (---): keep every token under one tokens: list", path)
	}
	t := &Tokens{}
	names := map[string]bool{}
	digests := map[string]string{}
	for i, e := range f.Tokens {
		digest, err := hex.DecodeString(e.SHA256)
		switch {
		case e.Name == "":
			return nil, fmt.Errorf("tokens file %s: entry %d has no name", path, i+1)
		case names[e.Name]:
			return nil, fmt.Errorf("tokens file %s: name %q appears twice", path, e.Name)
		case !e.Role.valid():
			return nil, fmt.Errorf("tokens file %s: token %q has role %q, want one of %s", path, e.Name, e.Role, strings.Join(RoleNames(), ", "))
		case err != nil || len(digest) != sha256.Size:
			return nil, fmt.Errorf("tokens file %s: token %q: sha256 must be 64 hex digits", path, e.Name)
		}
		if other, ok := digests[strings.ToLower(e.SHA256)]; ok {
			return nil, fmt.Errorf("tokens file %s: tokens %q and %q have the same sha256: one token cannot have two roles", path, other, e.Name)
		}
		digests[strings.ToLower(e.SHA256)] = e.Name
		names[e.Name] = true
		t.tokens = append(t.tokens, token{name: e.Name, role: e.Role, digest: digest})
	}
	return t, nil
}

// Len is the number of tokens. A file with none is valid, and refuses
// every request that needs a token: a package installs one, and tokens are
// added to it later (AddToken) and reloaded.
func (t *Tokens) Len() int { return len(t.tokens) }

// errNoCredentials and errBadCredentials are answered with 401.
var (
	errNoCredentials  = errors.New("missing bearer token: send Authorization: Bearer <token>")
	errBadCredentials = errors.New("invalid bearer token")
)

// Authenticate finds the token of an Authorization header. Every entry is
// compared, in constant time, whatever matches.
func (t *Tokens) Authenticate(header string) (name string, role Role, err error) {
	scheme, secret, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return "", "", errNoCredentials
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	found := -1
	for i, tok := range t.tokens {
		if subtle.ConstantTimeCompare(sum[:], tok.digest) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", "", errBadCredentials
	}
	return t.tokens[found].name, t.tokens[found].role, nil
}

// NewToken makes a random token and the entry that accepts it.
func NewToken(name string, role Role) (string, TokenEntry, error) {
	if err := checkName(name); err != nil {
		return "", TokenEntry{}, err
	}
	if !role.valid() {
		return "", TokenEntry{}, fmt.Errorf("role %q: want one of %s", role, strings.Join(RoleNames(), ", "))
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", TokenEntry{}, fmt.Errorf("read random: %w", err)
	}
	secret := hex.EncodeToString(b)
	sum := sha256.Sum256([]byte(secret))
	return secret, TokenEntry{Name: name, Role: role, SHA256: hex.EncodeToString(sum[:])}, nil
}

// FormatEntries renders entries as a tokens file.
func FormatEntries(entries ...TokenEntry) (string, error) {
	out, err := yaml.Marshal(tokensFile{Tokens: entries})
	if err != nil {
		return "", fmt.Errorf("encode token entry: %w", err)
	}
	return string(out), nil
}

// FormatEntry renders one entry as an item of the tokens: list, indented as
// FormatEntries indents them, so that it can be appended to a tokens file
// (one that starts with "tokens:") any number of times.
func FormatEntry(e TokenEntry) string {
	return fmt.Sprintf("  - name: %s\n    role: %s\n    sha256: %s\n", yamlScalar(e.Name), e.Role, e.SHA256)
}

// yamlScalar is a name as YAML reads it back exactly.
func yamlScalar(s string) string {
	out, err := yaml.Marshal(s)
	if err != nil {
		return fmt.Sprintf("%q", s)
	}
	return strings.TrimSuffix(string(out), "\n")
}

// WriteNewToken makes a token, writes its tokens-file entry to entry and
// the token itself, once, to secret: the entry alone can go into the file
// (stale-exporter token ... >> tokens.yml), never the token.
func WriteNewToken(entry, secret io.Writer, name string, role Role) error {
	token, e, err := NewToken(name, role)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(entry, FormatEntry(e)); err != nil {
		return err
	}
	_, err = fmt.Fprintf(secret, "Token of %s (role %s), shown once; give it to the client:\n%s\n", name, role, token)
	return err
}
