package app_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/app"
	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

func config(dsn string) app.Config {
	addrs := []string{"127.0.0.1:0"}
	empty := ""
	systemd := false
	return app.Config{
		StoreDSN: dsn, StoreTimeout: 5 * time.Second, DockerAddr: "unix:///var/run/docker.sock", DockerTimeout: 5 * time.Second,
		CacheTTL: time.Second, ScanInterval: time.Minute, MaxSnapshotAge: time.Minute, Workers: 1, MaxPerRequest: 10,
		MaxStaleRatio: 0.5, CleanupWait: time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: time.Minute,
		IdleTimeout: time.Minute, MaxRequests: 10, DockerHostName: "in-process", Unowned: stale.UnownedOn,
		Web: &app.WebFlags{WebListenAddresses: &addrs, WebSystemdSocket: &systemd, WebConfigFile: &empty}, TelemetryPath: "/metrics",
	}
}

func TestValidate(t *testing.T) {
	for name, change := range map[string]func(c *app.Config){
		"no workers":                   func(c *app.Config) { c.Workers = 0 },
		"no bulk":                      func(c *app.Config) { c.MaxPerRequest = 0 },
		"ratio over one":               func(c *app.Config) { c.MaxStaleRatio = 1.5 },
		"zero store timeout":           func(c *app.Config) { c.StoreTimeout = 0 },
		"write timeout under the wait": func(c *app.Config) { c.WriteTimeout = 5 * time.Second },
		"write timeout under a scan":   func(c *app.Config) { c.DockerTimeout = 40 * time.Second },
		"negative threshold":           func(c *app.Config) { c.Threshold = -time.Hour },
		"negative max requests":        func(c *app.Config) { c.MaxRequests = -1 },
		"claim-unowned yes":            func(c *app.Config) { c.Unowned = "yes" },
		"negative job expiry":          func(c *app.Config) { c.JobExpiry = -time.Hour },
		"retention under a day":        func(c *app.Config) { c.Retention = time.Hour },
		"telemetry path relative":      func(c *app.Config) { c.TelemetryPath = "metrics" },
		"telemetry path the root":      func(c *app.Config) { c.TelemetryPath = "/" },
		"telemetry path in the API":    func(c *app.Config) { c.TelemetryPath = "/api/metrics" },
		"telemetry path of /-/":        func(c *app.Config) { c.TelemetryPath = "/-/ready" },
	} {
		c := config("")
		change(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := config("").Validate(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
}

// A tokens file others may read or write is accepted with a warning, as ssh
// warns of a key with loose permissions.
func TestTokensFileWithLoosePermissionsWarns(t *testing.T) {
	testenv.Docker(t)
	db := storetest.New(t)
	path, _ := testenv.Tokens(t, t.TempDir(), auth.RoleViewer)
	for mode, warns := range map[os.FileMode]bool{0o644: true, 0o600: false} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		cfg := config(db.DSN)
		cfg.TokensFile = path
		exporter, err := app.New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = exporter.Run(ctx)
		if got := strings.Contains(logs.String(), "chmod 600"); got != warns {
			t.Errorf("mode %#o: warned %v, want %v:\n%s", mode, got, warns, logs.String())
		}
	}
}

// The whole exporter runs in-process and stops in order when its context ends.
func TestRunInProcess(t *testing.T) {
	testenv.Docker(t)
	db := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	exporter, err := app.New(config(db.DSN), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- exporter.Run(ctx) }()
	testenv.WaitHTTP(t, "http://"+exporter.Addrs()[0].String()+"/-/ready", 20*time.Second)
	res, err := http.Get("http://" + exporter.Addrs()[0].String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `stale_exporter_scan_success{docker_host="in-process"} 1`) {
		t.Fatalf("/metrics: %d\n%.300s", res.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if _, err := http.Get("http://" + exporter.Addrs()[0].String() + "/-/healthy"); err == nil {
		t.Fatal("still serving after Run returned")
	}
}
