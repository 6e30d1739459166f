package stale_test

import (
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/stale"
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
		{"100 years", 0, stale.MaxThresholdDays, stale.MaxThreshold, false},
		{"over 100 years", 0, stale.MaxThresholdDays + 1, 0, true},
		{"wraps a Duration", 0, 106752, 0, true},
		{"practically never", 0, 365000, 0, true},
		{"zero", 0, 0, 0, true},
		{"negative", 0, -1, 0, true},
		{"override wins", 90 * time.Second, 365000, 90 * time.Second, false},
		{"negative override", -time.Hour, 7, 0, true},
		{"override over 100 years", stale.MaxThreshold + time.Hour, 7, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := stale.Threshold(c.override, c.days)
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
	stopped := func(state string) stale.Container {
		return stale.Container{Found: true, State: state, Created: long}
	}
	oldRow := stale.Instance{Status: stale.StatusStopped, CreatedAt: long, LastAliveAt: long}
	for _, c := range []struct {
		name          string
		in            stale.Instance
		c             stale.Container
		wantStale     bool
		wantReason    stale.Reason
		wantLastAlive time.Time
	}{
		{"exited long ago", oldRow, stopped("exited"), true, stale.ReasonStale, long},
		{"created, never started", oldRow, stopped("created"), true, stale.ReasonStale, long},
		{"dead", oldRow, stopped("dead"), true, stale.ReasonStale, long},
		{"missing", oldRow, stale.Container{}, true, stale.ReasonStale, long},
		{"running", oldRow, stopped("running"), false, stale.ReasonRunning, now},
		{"paused is someone's", oldRow, stopped("paused"), false, stale.ReasonRunning, now},
		{"restarting is someone's", oldRow, stopped("restarting"), false, stale.ReasonRunning, now},
		{"state unknown", oldRow, stale.Container{Unknown: true}, false, stale.ReasonUnknown, long},
		{"removing", stale.Instance{Status: stale.StatusRemoving, CreatedAt: long}, stopped("exited"), false, stale.ReasonRemoving, long},
		{"kept", oldRow, stale.Container{Found: true, State: "exited", Created: long,
			Labels: map[string]string{stale.LabelKeep: "true"}}, false, stale.ReasonKept, long},
		{"keep label not true", oldRow, stale.Container{Found: true, State: "exited", Created: long,
			Labels: map[string]string{stale.LabelKeep: "yes"}}, true, stale.ReasonStale, long},
		{"exactly at the threshold", stale.Instance{CreatedAt: long, LastAliveAt: now.Add(-threshold)}, stopped("exited"),
			false, stale.ReasonRecent, now.Add(-threshold)},
		{"just past the threshold", stale.Instance{CreatedAt: long, LastAliveAt: now.Add(-threshold - time.Nanosecond)}, stopped("exited"),
			true, stale.ReasonStale, now.Add(-threshold - time.Nanosecond)},
		{"FinishedAt is later than the row", oldRow, stale.Container{Found: true, State: "exited", Created: long,
			FinishedAt: now.Add(-time.Minute)}, false, stale.ReasonRecent, now.Add(-time.Minute)},
		{"zero FinishedAt and no last alive", stale.Instance{CreatedAt: long}, stopped("created"), true, stale.ReasonStale, long},
		{"redeploy: container just created", oldRow, stale.Container{Found: true, State: "created", Created: now.Add(-time.Minute)},
			false, stale.ReasonRecent, now.Add(-time.Minute)},
		{"row just created", stale.Instance{CreatedAt: now.Add(-time.Minute)}, stale.Container{}, false, stale.ReasonRecent, now.Add(-time.Minute)},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := stale.Judge(c.in, c.c, threshold, now)
			if v.Stale != c.wantStale || v.Reason != c.wantReason || !v.LastAlive.Equal(c.wantLastAlive) {
				t.Fatalf("Judge = stale %v, %q, last alive %s; want %v, %q, %s", v.Stale, v.Reason, v.LastAlive, c.wantStale, c.wantReason, c.wantLastAlive)
			}
		})
	}
	// No threshold in force judges nothing stale.
	if v := stale.Judge(oldRow, stale.Container{}, 0, now); v.Stale {
		t.Fatal("a zero threshold made an instance stale")
	}
}

func TestIsUUID(t *testing.T) {
	for s, want := range map[string]bool{
		"6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b": true,
		"6F1C2A9E-3B4D-4E5F-8A9B-0C1D2E3F4A5B": true,
		"6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5":  false,
		"6f1c2a9e33b4d-4e5f-8a9b-0c1d2e3f4a5b": false,
		"6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5g": false,
		"":                                     false,
	} {
		if got := stale.IsUUID(s); got != want {
			t.Errorf("IsUUID(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestShortIDAndStaleCount(t *testing.T) {
	if got := stale.ShortID("0123456789abcdef"); got != "0123456789ab" {
		t.Errorf("ShortID = %q", got)
	}
	if got := stale.ShortID("abc"); got != "abc" {
		t.Errorf("ShortID of a short id = %q", got)
	}
	snap := stale.Snapshot{Observations: []stale.Observation{{Verdict: stale.Verdict{Stale: true}}, {}, {Verdict: stale.Verdict{Stale: true}}}}
	if n := snap.StaleCount(); n != 2 {
		t.Errorf("StaleCount = %d, want 2", n)
	}
	for c, want := range map[string]string{"": stale.StateMissing, "exited": "exited"} {
		got := stale.Container{Found: c != "", State: c}.DockerState()
		if got != want {
			t.Errorf("DockerState of %q = %q, want %q", c, got, want)
		}
	}
	if got := (stale.Container{Unknown: true}).DockerState(); got != stale.StateUnknown {
		t.Errorf("DockerState of an unknown container = %q", got)
	}
}
