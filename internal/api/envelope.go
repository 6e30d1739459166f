package api

import (
	"encoding/json"
	"net/http"
)

// Envelope is the platform's API response shape (its clients decode it
// too). Code is a stable, machine-readable name of an error (a cleanup's
// refusal code, or one of the codes below); Error is for people.
type Envelope struct {
	Success bool   `json:"success"`
	Data    any    `json:"data,omitempty"`
	Error   string `json:"error,omitempty"`
	Code    string `json:"code,omitempty"`
	// Total and NextCursor page a list: every row the query matches, and
	// the cursor of the page after this one ("" on the last).
	Total      *int   `json:"total,omitempty"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// The codes of errors that are not a cleanup's refusal.
const (
	codeBadRequest       = "bad_request"
	codeUnauthorized     = "unauthorized"
	codeForbidden        = "forbidden"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeTooLarge         = "too_large"
	codeUnavailable      = "unavailable"
	codeTimeout          = "timeout"
	codeInternal         = "internal"
)

// statusCodes name the errors answered with a status alone.
var statusCodes = map[int]string{
	http.StatusBadRequest:            codeBadRequest,
	http.StatusUnauthorized:          codeUnauthorized,
	http.StatusForbidden:             codeForbidden,
	http.StatusNotFound:              codeNotFound,
	http.StatusMethodNotAllowed:      codeMethodNotAllowed,
	http.StatusRequestEntityTooLarge: codeTooLarge,
	http.StatusServiceUnavailable:    codeUnavailable,
	http.StatusInternalServerError:   codeInternal,
}

func writeJSON(w http.ResponseWriter, status int, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Envelope{Success: true, Data: data})
}

// writePage answers one page of a list.
func writePage(w http.ResponseWriter, rows any, total int, next string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(Envelope{Success: true, Data: rows, Total: &total, NextCursor: next})
}

// writeError answers an error with the code its status implies.
func writeError(w http.ResponseWriter, status int, msg string, data any) {
	writeCodedError(w, status, statusCodes[status], msg, data)
}

func writeCodedError(w http.ResponseWriter, status int, code, msg string, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Envelope{Success: false, Data: data, Error: msg, Code: code})
}
