package api

import (
	"strings"
	"testing"

	"github.com/prometheus/alertmanager/template"
)

func TestValidateAlert(t *testing.T) {
	ok := template.Alert{Status: "firing", Fingerprint: "0123456789abcdef",
		Labels: template.KV{"alertname": "StaleContainer"}, Annotations: template.KV{"summary": "stale"}}
	with := func(change func(a *template.Alert)) template.Alert {
		a := ok
		a.Labels, a.Annotations = template.KV{}, template.KV{}
		for k, v := range ok.Labels {
			a.Labels[k] = v
		}
		for k, v := range ok.Annotations {
			a.Annotations[k] = v
		}
		change(&a)
		return a
	}
	for name, c := range map[string]struct {
		alert    template.Alert
		errorHas string
	}{
		"valid":               {ok, ""},
		"NUL in a label":      {with(func(a *template.Alert) { a.Labels["project_name"] = "sh\x00op" }), "NUL"},
		"NUL in a label name": {with(func(a *template.Alert) { a.Labels["a\x00"] = "x" }), "NUL"},
		"NUL in annotation":   {with(func(a *template.Alert) { a.Annotations["summary"] = "\x00" }), "NUL"},
		"NUL in status":       {with(func(a *template.Alert) { a.Status = "firing\x00" }), "NUL"},
		"long fingerprint":    {with(func(a *template.Alert) { a.Fingerprint = strings.Repeat("f", 8000) }), "at most 64"},
		"64-char fingerprint": {with(func(a *template.Alert) { a.Fingerprint = strings.Repeat("f", 64) }), ""},
	} {
		err := validateAlert(c.alert)
		if (c.errorHas == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.errorHas)) {
			t.Errorf("%s: %v, want %q", name, err, c.errorHas)
		}
	}
}
