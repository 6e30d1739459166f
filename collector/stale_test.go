package collector_test

import (
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/collector"
	"github.com/docker-watcher/stale-exporter/store"
)

func TestThreshold(t *testing.T) {
	day := 24 * time.Hour
	for _, c := range []struct {
		name     string
		override time.Duration
		days     int64
		want     time.Duration
		wantErr  bool
	}{
		{"store default", 0, 7, 7 * day, false},
		{"one day", 0, 1, day, false},
		{"100 years", 0, collector.MaxThresholdDays, collector.MaxThreshold, false},
		{"over 100 years", 0, collector.MaxThresholdDays + 1, 0, true},
		{"wraps a Duration", 0, 106752, 0, true},
		{"practically never", 0, 365000, 0, true},
		{"zero", 0, 0, 0, true},
		{"negative", 0, -1, 0, true},
		{"override wins", 90 * time.Second, 365000, 90 * time.Second, false},
		{"negative override", -time.Hour, 7, 0, true},
		{"override over 100 years", collector.MaxThreshold + time.Hour, 7, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := collector.Threshold(c.override, c.days)
			if (err != nil) != c.wantErr || got != c.want {
				t.Fatalf("Threshold(%s, %d) = %s, %v; want %s, error %v", c.override, c.days, got, err, c.want, c.wantErr)
			}
			if err == nil && got <= 0 {
				t.Fatalf("Threshold(%s, %d) = %s: not positive", c.override, c.days, got)
			}
		})
	}
}

func TestJudge(t *testing.T) {
	const threshold = time.Hour
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	long := now.Add(-48 * time.Hour)
	stopped := func(state string) collector.Container {
		return collector.Container{Found: true, State: state, Created: long}
	}
	oldRow := store.Instance{Status: store.StatusStopped, CreatedAt: long, LastAliveAt: long}
	for _, c := range []struct {
		name          string
		in            store.Instance
		c             collector.Container
		wantStale     bool
		wantReason    collector.Reason
		wantLastAlive time.Time
	}{
		{"exited long ago", oldRow, stopped("exited"), true, collector.ReasonStale, long},
		{"created, never started", oldRow, stopped("created"), true, collector.ReasonStale, long},
		{"dead", oldRow, stopped("dead"), true, collector.ReasonStale, long},
		{"missing", oldRow, collector.Container{}, true, collector.ReasonStale, long},
		{"running", oldRow, stopped("running"), false, collector.ReasonRunning, now},
		{"paused is someone's", oldRow, stopped("paused"), false, collector.ReasonRunning, now},
		{"restarting is someone's", oldRow, stopped("restarting"), false, collector.ReasonRunning, now},
		{"state unknown", oldRow, collector.Container{Unknown: true}, false, collector.ReasonUnknown, long},
		{"removing", store.Instance{Status: store.StatusRemoving, CreatedAt: long}, stopped("exited"), false, collector.ReasonRemoving, long},
		{"kept", oldRow, collector.Container{Found: true, State: "exited", Created: long,
			Labels: map[string]string{collector.LabelKeep: "true"}}, false, collector.ReasonKept, long},
		{"keep label not true", oldRow, collector.Container{Found: true, State: "exited", Created: long,
			Labels: map[string]string{collector.LabelKeep: "yes"}}, true, collector.ReasonStale, long},
		{"exactly at the threshold", store.Instance{CreatedAt: long, LastAliveAt: now.Add(-threshold)}, stopped("exited"),
			false, collector.ReasonRecent, now.Add(-threshold)},
		{"just past the threshold", store.Instance{CreatedAt: long, LastAliveAt: now.Add(-threshold - time.Nanosecond)}, stopped("exited"),
			true, collector.ReasonStale, now.Add(-threshold - time.Nanosecond)},
		{"FinishedAt is later than the row", oldRow, collector.Container{Found: true, State: "exited", Created: long,
			FinishedAt: now.Add(-time.Minute)}, false, collector.ReasonRecent, now.Add(-time.Minute)},
		{"zero FinishedAt and no last alive", store.Instance{CreatedAt: long}, stopped("created"), true, collector.ReasonStale, long},
		{"redeploy: container just created", oldRow, collector.Container{Found: true, State: "created", Created: now.Add(-time.Minute)},
			false, collector.ReasonRecent, now.Add(-time.Minute)},
		{"row just created", store.Instance{CreatedAt: now.Add(-time.Minute)}, collector.Container{}, false, collector.ReasonRecent, now.Add(-time.Minute)},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := collector.Judge(c.in, c.c, threshold, now)
			if v.Stale != c.wantStale || v.Reason != c.wantReason || !v.LastAlive.Equal(c.wantLastAlive) {
				t.Fatalf("Judge = stale %v, %q, last alive %s; want %v, %q, %s", v.Stale, v.Reason, v.LastAlive, c.wantStale, c.wantReason, c.wantLastAlive)
			}
		})
	}
	// No threshold in force judges nothing stale.
	if v := collector.Judge(oldRow, collector.Container{}, 0, now); v.Stale {
		t.Fatal("a zero threshold made an instance stale")
	}
}
