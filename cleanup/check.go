package cleanup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/store"
)

// checked is what a check saw and judged: the removal is pinned to it.
type checked struct {
	in      stale.Instance
	c       stale.Container
	verdict stale.Verdict
}

// errMisconfigured marks a check that cannot judge because of a setting (the
// threshold out of range, settings unusable): retrying does not help.
var errMisconfigured = errors.New("misconfigured")

// check re-checks a job against live Docker and the store right before
// acting. It returns a refusal, or an error if it could not tell.
func (s *Service) check(ctx context.Context, job store.Job) (checked, *refusal, error) {
	in, no, err := s.currentRow(ctx, job)
	if no != nil || err != nil {
		return checked{in: in}, no, err
	}
	if in.ContainerID == "" {
		return checked{in: in}, refuse(CodeNoContainer, "%s", stale.ReasonNoContainer), nil
	}
	c, err := s.docker.Inspect(ctx, job.ContainerID)
	if err != nil {
		return checked{in: in}, nil, err
	}
	if no, err := s.soleLabelled(ctx, in, c); no != nil || err != nil {
		return checked{in: in, c: c}, no, err
	}
	threshold, err := s.threshold(ctx)
	if err != nil {
		return checked{in: in, c: c}, nil, err
	}
	now := s.cfg.Now()
	v := stale.Judge(in, c, threshold, now)
	ch := checked{in: in, c: c, verdict: v}
	switch {
	case v.Reason == stale.ReasonRecent:
		return ch, refuse(CodeNotStale, "not stale: last alive %s ago, threshold %s", now.Sub(v.LastAlive).Round(time.Second), threshold), nil
	case !v.Stale:
		return ch, verdictRefusal(v), nil
	}
	if eligible := v.StaleSince.Add(s.cfg.Grace); job.Trigger == store.TriggerWebhook && now.Before(eligible) {
		return ch, refuse(CodeGrace, "automatic cleanup waits %s after the instance became stale (%s): eligible at %s; a person's cleanup does not wait",
			s.cfg.Grace, v.StaleSince.UTC().Format(time.RFC3339), eligible.UTC().Format(time.RFC3339)), nil
	}
	if job.Trigger != store.TriggerSingle {
		if no := s.massStaleGuard(ctx); no != nil {
			return ch, no, nil
		}
	}
	return ch, nil, nil
}

// currentRow reads the job's instance and refuses one this engine may not
// judge, or whose row names another container than the request.
func (s *Service) currentRow(ctx context.Context, job store.Job) (stale.Instance, *refusal, error) {
	in, err := s.store.Instance(ctx, job.InstanceID)
	if errors.Is(err, store.ErrNotFound) {
		return in, refuse(CodeGone, "instance no longer exists"), nil
	}
	if err != nil {
		return in, nil, err
	}
	if no, err := s.ownership(ctx, in, job); no != nil || err != nil {
		return in, no, err
	}
	if in.ContainerID != job.ContainerID {
		return in, refuse(CodeReplaced, "instance now has container %q, not %q: replaced since the request", in.ContainerID, job.ContainerID), nil
	}
	return in, nil, nil
}

// soleLabelled refuses a container (inspected by whatever the row holds: a
// full id, a prefix or a name) that does not carry the instance's label, or
// an instance whose label another container carries too: which of them is
// the instance is then ambiguous.
func (s *Service) soleLabelled(ctx context.Context, in stale.Instance, c stale.Container) (*refusal, error) {
	if c.Found && c.Labels[stale.LabelInstanceID] != in.ID {
		return refuse(CodeNotManaged, "container does not carry %s=%s", stale.LabelInstanceID, in.ID), nil
	}
	labelled, err := s.docker.Labelled(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	if others := slices.DeleteFunc(labelled, func(id string) bool { return c.Found && id == c.ID }); len(others) > 0 {
		s.metrics.sharedLabels.Inc()
		return refuse(CodeSharedLabel, "%s: %s", stale.ReasonSharedLabel, shortIDs(others)), nil
	}
	return nil, nil
}

func shortIDs(ids []string) string {
	out := ""
	for i, id := range ids {
		if i > 0 {
			out += ", "
		}
		out += stale.ShortID(id)
	}
	return out
}

// threshold is the stale threshold in force, validated.
func (s *Service) threshold(ctx context.Context) (time.Duration, error) {
	var days int64
	if s.cfg.Threshold == 0 {
		var err error
		if days, err = s.store.ThresholdDays(ctx); errors.Is(err, store.ErrSettings) {
			return 0, fmt.Errorf("%w: %w", errMisconfigured, err)
		} else if err != nil {
			return 0, err
		}
	}
	threshold, err := stale.Threshold(s.cfg.Threshold, days)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errMisconfigured, err)
	}
	return threshold, nil
}

