package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode"
)

// maxJSONDepth bounds the nesting of a request body.
const maxJSONDepth = 32

// checkUnambiguous refuses a JSON body that two readers could understand
// differently, walking it beside the Go type it is decoded into:
//   - a key twice in one object, or two keys that differ only in case (Go
//     folds case and keeps the last, a proxy may keep the first, or keep both);
//   - a key that names a field of the type in another case ("DRY_RUN" for
//     dry_run): Go would take it, a reader matching exactly would not;
//   - a null (read as false or zero by Go).
//
// A body that cannot mean two things is then decoded into its type, which
// refuses wrong types.
func checkUnambiguous(body []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := checkValue(dec, t, "body", 0); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func checkValue(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("%s: nested deeper than %d levels", path, maxJSONDepth)
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case nil:
		return fmt.Errorf("%s is null: leave the field out or give a value", path)
	case json.Delim('{'):
		return checkObject(dec, t, path, depth)
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := checkValue(dec, elem, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	return nil
}

func checkObject(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	var fields map[string]reflect.Type
	var elem reflect.Type
	if t != nil && t.Kind() == reflect.Struct {
		fields = jsonFields(t)
	}
	if t != nil && t.Kind() == reflect.Map {
		elem = t.Elem()
	}
	seen := map[string]string{}
	for dec.More() {
		keyTok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := keyTok.(string)
		folded := foldKey(key)
		if first, ok := seen[folded]; ok {
			if first == key {
				return fmt.Errorf("%s: key %q appears twice", path, key)
			}
			return fmt.Errorf("%s: keys %q and %q differ only in case: keys are case-sensitive, give one", path, first, key)
		}
		seen[folded] = key
		next := elem
		if fields != nil {
			ft, exact := fields[key]
			if !exact {
				for name := range fields {
					if foldKey(name) == folded {
						return fmt.Errorf("%s: key %q is not %q: keys are case-sensitive", path, key, name)
					}
				}
			}
			next = ft
		}
		if err := checkValue(dec, next, path+"."+key, depth+1); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
}

// jsonFields maps the JSON names of a struct's fields (those of embedded
// structs included, as encoding/json flattens them) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					out[k] = v
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// foldKey maps a key to one form per case-insensitive class, the way
// encoding/json matches keys to fields: each rune to the smallest rune of
// its Unicode simple-folding orbit (so "K", "k" and the Kelvin sign agree).
func foldKey(key string) string {
	var b strings.Builder
	for _, r := range key {
		smallest := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			smallest = min(smallest, f)
		}
		b.WriteRune(smallest)
	}
	return b.String()
}

// decodeStrict checks that body is unambiguous for v's type, then decodes it
// into v, refusing unknown fields unless allowUnknown.
func decodeStrict(body []byte, v any, allowUnknown bool) error {
	if err := checkUnambiguous(body, reflect.TypeOf(v)); err != nil {
		return fmt.Errorf("malformed JSON body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if !allowUnknown {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON body: %w", err)
	}
	return nil
}
