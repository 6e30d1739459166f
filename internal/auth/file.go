package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"syscall"

	"gopkg.in/yaml.v3"
)

// validName is what a new token may be called: it names the requester in
// logs, events and jobs, so one plain word.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

func checkName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("token name %q: 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", name)
	}
	return nil
}

// AddToken makes a token of a role and adds its entry to the tokens file at
// path (made, 0600, if missing), keeping the file's comments, mode and
// owner. It returns the token, which is stored nowhere. A file that does
// not load, or already names the token, is left as it is.
func AddToken(path, name string, role Role) (string, error) {
	token, entry, err := NewToken(name, role)
	if err != nil {
		return "", err
	}
	err = editTokens(path, func(list *yaml.Node) error {
		for _, item := range list.Content {
			if entryName(item) == name {
				return fmt.Errorf("a token named %q is already in %s (stale-exporter tokens remove %s first)", name, path, name)
			}
		}
		var item yaml.Node
		if err := item.Encode(entry); err != nil {
			return err
		}
		list.Content = append(list.Content, &item)
		return nil
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// RemoveToken removes the entry of a token from the tokens file at path,
// keeping the file's comments, mode and owner.
func RemoveToken(path, name string) error {
	return editTokens(path, func(list *yaml.Node) error {
		for i, item := range list.Content {
			if entryName(item) == name {
				list.Content = append(list.Content[:i], list.Content[i+1:]...)
				return nil
			}
		}
		return fmt.Errorf("no token named %q in %s", name, path)
	})
}

func entryName(item *yaml.Node) string {
	var e TokenEntry
	if item.Decode(&e) != nil {
		return ""
	}
	return e.Name
}

// editTokens applies edit to the tokens: list of the file at path and writes
// the file back in its place, only if the result loads.
func editTokens(path string, edit func(list *yaml.Node) error) error {
	raw, err := os.ReadFile(path)
	mode, uid, gid := fs.FileMode(0o600), -1, -1
	switch {
	case errors.Is(err, fs.ErrNotExist):
		raw = []byte("tokens:\n")
	case err != nil:
		return fmt.Errorf("read tokens file: %w", err)
	default:
		if _, err := LoadTokens(path); err != nil {
			return fmt.Errorf("%w: fix it before editing it", err)
		}
		info, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("stat tokens file: %w", err)
		}
		mode = info.Mode().Perm()
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("parse tokens file %s: %w", path, err)
	}
	list, err := tokensList(&doc)
	if err != nil {
		return fmt.Errorf("tokens file %s: %w", path, err)
	}
	if err := edit(list); err != nil {
		return err
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("encode tokens file: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encode tokens file: %w", err)
	}
	return replaceFile(path, out.Bytes(), mode, uid, gid)
}

// tokensList is the sequence under the document's tokens: key, made when
// the key is empty (tokens: with nothing after it).
func tokensList(doc *yaml.Node) (*yaml.Node, error) {
	if doc.Kind == 0 {
		doc.Kind = yaml.DocumentNode
		doc.Content = []*yaml.Node{{Kind: yaml.MappingNode}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a mapping with a tokens: key")
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != "tokens" {
			continue
		}
		v := m.Content[i+1]
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			*v = yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		}
		if v.Kind != yaml.SequenceNode {
			return nil, errors.New("tokens: is not a list")
		}
		v.Style = 0 // a block list, as people write it
		return v, nil
	}
	list := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "tokens"}, list)
	return list, nil
}

// replaceFile writes content next to path and renames it over path, so that
// a reader (the exporter reloading) sees the old file or the new one, never
// half of one; the new file gets the old one's mode and owner.
func replaceFile(path string, content []byte, mode fs.FileMode, uid, gid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write tokens file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(content); err != nil {
		tmp.Close()
		return fmt.Errorf("write tokens file: %w", err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write tokens file: %w", err)
	}
	if uid >= 0 && (uid != os.Getuid() || gid != os.Getgid()) {
		if err := tmp.Chown(uid, gid); err != nil {
			tmp.Close()
			return fmt.Errorf("keep the tokens file's owner: %w", err)
		}
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write tokens file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write tokens file: %w", err)
	}
	if _, err := LoadTokens(tmp.Name()); err != nil {
		return fmt.Errorf("the edited tokens file would not load, left unchanged: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace tokens file: %w", err)
	}
	return nil
}
