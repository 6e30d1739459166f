package cleanup

import (
	"fmt"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// Code is the stable name of why a cleanup did not remove: the job's
// reason_code, the API's error code and the label of
// stale_exporter_cleanup_refusals_total. The reason beside it is for people.
type Code string

// The codes of refusals (skips) and failures.
const (
	CodeGone          Code = "gone"         // the instance no longer exists
	CodeNotOwned      Code = "not_owned"    // another engine (or none yet) owns it
	CodeMoved         Code = "moved"        // it moved to another engine since the request
	CodeReplaced      Code = "replaced"     // it names another container than the one asked for or checked
	CodeNotManaged    Code = "not_managed"  // its container lacks the instance's label
	CodeSharedLabel   Code = "shared_label" // two containers carry the instance's label
	CodeRunning       Code = "instance_running"
	CodeNotStale      Code = "not_stale"
	CodeRemoving      Code = "removing" // being removed by another job
	CodeKept          Code = "kept"
	CodePolicy        Code = "policy" // the container's labels say never, or do not parse
	CodeGrace         Code = "grace"  // an automatic cleanup before the grace has passed
	CodeStateUnknown  Code = "state_unknown"
	CodeNoContainer   Code = "no_container"
	CodeGuard         Code = "guard"     // the mass-stale guard
	CodeChanged       Code = "changed"   // the row changed while it was checked
	CodeRanAgain      Code = "ran_again" // a sign of life newer than the check
	CodeExpired       Code = "expired"   // no exporter of its engine carried it out in time
	CodeUnavailable   Code = "unavailable"
	CodeMisconfigured Code = "misconfigured"
)

// Codes are every code, so that every series of the refusal counter exists.
var Codes = []Code{CodeGone, CodeNotOwned, CodeMoved, CodeReplaced, CodeNotManaged, CodeSharedLabel, CodeRunning,
	CodeNotStale, CodeRemoving, CodeKept, CodePolicy, CodeGrace, CodeStateUnknown, CodeNoContainer, CodeGuard, CodeChanged, CodeRanAgain,
	CodeExpired, CodeUnavailable, CodeMisconfigured}

// refusal is why a job may not remove: a code and a reason for people.
type refusal struct {
	code   Code
	reason string
}

func refuse(code Code, format string, args ...any) *refusal {
	return &refusal{code: code, reason: fmt.Sprintf(format, args...)}
}

// verdictRefusal is the refusal for a verdict of the stale rule that is not
// stale.
func verdictRefusal(v stale.Verdict) *refusal {
	codes := map[stale.Reason]Code{
		stale.ReasonRunning:          CodeRunning,
		stale.ReasonRemoving:         CodeRemoving,
		stale.ReasonKept:             CodeKept,
		stale.ReasonKeepUnparsable:   CodeKept,
		stale.ReasonUnknown:          CodeStateUnknown,
		stale.ReasonNoContainer:      CodeNoContainer,
		stale.ReasonSharedLabel:      CodeSharedLabel,
		stale.ReasonNotManaged:       CodeNotManaged,
		stale.ReasonKeptUntil:        CodeKept,
		stale.ReasonNever:            CodePolicy,
		stale.ReasonPolicyUnparsable: CodePolicy,
		stale.ReasonRecent:           CodeNotStale,
	}
	code, ok := codes[v.Reason]
	if !ok {
		code = CodeNotStale
	}
	switch {
	case v.Reason == stale.ReasonRemoving:
		return refuse(code, "instance is already being removed")
	case v.Keep != nil && v.Keep.Forever():
		return refuse(code, "kept forever by %s: %s", v.Keep.By, v.Keep.Reason)
	case v.Keep != nil:
		return refuse(code, "kept until %s by %s: %s", v.Keep.Until.UTC().Format(time.RFC3339), keptBy(*v.Keep), v.Keep.Reason)
	}
	return refuse(code, "%s", v.Explain())
}

// keptBy names who kept an instance: a person, or its label.
func keptBy(k stale.Keep) string {
	if k.By == "" {
		return "its label"
	}
	return k.By
}
