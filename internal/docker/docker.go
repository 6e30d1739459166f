// Package docker is stale-exporter's one adapter of the Docker Engine API,
// in the domain's terms: the labelled list, one container's state, the
// containers carrying an instance's label, a removal, the engine's name.
// Every call is bounded by the engine's timeout; errors never hold the
// address's credentials. The rest of the exporter never sees the SDK.
package docker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/docker-watcher/stale-exporter/internal/stale"
)

// DefaultAddr is the engine's address when none is given: the local socket.
const DefaultAddr = client.DefaultDockerHost

// Remove's refusals, in the domain's terms.
var (
	// ErrNotFound: the engine knows no such container.
	ErrNotFound = errors.New("no such container")
	// ErrConflict: the engine refused, the container runs (a removal is
	// never forced).
	ErrConflict = errors.New("container is running")
	// ErrNoName: the engine answered /info without a name, so the
	// exporter cannot name it; waiting does not help.
	ErrNoName = errors.New("the Docker engine reports no name: set --docker.host-name")
)

// Engine is one Docker engine.
type Engine struct {
	client  *client.Client
	addr    string
	timeout time.Duration
}

// Connect opens a client of the engine at addr and negotiates the API
// version; every later call is bounded by timeout.
func Connect(ctx context.Context, addr string, timeout time.Duration) (*Engine, error) {
	e, err := New(addr, timeout)
	if err != nil {
		return nil, err
	}
	if err := e.Ping(ctx); err != nil {
		_ = e.Close()
		return nil, err
	}
	return e, nil
}

// New returns the adapter of the engine at addr without reaching it, so
// that the exporter can start while Docker is down; only an address the
// client cannot use is an error.
func New(addr string, timeout time.Duration) (*Engine, error) {
	if u, err := url.Parse(addr); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			// The Engine API never reads a password from the address; one
			// there is a secret in every process listing, doing nothing.
			return nil, fmt.Errorf("docker host %s holds a password, which Docker does not use: authenticate with TLS client certificates", RedactAddr(addr))
		}
	}
	c, err := client.New(client.WithHost(addr))
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %s", RedactAddr(addr), redactIn(err, addr))
	}
	return &Engine{client: c, addr: addr, timeout: timeout}, nil
}

// Ping reaches the engine and settles the API version both speak.
func (e *Engine) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if _, err := e.client.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("connect to Docker at %s: %s", RedactAddr(e.addr), redactIn(err, e.addr))
	}
	return nil
}

// Close releases the client.
func (e *Engine) Close() error { return e.client.Close() }

// Timeout is the bound of every call.
func (e *Engine) Timeout() time.Duration { return e.timeout }

// Name is the engine's own name, from /info.
func (e *Engine) Name(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	info, err := e.client.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", fmt.Errorf("read the name of the Docker engine at %s (or set --docker.host-name): %s", RedactAddr(e.addr), redactIn(err, e.addr))
	}
	if info.Info.Name == "" {
		return "", ErrNoName
	}
	return info.Info.Name, nil
}

// List lists every container, running or not, that carries the instance
// label: the one call of a steady scan. Listed containers have no run times
// (the list does not say them).
func (e *Engine) List(ctx context.Context) ([]stale.Container, error) {
	items, err := e.list(ctx, stale.LabelInstanceID)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]stale.Container, len(items))
	for i, c := range items {
		out[i] = stale.Container{ID: c.ID, Found: true, State: string(c.State), Image: c.Image, Labels: c.Labels,
			Created: time.Unix(c.Created, 0)}
	}
	return out, nil
}

// Labelled lists the full ids of every container, running or not, that
// carries the label naming instanceID.
func (e *Engine) Labelled(ctx context.Context, instanceID string) ([]string, error) {
	items, err := e.list(ctx, stale.LabelInstanceID+"="+instanceID)
	if err != nil {
		return nil, fmt.Errorf("list containers of instance %s: %w", instanceID, err)
	}
	ids := make([]string, 0, len(items))
	for _, c := range items {
		// The engine's filter matches the label's value exactly; checked
		// again, as a filter is only as good as the engine applying it.
		if c.Labels[stale.LabelInstanceID] == instanceID {
			ids = append(ids, c.ID)
		}
	}
	return ids, nil
}

func (e *Engine) list(ctx context.Context, labelFilter string) ([]container.Summary, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	res, err := e.client.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", labelFilter)})
	return res.Items, err
}

