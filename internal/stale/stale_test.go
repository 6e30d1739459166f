package stale_test

import (
	"strings"
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
	managed := map[string]string{stale.LabelInstanceID: "i1"}
	stopped := func(state string) stale.Container {
		return stale.Container{Found: true, State: state, Created: long, Labels: managed}
	}
	oldRow := stale.Instance{ID: "i1", Status: stale.StatusStopped, CreatedAt: long, LastAliveAt: long, ContainerID: "c1"}
	keep := func(value string) stale.Container {
		return stale.Container{Found: true, State: "exited", Created: long, Labels: map[string]string{stale.LabelInstanceID: "i1", stale.LabelKeep: value}}
	}
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
		{"removing", stale.Instance{ID: "i1", Status: stale.StatusRemoving, CreatedAt: long, ContainerID: "c1"}, stopped("exited"), false, stale.ReasonRemoving, long},
		{"kept", oldRow, keep("true"), false, stale.ReasonKept, long},
		{"kept TRUE", oldRow, keep("TRUE"), false, stale.ReasonKept, long},
		{"kept True", oldRow, keep("True"), false, stale.ReasonKept, long},
		{"kept 1", oldRow, keep("1"), false, stale.ReasonKept, long},
		{"kept t", oldRow, keep("t"), false, stale.ReasonKept, long},
		{"keep yes is not a boolean: protects", oldRow, keep("yes"), false, stale.ReasonKeepUnparsable, long},
		{"keep empty is not a boolean: protects", oldRow, keep(""), false, stale.ReasonKeepUnparsable, long},
		{"keep FALSE", oldRow, keep("FALSE"), true, stale.ReasonStale, long},
		{"keep 0", oldRow, keep("0"), true, stale.ReasonStale, long},
		{"no container", stale.Instance{CreatedAt: long, LastAliveAt: long}, stale.Container{}, false, stale.ReasonNoContainer, long},
		{"two containers carry the label", oldRow, stale.Container{Found: true, State: "exited", Created: long, Labels: managed, SharedLabel: true},
			false, stale.ReasonSharedLabel, long},
		{"missing while another container carries the label", oldRow, stale.Container{SharedLabel: true}, false, stale.ReasonSharedLabel, long},
		{"container without the instance's label", oldRow, stale.Container{Found: true, State: "exited", Created: long},
			false, stale.ReasonNotManaged, long},
		{"container labelled for another instance", oldRow, stale.Container{Found: true, State: "exited", Created: long,
			Labels: map[string]string{stale.LabelInstanceID: "i2"}}, false, stale.ReasonNotManaged, long},
		{"started later than it finished: a sign of life", oldRow, stale.Container{Found: true, State: "exited", Created: long, Labels: managed,
			StartedAt: now.Add(-time.Minute), FinishedAt: long}, false, stale.ReasonRecent, now.Add(-time.Minute)},
		{"exactly at the threshold", stale.Instance{ID: "i1", CreatedAt: long, LastAliveAt: now.Add(-threshold), ContainerID: "c1"}, stopped("exited"),
			false, stale.ReasonRecent, now.Add(-threshold)},
		{"just past the threshold", stale.Instance{ID: "i1", CreatedAt: long, LastAliveAt: now.Add(-threshold - time.Nanosecond), ContainerID: "c1"}, stopped("exited"),
			true, stale.ReasonStale, now.Add(-threshold - time.Nanosecond)},
		{"FinishedAt is later than the row", oldRow, stale.Container{Found: true, State: "exited", Created: long, Labels: managed,
			FinishedAt: now.Add(-time.Minute)}, false, stale.ReasonRecent, now.Add(-time.Minute)},
		{"zero FinishedAt and no last alive", stale.Instance{ID: "i1", CreatedAt: long, ContainerID: "c1"}, stopped("created"), true, stale.ReasonStale, long},
		{"redeploy: container just created", oldRow, stale.Container{Found: true, State: "created", Created: now.Add(-time.Minute), Labels: managed},
			false, stale.ReasonRecent, now.Add(-time.Minute)},
		{"row just created", stale.Instance{CreatedAt: now.Add(-time.Minute), ContainerID: "c1"}, stale.Container{}, false, stale.ReasonRecent, now.Add(-time.Minute)},
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

func TestNewerSignOfLife(t *testing.T) {
	judged := time.Date(2026, 11, 23, 12, 0, 0, 123456000, time.UTC)
	for _, c := range []struct {
		name string
		last time.Time
		want bool
	}{
		{"same", judged, false},
		{"nanoseconds the store cannot hold", judged.Add(999 * time.Nanosecond), false},
		{"one microsecond later", judged.Add(time.Microsecond), true},
		{"earlier", judged.Add(-time.Second), false},
	} {
		if got := stale.NewerSignOfLife(c.last, judged); got != c.want {
			t.Errorf("%s: NewerSignOfLife = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestValidID(t *testing.T) {
	for id, ok := range map[string]bool{
		"6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b": true,
		"p1":                                   true,
		"inst-0001":                            true,
		"01ARZ3NDEKTSV4RRFFQ69G5FAV":           true,
		"projekt-ä":                            true,
		"":                                     false,
		"a b":                                  false,
		"a\tb":                                 false,
		"a\x00":                                false,
		"\xff\xfe":                             false,
		strings.Repeat("x", stale.MaxIDLen):    true,
		strings.Repeat("x", stale.MaxIDLen+1):  false,
	} {
		if err := stale.ValidID(id); (err == nil) != ok {
			t.Errorf("ValidID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

func TestScope(t *testing.T) {
	mine, other, unowned := stale.Instance{DockerHost: "a"}, stale.Instance{DockerHost: "b"}, stale.Instance{}
	for _, c := range []struct {
		scope                stale.Scope
		mine, other, unowned bool
	}{
		{stale.Scope{Host: "a"}, true, false, false},
		{stale.Scope{Host: "a", Unowned: true}, true, false, true},
	} {
		if c.scope.Judges(mine) != c.mine || c.scope.Judges(other) != c.other || c.scope.Judges(unowned) != c.unowned {
			t.Errorf("%+v judges mine=%v other=%v unowned=%v", c.scope, c.scope.Judges(mine), c.scope.Judges(other), c.scope.Judges(unowned))
		}
	}
	for _, c := range []struct {
		mode   string
		others int
		want   bool
	}{
		{"auto", 0, true}, {"auto", 1, false}, {"true", 3, true}, {"false", 0, false},
	} {
		m, err := stale.ParseUnownedMode(c.mode)
		if err != nil || m.JudgesUnowned(c.others) != c.want {
			t.Errorf("%s with %d other engines: %v %v, want %v", c.mode, c.others, m.JudgesUnowned(c.others), err, c.want)
		}
	}
	for _, bad := range []string{"", "yes", "AUTO", "1"} {
		if _, err := stale.ParseUnownedMode(bad); err == nil {
			t.Errorf("ParseUnownedMode(%q) accepted", bad)
		}
	}
}

func TestIsFullContainerID(t *testing.T) {
	full := strings.Repeat("0123456789abcdef", 4)
	for ref, want := range map[string]bool{full: true, full[:12]: false, strings.ToUpper(full): false, "web-1": false, full + "0": false} {
		if got := stale.IsFullContainerID(ref); got != want {
			t.Errorf("IsFullContainerID(%q) = %v", ref, got)
		}
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

func TestPolicyAndKeeps(t *testing.T) {
	const threshold = 24 * time.Hour
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	lastAlive := now.Add(-2 * time.Hour)
	row := stale.Instance{ID: "i1", Status: stale.StatusStopped, CreatedAt: lastAlive, LastAliveAt: lastAlive, ContainerID: "c1"}
	labelled := func(kv ...string) stale.Container {
		l := map[string]string{stale.LabelInstanceID: "i1"}
		for i := 0; i < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return stale.Container{Found: true, State: "exited", Created: lastAlive, Labels: l}
	}
	kept := func(in stale.Instance, k stale.Keep) stale.Instance { in.Keep = &k; return in }
	for _, c := range []struct {
		name       string
		in         stale.Instance
		c          stale.Container
		wantStale  bool
		wantReason stale.Reason
		wantSince  time.Time
	}{
		{"global threshold: not yet", row, labelled(), false, stale.ReasonRecent, time.Time{}},
		{"stale-after 1h: stale earlier", row, labelled(stale.LabelStaleAfter, "1h"), true, stale.ReasonStale, lastAlive.Add(time.Hour)},
		{"a forever keep", kept(row, stale.Keep{}), labelled(), false, stale.ReasonKeptUntil, time.Time{}},
		{"stale-after in days", row, labelled(stale.LabelStaleAfter, "1d"), false, stale.ReasonRecent, time.Time{}},
		{"stale-after never", row, labelled(stale.LabelStaleAfter, "never"), false, stale.ReasonNever, time.Time{}},
		{"stale-after NEVER", row, labelled(stale.LabelStaleAfter, "NEVER"), false, stale.ReasonNever, time.Time{}},
		{"stale-after unparsable", row, labelled(stale.LabelStaleAfter, "soon"), false, stale.ReasonPolicyUnparsable, time.Time{}},
		{"stale-after zero", row, labelled(stale.LabelStaleAfter, "0s"), false, stale.ReasonPolicyUnparsable, time.Time{}},
		{"stale-after over 100 years", row, labelled(stale.LabelStaleAfter, "36501d"), false, stale.ReasonPolicyUnparsable, time.Time{}},
		{"keep-until in the future", row, labelled(stale.LabelStaleAfter, "1h", stale.LabelKeepUntil, "2026-11-24T00:00:00Z"),
			false, stale.ReasonKeptUntil, time.Time{}},
		{"keep-until ended after the threshold: stale since its end", row,
			labelled(stale.LabelStaleAfter, "1h", stale.LabelKeepUntil, "2026-11-23T11:30:00Z"), true, stale.ReasonStale,
			time.Date(2026, 11, 23, 11, 30, 0, 0, time.UTC)},
		{"keep-until ended before the threshold", row, labelled(stale.LabelStaleAfter, "1h", stale.LabelKeepUntil, "2026-11-01T00:00:00Z"),
			true, stale.ReasonStale, lastAlive.Add(time.Hour)},
		{"keep-until unparsable", row, labelled(stale.LabelStaleAfter, "1h", stale.LabelKeepUntil, "tomorrow"),
			false, stale.ReasonPolicyUnparsable, time.Time{}},
		{"a person's keep forever", kept(row, stale.Keep{By: "ops"}), labelled(stale.LabelStaleAfter, "1h"), false, stale.ReasonKeptUntil, time.Time{}},
		{"a person's keep until later", kept(row, stale.Keep{Until: now.Add(time.Minute)}), labelled(stale.LabelStaleAfter, "1h"),
			false, stale.ReasonKeptUntil, time.Time{}},
		{"a person's keep ended: stale again at once, since its end", kept(row, stale.Keep{Until: now.Add(-time.Minute)}),
			labelled(stale.LabelStaleAfter, "1h"), true, stale.ReasonStale, now.Add(-time.Minute)},
		{"a keep never makes a running container stale", kept(row, stale.Keep{Until: now.Add(-time.Minute)}),
			stale.Container{Found: true, State: "running", Labels: map[string]string{stale.LabelInstanceID: "i1"}}, false, stale.ReasonRunning, time.Time{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := stale.Judge(c.in, c.c, threshold, now)
			if v.Stale != c.wantStale || v.Reason != c.wantReason || !v.StaleSince.Equal(c.wantSince) {
				t.Fatalf("Judge = stale %v, %q (%s), since %s; want %v, %q, since %s", v.Stale, v.Reason, v.Detail, v.StaleSince,
					c.wantStale, c.wantReason, c.wantSince)
			}
			if v.Reason == stale.ReasonPolicyUnparsable && !strings.Contains(v.Explain(), "docker-watcher.") {
				t.Fatalf("unparsable label not named: %q", v.Explain())
			}
			if v.Reason == stale.ReasonKeptUntil && v.Keep == nil {
				t.Fatal("kept without the keep")
			}
		})
	}
}

func TestParseStaleAfter(t *testing.T) {
	for raw, want := range map[string]time.Duration{"90s": 90 * time.Second, "36h": 36 * time.Hour, "7d": 7 * 24 * time.Hour,
		" 2H ": 2 * time.Hour, "never": 0, "36500d": stale.MaxThreshold} {
		if got, err := stale.ParseStaleAfter(raw); err != nil || got != want {
			t.Errorf("ParseStaleAfter(%q) = %s %v, want %s", raw, got, err, want)
		}
	}
	for _, raw := range []string{"", "soon", "-1h", "0", "0d", "36501d", "1.5d", "1w"} {
		if _, err := stale.ParseStaleAfter(raw); err == nil {
			t.Errorf("ParseStaleAfter(%q) accepted", raw)
		}
	}
}

// ChangesAt is the first instant at which time alone changes the verdict:
// judged then, it has changed; judged a nanosecond before, it has not.
func TestVerdictChangesAt(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	managed := map[string]string{stale.LabelInstanceID: "i1"}
	exited := stale.Container{Found: true, State: "exited", Created: now.Add(-time.Hour), Labels: managed}
	row := stale.Instance{ID: "i1", Status: stale.StatusStopped, CreatedAt: now.Add(-time.Hour), ContainerID: "c1"}
	kept := row
	kept.Keep = &stale.Keep{Until: now.Add(3 * time.Hour), By: "ana", Reason: "demo"}
	forever := row
	forever.Keep = &stale.Keep{By: "ana", Reason: "demo"}
	running := exited
	running.State = "running"
	for name, c := range map[string]struct {
		in   stale.Instance
		c    stale.Container
		want time.Time
	}{
		"recent":       {row, exited, now.Add(time.Hour + time.Nanosecond)},
		"kept a while": {kept, exited, now.Add(3 * time.Hour)},
		"kept forever": {forever, exited, time.Time{}},
		"running":      {row, running, time.Time{}},
	} {
		v := stale.Judge(c.in, c.c, 2*time.Hour, now)
		at := v.ChangesAt()
		if !at.Equal(c.want) {
			t.Errorf("%s: changes at %v, want %v", name, at, c.want)
		}
		if at.IsZero() {
			continue
		}
		if before := stale.Judge(c.in, c.c, 2*time.Hour, at.Add(-time.Nanosecond)); before.Reason != v.Reason {
			t.Errorf("%s: changed a nanosecond early: %s", name, before.Reason)
		}
		if after := stale.Judge(c.in, c.c, 2*time.Hour, at); after.Reason == v.Reason {
			t.Errorf("%s: unchanged at %v: %s", name, at, after.Reason)
		}
	}
}
