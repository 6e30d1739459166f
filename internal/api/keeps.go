package api

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/julienschmidt/httprouter"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// KeepRequest is the body of POST /api/containers/stale/:id/keep.
type KeepRequest struct {
	// Until is an RFC 3339 time in the future, or "forever".
	Until string `json:"until"`
	// Reason says why, for the event log and the list.
	Reason string `json:"reason"`
}

// Forever is the Until of a keep with no end.
const Forever = "forever"

// maxKeepReason bounds a keep's reason.
const maxKeepReason = 500

// ParseKeepRequest decodes a keep: until "forever" or an RFC 3339 time after
// now (and at most 100 years after it), and a reason of printable text.
func ParseKeepRequest(body []byte, now time.Time) (stale.Keep, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return stale.Keep{}, errors.New(`a keep needs a body: {"until": "<RFC 3339 time>" | "forever", "reason": "<text>"}`)
	}
	var req KeepRequest
	if err := decodeStrict(body, &req, false); err != nil {
		return stale.Keep{}, err
	}
	var keep stale.Keep
	switch until := strings.TrimSpace(req.Until); until {
	case Forever:
	case "":
		return keep, errors.New(`until is missing: an RFC 3339 time, or "forever"`)
	default:
		t, err := time.Parse(time.RFC3339, until)
		switch {
		case err != nil:
			return keep, fmt.Errorf(`until %q is not an RFC 3339 time (2026-12-24T00:00:00Z) or "forever"`, req.Until)
		case !t.After(now):
			return keep, fmt.Errorf("until %s is not in the future", t.UTC().Format(time.RFC3339))
		case t.Sub(now) > stale.MaxThreshold:
			return keep, fmt.Errorf(`until %s is more than 100 years ahead: say "forever"`, t.UTC().Format(time.RFC3339))
		}
		keep.Until = t
	}
	reason := strings.TrimSpace(req.Reason)
	switch {
	case reason == "":
		return keep, errors.New("reason is missing: say why the instance is kept")
	case len(reason) > maxKeepReason:
		return keep, fmt.Errorf("reason is %d bytes, at most %d", len(reason), maxKeepReason)
	case strings.IndexFunc(reason, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return keep, errors.New("reason holds a character that is not printable")
	}
	keep.Reason = reason
	return keep, nil
}

func (a *API) keep(w http.ResponseWriter, r *http.Request, ps httprouter.Params, requestedBy string) {
	id, ok := a.instanceID(w, r, ps)
	if !ok {
		return
	}
	body, status, err := readBody(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		writeError(w, status, err.Error(), nil)
		return
	}
	keep, err := ParseKeepRequest(body, time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	keep.By = requestedBy
	if err := a.svc.Keep(r.Context(), id, keep); err != nil {
		a.keepError(w, id, "keep the instance", err)
		return
	}
	writeJSON(w, http.StatusOK, viewKeep(id, keep))
}

func (a *API) unkeep(w http.ResponseWriter, r *http.Request, ps httprouter.Params, requestedBy string) {
	id, ok := a.instanceID(w, r, ps)
	if !ok {
		return
	}
	if err := a.svc.Unkeep(r.Context(), id, requestedBy); err != nil {
		a.keepError(w, id, "lift the keep", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"instance_id": id, "kept": false, "lifted_by": requestedBy})
}

// instanceID is the valid instance id of a request without a query.
func (a *API) instanceID(w http.ResponseWriter, r *http.Request, ps httprouter.Params) (string, bool) {
	id := ps.ByName("id")
	if err := stale.ValidID(id); err != nil {
		writeError(w, http.StatusBadRequest, "instance "+err.Error(), nil)
		return "", false
	}
	return id, noQuery(w, r)
}

func (a *API) keepError(w http.ResponseWriter, id, what string, err error) {
	switch {
	case errors.Is(err, cleanup.ErrUnknownInstance):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no instance %s", id), nil)
	case errors.Is(err, store.ErrNoKeep):
		writeError(w, http.StatusNotFound, fmt.Sprintf("instance %s has no keep in force", id), nil)
	default:
		a.writeStoreError(w, "could not "+what, err)
	}
}

// KeepView is a keep as the API shows it.
type KeepView struct {
	InstanceID string `json:"instance_id"`
	KeptUntil  string `json:"kept_until"`
	KeptBy     string `json:"kept_by"`
	KeepReason string `json:"keep_reason"`
}

func viewKeep(id string, k stale.Keep) KeepView {
	return KeepView{InstanceID: id, KeptUntil: keptUntil(k), KeptBy: k.By, KeepReason: k.Reason}
}

// keptUntil is a keep's end as the API writes it: a time, or "forever".
func keptUntil(k stale.Keep) string {
	if k.Forever() {
		return Forever
	}
	return k.Until.UTC().Format(time.RFC3339)
}
