package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"
)

// The list's page size: by default, and at most.
const (
	defaultPageSize = 500
	maxPageSize     = 5000
)

// ListQuery is what GET /api/containers/stale takes: exact project and
// stage names, a page size, and the cursor of the page before.
type ListQuery struct {
	Project, Stage string
	Limit          int
	After          *pageKey
}

// pageKey is where a row sits in the list's order: stale ones first, then
// the longest since last alive, then by instance id. A stopped container's
// last alive does not move, so a cursor holds its place across scans.
type pageKey struct {
	Stale      bool      `json:"s"`
	LastAlive  time.Time `json:"a"`
	InstanceID string    `json:"i"`
}

func (k pageKey) before(o pageKey) bool {
	switch {
	case k.Stale != o.Stale:
		return k.Stale
	case !k.LastAlive.Equal(o.LastAlive):
		return k.LastAlive.Before(o.LastAlive)
	}
	return k.InstanceID < o.InstanceID
}

func (k pageKey) cursor() string {
	raw, _ := json.Marshal(k)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// ParseListQuery reads the list's query; the cursor is what next_cursor
// gave.
func ParseListQuery(rawQuery string) (ListQuery, error) {
	q, err := parseQuery(rawQuery, "project", "stage", "limit", "cursor")
	if err != nil {
		return ListQuery{}, err
	}
	lq := ListQuery{Project: q["project"], Stage: q["stage"], Limit: defaultPageSize}
	if raw, ok := q["limit"]; ok {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > maxPageSize {
			return ListQuery{}, fmt.Errorf("limit must be a number from 1 to %d, got %q", maxPageSize, raw)
		}
		lq.Limit = n
	}
	if raw, ok := q["cursor"]; ok {
		var k pageKey
		b, err := base64.RawURLEncoding.DecodeString(raw)
		if err != nil || json.Unmarshal(b, &k) != nil || k.InstanceID == "" {
			return ListQuery{}, fmt.Errorf("cursor %q is not one this API gave (next_cursor)", raw)
		}
		lq.After = &k
	}
	return lq, nil
}

// page orders rows, keeps those of the query's project and stage, and
// returns the page after the cursor, the number of matching rows and the
// cursor of the next page ("" on the last).
func page(rows []StaleContainer, keys []pageKey, q ListQuery) (out []StaleContainer, total int, next string) {
	idx := make([]int, 0, len(rows))
	for i, r := range rows {
		if (q.Project == "" || r.ProjectName == q.Project) && (q.Stage == "" || r.StageName == q.Stage) {
			idx = append(idx, i)
		}
	}
	sort.Slice(idx, func(a, b int) bool { return keys[idx[a]].before(keys[idx[b]]) })
	total = len(idx)
	start := 0
	if q.After != nil {
		start = sort.Search(len(idx), func(i int) bool { return q.After.before(keys[idx[i]]) })
	}
	rest := idx[start:]
	if len(rest) > q.Limit {
		rest = rest[:q.Limit]
		next = keys[rest[len(rest)-1]].cursor()
	}
	out = make([]StaleContainer, len(rest))
	for j, i := range rest {
		out[j] = rows[i]
	}
	return out, total, next
}
