package api_test

import (
	"net/http"
	"os"
	"testing"

	"github.com/docker-watcher/stale-exporter/internal/api/apitest"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/scan"
	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// POST /-/reload (admin) reads the tokens file again: a token added is
// accepted, one removed refused; a file that does not load is answered 409
// and the tokens in force stay.
func TestReloadTokens(t *testing.T) {
	s := apitest.New(t, apitest.Options{Scan: scan.Result{Success: true, Snapshot: &stale.Snapshot{}}})
	if a := s.Do(http.MethodPost, "/-/reload", auth.RoleOperator, "", ""); a.Status != http.StatusForbidden {
		t.Fatalf("reload by an operator: %d", a.Status)
	}
	extra, err := auth.AddToken(s.TokensFile, "extra", auth.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.RemoveToken(s.TokensFile, "test-"+string(auth.RoleOperator)); err != nil {
		t.Fatal(err)
	}
	list := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/containers/stale", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := list(extra); got != http.StatusUnauthorized {
		t.Fatalf("a token added, before the reload: %d", got)
	}
	a := s.Do(http.MethodPost, "/-/reload", auth.RoleAdmin, "", "")
	if a.Status != http.StatusOK || string(a.Data) != `{"tokens":4}` {
		t.Fatalf("reload: %d %s", a.Status, a.Data)
	}
	if got := list(extra); got != http.StatusOK {
		t.Fatalf("the added token after the reload: %d", got)
	}
	if got := list(s.Tokens[auth.RoleOperator]); got != http.StatusUnauthorized {
		t.Fatalf("the removed token after the reload: %d", got)
	}
	if err := os.WriteFile(s.TokensFile, []byte("tokens: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if a := s.Do(http.MethodPost, "/-/reload", auth.RoleAdmin, "", ""); a.Status != http.StatusConflict || a.Code != "reload_failed" {
		t.Fatalf("reload of a broken file: %d %s", a.Status, a.Code)
	}
	if got := list(extra); got != http.StatusOK {
		t.Fatalf("after a failed reload the tokens in force: %d", got)
	}
}
