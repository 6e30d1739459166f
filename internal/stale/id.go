package stale

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxIDLen bounds an instance id (a UUID is 36 bytes, a ULID 26): anything
// longer is refused before it reaches the store or a label.
const MaxIDLen = 128

// ValidID checks an id given from outside (a URL, an alert label): the
// platform's ids may be any text, but never empty, longer than MaxIDLen,
// invalid UTF-8, or holding spaces or control characters.
func ValidID(id string) error {
	switch {
	case id == "":
		return errors.New("id is empty")
	case len(id) > MaxIDLen:
		return fmt.Errorf("id is %d bytes, at most %d", len(id), MaxIDLen)
	case !utf8.ValidString(id):
		return errors.New("id is not valid UTF-8")
	}
	for _, r := range id {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("id %q holds a space or a character that is not printable", id)
		}
	}
	return nil
}

// IsUUID reports whether s is an id in the canonical 8-4-4-4-12 hex form.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// IsFullContainerID reports whether ref is a full 64-hex container id, the
// only reference that names one container for good (names and prefixes can
// come to name another).
func IsFullContainerID(ref string) bool {
	if len(ref) != 64 {
		return false
	}
	for i := 0; i < len(ref); i++ {
		c := ref[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
