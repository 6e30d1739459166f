package cleanup_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/cleanup"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store"
)

// TestRealAlertmanagerDelivery has a real Alertmanager deliver one group of
// mixed alerts (a firing StaleContainer with action="cleanup", a firing one
// without, a resolved one, another alert) to the webhook, and checks each
// alert was judged on its own.
func TestRealAlertmanagerDelivery(t *testing.T) {
	binary := testenv.Binary(t, "prometheus-alertmanager", "alertmanager")
	e := newEnv(t, envOptions{})
	e.runningInstances(3)
	cleanID, cleanCID := e.staleInstance("shop")
	warnID, warnCID := e.staleInstance("shop")
	goneID := "6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"

	dir := t.TempDir()
	credentials := filepath.Join(dir, "token")
	if err := os.WriteFile(credentials, []byte(e.tokens[auth.RoleAlertmanager]), 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`route:
  receiver: stale-exporter
  group_by: [testgroup]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: stale-exporter
    webhook_configs:
      - url: %s/api/alertmanager/webhook
        send_resolved: true
        max_alerts: 0
        http_config:
          authorization:
            credentials_file: %s
`, e.url, credentials)
	if err := os.WriteFile(filepath.Join(dir, "alertmanager.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	testenv.Start(t, nil, binary, "--config.file="+filepath.Join(dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--cluster.listen-address=")
	testenv.WaitHTTP(t, "http://"+addr+"/-/ready", 30*time.Second)

	now := time.Now()
	alert := func(name, id, cid, action string, ends time.Time) map[string]any {
		labels := map[string]string{"alertname": name, "testgroup": "g", "instance_id": id, "container_id": cid,
			"project_name": "shop", "stage_name": "preview", "image_tag": "pr-1"}
		if action != "" {
			labels["action"] = action
		}
		a := map[string]any{"labels": labels, "annotations": map[string]string{"summary": "stale " + id},
			"startsAt": now.Add(-time.Hour).Format(time.RFC3339)}
		if !ends.IsZero() {
			a["endsAt"] = ends.Format(time.RFC3339)
		}
		return a
	}
	alerts := []map[string]any{
		alert("StaleContainer", cleanID, cleanCID, "cleanup", time.Time{}),
		alert("StaleContainer", warnID, warnCID, "", time.Time{}),
		alert("StaleContainer", goneID, "", "cleanup", now.Add(-time.Minute)),
		alert("InstanceDown", warnID, warnCID, "cleanup", time.Time{}),
	}
	body, _ := json.Marshal(alerts)
	res, err := http.Post("http://"+addr+"/api/v2/alerts", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("post alerts to Alertmanager: %d", res.StatusCode)
	}

	if result, reason := e.waitJobs(cleanID); result != store.ResultRemoved {
		t.Fatalf("cleanup alert: %s %q", result, reason)
	}
	if e.containerExists(cleanCID) || e.instanceExists(cleanID) {
		t.Fatal("the action=cleanup alert did not remove its container")
	}
	if !e.containerExists(warnCID) || !e.instanceExists(warnID) {
		t.Fatal("an alert without action=cleanup, or another alert, removed a container")
	}
	for result, want := range map[string]float64{
		cleanup.AlertCleanupRequested: 1, cleanup.AlertRecorded: 1, cleanup.AlertWasResolved: 1, cleanup.AlertIgnored: 1,
	} {
		if v := counterValue(t, e, "stale_exporter_webhook_alerts_total", map[string]string{"result": result}); v != want {
			t.Errorf("webhook alerts %s = %v, want %v", result, v, want)
		}
	}
	if n := e.db.Count(t, "SELECT count(*) FROM event_log WHERE severity = 'warning'"); n != 2 {
		t.Errorf("%d stale warnings, want 2 (one per firing StaleContainer)", n)
	}
	if n := e.db.Count(t, "SELECT count(*) FROM cleanup_jobs"); n != 1 {
		t.Errorf("%d cleanup jobs, want 1", n)
	}
}
