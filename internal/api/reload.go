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
