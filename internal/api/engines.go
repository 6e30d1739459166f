package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/docker-watcher/stale-exporter/store"
)

// EngineView is one registered engine as the API shows it.
type EngineView struct {
	Name      string `json:"name"`
	FirstSeen string `json:"first_seen"`
	LastSeen  string `json:"last_seen"`
}

func (a *API) listEngines(w http.ResponseWriter, r *http.Request, _ httprouter.Params, _ string) {
	if !noQuery(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.StoreTimeout)
	defer cancel()
	engines, err := a.engines.Engines(ctx)
	if err != nil {
		a.writeStoreError(w, "list engines", err)
		return
	}
	out := make([]EngineView, len(engines))
	for i, e := range engines {
		out[i] = EngineView{Name: e.Name, FirstSeen: e.FirstSeen.UTC().Format(time.RFC3339), LastSeen: e.LastSeen.UTC().Format(time.RFC3339)}
	}
	writeJSON(w, http.StatusOK, out)
}

// forgetEngine removes an engine's registration (audited in the event log):
// for an engine retired for good, so that exporters in
// --docker.claim-unowned=auto judge unowned instances again once it was the
// only other one.
func (a *API) forgetEngine(w http.ResponseWriter, r *http.Request, ps httprouter.Params, requestedBy string) {
	if !noQuery(w, r) {
		return
	}
	name := ps.ByName("name")
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.StoreTimeout)
	defer cancel()
	err := a.engines.ForgetEngine(ctx, name, requestedBy)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no engine "+name+" is registered", nil)
		return
	}
	if err != nil {
		a.writeStoreError(w, "forget engine", err)
		return
	}
	a.logger.Warn("engine registration removed", "docker_host", name, "requested_by", requestedBy)
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "forgotten": true})
}