// Inspect reads a container's live state by whatever names it (a full id, a
// prefix or a name). A container the engine does not know is returned as
// not Found, without error.
func (e *Engine) Inspect(ctx context.Context, ref string) (stale.Container, error) {
	if ref == "" {
		return stale.Container{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	res, err := e.client.ContainerInspect(ctx, ref, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return stale.Container{}, nil
	}
	if err != nil {
		return stale.Container{}, fmt.Errorf("inspect container %s: %w", ref, err)
	}
	return fromInspect(res.Container)
}

// Remove removes a container by its full id, never forced: the engine itself
// refuses to remove one that runs (ErrConflict). With volumes, its anonymous
// volumes go with it (docker rm -v); named volumes never do.
func (e *Engine) Remove(ctx context.Context, id string, volumes bool) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	_, err := e.client.ContainerRemove(ctx, id, client.ContainerRemoveOptions{RemoveVolumes: volumes})
	switch {
	case err == nil:
		return nil
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("remove container %s: %w", id, ErrNotFound)
	case cerrdefs.IsConflict(err):
		return fmt.Errorf("remove container %s: %w: %v", id, ErrConflict, err)
	}
	return fmt.Errorf("remove container %s: %w", id, err)
}

// VolumesGone returns which of the named volumes the engine no longer has:
// after a removal, the volumes it removed.
func (e *Engine) VolumesGone(ctx context.Context, names []string) ([]string, error) {
	var gone []string
	for _, name := range names {
		ictx, cancel := context.WithTimeout(ctx, e.timeout)
		_, err := e.client.VolumeInspect(ictx, name, client.VolumeInspectOptions{})
		cancel()
		switch {
		case cerrdefs.IsNotFound(err):
			gone = append(gone, name)
		case err != nil:
			return gone, fmt.Errorf("inspect volume %s: %w", name, err)
		}
	}
	return gone, nil
}

// Size is the size of a container's writable layer, which the engine
// computes on demand (the cost of measuring it).
func (e *Engine) Size(ctx context.Context, id string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	res, err := e.client.ContainerInspect(ctx, id, client.ContainerInspectOptions{Size: true})
	if err != nil {
		return 0, fmt.Errorf("measure container %s: %w", id, err)
	}
	if res.Container.SizeRw == nil {
		return 0, nil
	}
	return *res.Container.SizeRw, nil
}

// VolumeSizes are the sizes of the engine's volumes, by name (the engine's
// disk usage; it measures them all, so it is asked once for many).
func (e *Engine) VolumeSizes(ctx context.Context) (map[string]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	res, err := e.client.DiskUsage(ctx, client.DiskUsageOptions{Volumes: true, Verbose: true})
	if err != nil {
		return nil, fmt.Errorf("measure volumes: %w", err)
	}
	out := make(map[string]int64, len(res.Volumes.Items))
	for _, v := range res.Volumes.Items {
		if v.UsageData != nil && v.UsageData.Size >= 0 {
			out[v.Name] = v.UsageData.Size
		}
	}
	return out, nil
}

// parseTime reads one of Docker's RFC 3339 times; empty and the zero year
// Docker writes for "never" are the zero time.
func parseTime(field, raw string) (time.Time, error) {
	if raw == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse %s %q: %w", field, raw, err)
	}
	if t.Year() <= 1 {
		return time.Time{}, nil
	}
	return t, nil
}

func fromInspect(res container.InspectResponse) (stale.Container, error) {
	c := stale.Container{ID: res.ID, Found: true, Image: res.Image}
	if res.Config != nil {
		c.Labels = res.Config.Labels
		c.Image = res.Config.Image
	}
	for _, m := range res.Mounts {
		if m.Type == mount.TypeVolume {
			// The engine does not say whether a volume was named: one it
			// made has a 64-hex name. An estimate, for reclaimable bytes
			// only; what a removal removed is asked afterwards (VolumesGone).
			c.Volumes = append(c.Volumes, stale.Volume{Name: m.Name, Anonymous: stale.IsFullContainerID(m.Name)})
		}
	}
	var err error
	if c.Created, err = parseTime("Created", res.Created); err != nil {
		return c, err
	}
	if res.State == nil {
		return c, nil
	}
	c.State = string(res.State.Status)
	if c.StartedAt, err = parseTime("StartedAt", res.State.StartedAt); err != nil {
		return c, err
	}
	c.FinishedAt, err = parseTime("FinishedAt", res.State.FinishedAt)
	return c, err
}

// ImageTag is the tag of an image reference (registry:5000/shop/web:pr-17 is
// pr-17), latest when it has none; a digest is ignored.
func ImageTag(ref string) string {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i:], "/") {
		return ref[i+1:]
	}
	return "latest"
}

// RedactAddr hides the password of a Docker engine address.
func RedactAddr(addr string) string {
	u, err := url.Parse(addr)
	if err != nil {
		return "(unparsable Docker address)"
	}
	return u.Redacted()
}

// redactIn removes an address's credentials from an error message.
func redactIn(err error, addr string) string {
	msg := err.Error()
	u, perr := url.Parse(addr)
	if perr != nil || u.User == nil {
		return msg
	}
	msg = strings.ReplaceAll(msg, addr, u.Redacted())
	if pw, ok := u.User.Password(); ok && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}
