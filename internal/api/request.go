package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// readBody reads a request body of at most limit bytes, whatever its framing
// (a length, chunked, or neither): a body is never taken for absent because
// its length was not announced. An empty body is nil; a body that is not
// empty must be declared application/json. It answers the status to send
// with its error: 400 for a wrong content type, 413 for a body too large.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, int, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", limit)
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("read request body: %w", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, 0, nil
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return nil, http.StatusBadRequest, fmt.Errorf("a request body must be JSON with Content-Type: application/json, got %q", ct)
	}
	return body, 0, nil
}

// parseQuery reads a query strictly: only the allowed parameters (exactly
// as spelled: DRY_RUN or dry-run is not dry_run), each at most once, each
// with a value. Anything else is an error, never ignored: a parameter the
// server skips is an intent it drops.
func parseQuery(rawQuery string, allowed ...string) (map[string]string, error) {
	values, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("malformed query: %w", err)
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]string, len(values))
	for _, k := range keys {
		v := values[k]
		switch {
		case !contains(allowed, k):
			if len(allowed) == 0 {
				return nil, fmt.Errorf("unknown query parameter %q: this endpoint takes none", k)
			}
			return nil, fmt.Errorf("unknown query parameter %q (this endpoint takes %s)", k, strings.Join(allowed, ", "))
		case len(v) > 1:
			return nil, fmt.Errorf("query parameter %q is given %d times: give it once", k, len(v))
		case v[0] == "":
			return nil, fmt.Errorf("query parameter %q has no value: give %s=true or %s=false", k, k, k)
		}
		out[k] = v[0]
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseBool reads a boolean parameter: true or false, or the other spellings
// of Go's strconv.ParseBool (1, t, TRUE, 0, f, FALSE, ...).
func parseBool(name, raw string) (bool, error) {
	b, err := strconv.ParseBool(raw)
	if err != nil {
		return false, fmt.Errorf("%s must be true or false, got %q", name, raw)
	}
	return b, nil
}

// dryRunOf is a request's dry run, from its query and its body, each
// optional: when both say it, they must agree.
func dryRunOf(query map[string]string, body *bool) (bool, error) {
	raw, inQuery := query[paramDryRun]
	if !inQuery {
		return body != nil && *body, nil
	}
	q, err := parseBool(paramDryRun, raw)
	if err != nil {
		return false, err
	}
	if body != nil && *body != q {
		return false, fmt.Errorf("the query says dry_run=%v and the body says dry_run=%v: say it once, or the same", q, *body)
	}
	return q, nil
}

const paramDryRun = "dry_run"

// SingleRequest is the optional body of POST /api/containers/stale/:id/cleanup.
type SingleRequest struct {
	DryRun *bool `json:"dry_run"`
}

// ParseSingleRequest reads the dry run of a single cleanup from its query
// and optional body ({"dry_run": bool}).
func ParseSingleRequest(body []byte, rawQuery string) (dryRun bool, err error) {
	query, err := parseQuery(rawQuery, paramDryRun)
	if err != nil {
		return false, err
	}
	var req SingleRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := decodeStrict(body, &req, false); err != nil {
			return false, err
		}
	}
	return dryRunOf(query, req.DryRun)
}

// BulkRequest is the body of POST /api/containers/stale/cleanup.
type BulkRequest struct {
	DryRun bool `json:"dry_run"`
	// Max caps how many instances this call cleans; 0 means the server's cap.
	Max int `json:"max"`
}

// bulkBody is BulkRequest as sent, telling a field left out from false.
type bulkBody struct {
	DryRun *bool `json:"dry_run"`
	Max    int   `json:"max"`
}

// ParseBulkRequest decodes and validates a bulk cleanup: its optional body
// and its query (dry_run), which must agree with the body. Unknown fields,
// keys in another case, duplicate keys, nulls and wrong types are refused:
// nothing ambiguous may turn a dry run into a real one.
func ParseBulkRequest(body []byte, rawQuery string, maxPerRequest int) (BulkRequest, error) {
	query, err := parseQuery(rawQuery, paramDryRun)
	if err != nil {
		return BulkRequest{}, err
	}
	var b bulkBody
	if len(bytes.TrimSpace(body)) > 0 {
		if err := decodeStrict(body, &b, false); err != nil {
			return BulkRequest{}, err
		}
	}
	req := BulkRequest{Max: b.Max}
	if req.DryRun, err = dryRunOf(query, b.DryRun); err != nil {
		return BulkRequest{}, err
	}
	switch {
	case req.Max < 0:
		return req, fmt.Errorf("max must not be negative, got %d", req.Max)
	case req.Max > maxPerRequest:
		return req, fmt.Errorf("max %d exceeds the per-request cap of %d", req.Max, maxPerRequest)
	case req.Max == 0:
		req.Max = maxPerRequest
	}
	return req, nil
}
