package api

import (
	"net/http"

	"github.com/julienschmidt/httprouter"
)

// codeReloadFailed: the tokens file did not load; the tokens in force stay.
const codeReloadFailed = "reload_failed"

// reload reads the tokens file again, as SIGHUP does. A file that does not
// load keeps the tokens in force and is answered 409 with the reason: the
// request was fine, the file is not.
func (a *API) reload(w http.ResponseWriter, _ *http.Request, _ httprouter.Params, requestedBy string) {
	n, err := a.cfg.Tokens.Reload()
	if err != nil {
		a.logger.Error("reload requested over HTTP failed", "requested_by", requestedBy, "err", err)
		writeCodedError(w, http.StatusConflict, codeReloadFailed, err.Error(), nil)
		return
	}
	a.logger.Info("tokens reloaded", "requested_by", requestedBy, "tokens", n, "file", a.cfg.Tokens.Path())
	writeJSON(w, http.StatusOK, map[string]any{"tokens": n})
}

// codeStarting: the exporter waits for its backends and serves no API yet.
const codeStarting = "starting"

// Starting answers every API path, and /-/reload, with a JSON 503 (code
// starting, the reason, Retry-After) while the exporter waits for
// PostgreSQL and Docker; other paths go to next. Nothing of a request is
// read: it is not taken, and is safe to send again.
func Starting(reason func() string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isAPI(r.URL.Path) && r.URL.Path != "/-/reload" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", "5")
		w.Header().Set("Connection", "close")
		writeCodedError(w, http.StatusServiceUnavailable, codeStarting, reason()+"; try again", nil)
	})
}