// ownership refuses an instance this engine does not judge (only its
// owner's exporter may look at its container; an unowned one only while the
// mode allows, read live), or one that moved since the request.
func (s *Service) ownership(ctx context.Context, in stale.Instance, job store.Job) (*refusal, error) {
	others := 0
	if in.DockerHost == "" && s.cfg.Unowned == stale.UnownedAuto {
		var err error
		if others, err = s.store.OtherEngines(ctx, s.cfg.Host); err != nil {
			return nil, err
		}
	}
	scope := s.cfg.Scope(others)
	switch {
	case !scope.Judges(in) && in.DockerHost == "":
		return refuse(CodeNotOwned, "no Docker host owns this instance yet and this exporter does not judge unowned ones "+
			"(--docker.claim-unowned=%s); its engine's exporter will once it lists the container", s.cfg.Unowned), nil
	case !scope.Judges(in):
		return refuse(CodeNotOwned, "instance is owned by Docker host %q: only its exporter judges and removes it", in.DockerHost), nil
	case !job.DryRun && job.DockerHost != "" && in.DockerHost != job.DockerHost:
		return refuse(CodeMoved, "instance moved to Docker host %q since the request (for %q)", in.DockerHost, job.DockerHost), nil
	}
	return nil, nil
}

// pinned re-checks a job that has marked its instance removing, right before
// the removal, whether the mark was made just now or before an interruption:
// its judgement is not made again (a guard or threshold that changed since
// must not leave a removal half done), but the live state must still be the
// one it judged. The row still holds the same container and is still
// removing; the container the row names is the very container checked (its
// full id), carries the instance's label alone, is not running, and shows no
// sign of life newer than the one judged. It returns the container to remove
// (by its full id), not Found when it is no longer there (the engine acted
// before an interruption).
func (s *Service) pinned(ctx context.Context, job store.Job) (in stale.Instance, target stale.Container, no *refusal, err error) {
	in, no, err = s.currentRow(ctx, job)
	if no != nil || err != nil {
		return in, target, no, err
	}
	if in.Status != stale.StatusRemoving {
		return in, target, refuse(CodeChanged, "instance status changed to %q while it was being removed", in.Status), nil
	}
	c, err := s.docker.Inspect(ctx, job.ContainerID)
	if err != nil {
		return in, target, nil, err
	}
	if !c.Found {
		no, err := s.pinnedGone(ctx, job)
		return in, target, no, err
	}
	if c.ID != job.TargetContainerID {
		return in, target, refuse(CodeReplaced, "%q now names container %s, not the container %s that was checked",
			job.ContainerID, stale.ShortID(c.ID), stale.ShortID(job.TargetContainerID)), nil
	}
	if no, err := s.soleLabelled(ctx, in, c); no != nil || err != nil {
		return in, target, no, err
	}
	switch last := stale.LastAlive(in, c); {
	case c.Running():
		return in, target, refuse(CodeRunning, "%s", stale.ReasonRunning), nil
	case stale.NewerSignOfLife(last, job.JudgedLastAlive):
		return in, target, refuse(CodeRanAgain, "a sign of life at %s, after the %s that was judged: the container ran again",
			last.UTC().Format(time.RFC3339Nano), job.JudgedLastAlive.UTC().Format(time.RFC3339Nano)), nil
	}
	return in, c, nil, nil
}

// pinnedGone decides a pinned job whose row's reference finds no container:
// gone (no refusal, and pinned's target not Found) if the checked container
// is gone too, or none was there to check.
func (s *Service) pinnedGone(ctx context.Context, job store.Job) (*refusal, error) {
	if job.TargetContainerID == "" || job.TargetContainerID == job.ContainerID {
		return nil, nil
	}
	c, err := s.docker.Inspect(ctx, job.TargetContainerID)
	switch {
	case err != nil:
		return nil, err
	case c.Found:
		return refuse(CodeReplaced, "container %s no longer answers to %q: renamed since it was checked",
			stale.ShortID(job.TargetContainerID), job.ContainerID), nil
	}
	return nil, nil
}

// massStaleGuard refuses automatic cleanup when too many instances are stale
// at once: that smells of a broken Docker or clock, not of real staleness.
func (s *Service) massStaleGuard(ctx context.Context) *refusal {
	r := s.scans.Result(ctx)
	snap := r.Snapshot
	if !r.Success || snap == nil {
		return refuse(CodeGuard, "mass-stale guard: the latest scan failed, refusing automatic cleanup")
	}
	total, staleCount := len(snap.Observations), snap.StaleCount()
	if total > 0 && float64(staleCount)/float64(total) > s.cfg.MaxStaleRatio {
		return refuse(CodeGuard, "mass-stale guard: %d of %d instances are stale (more than %.0f%%), refusing automatic cleanup",
			staleCount, total, 100*s.cfg.MaxStaleRatio)
	}
	return nil
}
