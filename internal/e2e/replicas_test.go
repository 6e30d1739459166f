package e2e_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/auth"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
	"github.com/docker-watcher/stale-exporter/store/storetest"
)

// TestTwoProcessesOneDatabase runs two stale-exporter processes on one
// database and asks both, at once, to clean the same instances: each
// instance is removed exactly once.
func TestTwoProcessesOneDatabase(t *testing.T) {
	docker := testenv.Docker(t)
	db := storetest.New(t)
	dir := t.TempDir()
	old := time.Now().Add(-48 * time.Hour)
	var staleIDs []string
	for i := range 12 {
		id := db.AddInstance(t, storetest.Instance{Project: "shop", Stage: "preview", CreatedAt: old})
		cid := testenv.NewContainer(t, docker, testenv.ContainerSpec{Labels: map[string]string{stale.LabelInstanceID: id}, Start: i%2 == 0})
		db.Exec(t, "UPDATE instances SET container_id = $2 WHERE id = $1", id, cid)
		if i%2 == 1 {
			staleIDs = append(staleIDs, id)
		}
	}
	tokensFile, secrets := testenv.Tokens(t, dir, auth.RoleOperator)
	secret := secrets[auth.RoleOperator]
	binary := testenv.BuildExporter(t)
	var addrs []string
	for range 2 {
		addr := testenv.FreeAddr(t)
		testenv.Start(t, append(os.Environ(), "STALE_EXPORTER_STORE_DSN="+db.DSN), binary,
			"--web.listen-address="+addr, "--api.tokens-file="+tokensFile, "--stale.threshold="+threshold.String(), "--cleanup.workers=2")
		testenv.WaitHTTP(t, "http://"+addr+"/-/ready", 20*time.Second)
		addrs = append(addrs, addr)
	}
	time.Sleep(threshold) // the containers age past the threshold

	var wg sync.WaitGroup
	statuses := make(chan int, 4*len(staleIDs))
	for _, id := range staleIDs {
		for _, addr := range addrs {
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/containers/stale/"+id+"/cleanup", nil)
					req.Header.Set("Authorization", "Bearer "+secret)
					res, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					res.Body.Close()
					statuses <- res.StatusCode
				}()
			}
		}
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Errorf("cleanup answered %d, want 200 (removed, or the shared job that removed it)", s)
		}
	}
	if n := db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE result = 'removed'"); n != len(staleIDs) {
		t.Errorf("removed jobs = %d, want %d", n, len(staleIDs))
	}
	if n := db.Count(t, "SELECT count(*) FROM cleanup_jobs WHERE attempts <> 1"); n != 0 {
		t.Errorf("%d jobs were claimed more than once", n)
	}
	if n := db.Count(t, "SELECT count(*) FROM event_log WHERE message LIKE 'removed %'"); n != len(staleIDs) {
		t.Errorf("removal events = %d, want %d", n, len(staleIDs))
	}
	if n := db.Count(t, "SELECT count(*) FROM instances"); n != 12-len(staleIDs) {
		t.Errorf("instances left = %d, want %d", n, 12-len(staleIDs))
	}
	total := 0.0
	for _, addr := range addrs {
		total += removedCount(t, "http://"+addr+"/metrics")
	}
	if total != float64(len(staleIDs)) {
		t.Errorf("the two processes report %v removals in all, want %d", total, len(staleIDs))
	}
}

// removedCount sums stale_exporter_cleanups_total{result="removed"} of one exporter.
func removedCount(t *testing.T, url string) float64 {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "stale_exporter_cleanups_total{") && strings.Contains(line, `result="removed"`) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatal(fmt.Errorf("parse %q: %w", line, err))
			}
			sum += v
		}
	}
	return sum
}
