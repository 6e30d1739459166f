package docker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/docker-watcher/stale-exporter/internal/docker"
	"github.com/docker-watcher/stale-exporter/internal/docker/dockertest"
	"github.com/docker-watcher/stale-exporter/internal/stale"
	"github.com/docker-watcher/stale-exporter/internal/testenv"
)

// engine is what the scan and the cleanup ask of an engine.
type engine interface {
	List(ctx context.Context) ([]stale.Container, error)
	Inspect(ctx context.Context, ref string) (stale.Container, error)
	Labelled(ctx context.Context, instanceID string) ([]string, error)
	Remove(ctx context.Context, id string, volumes bool) error
}

// world makes containers on the engine under test.
type world interface {
	add(t *testing.T, name string, labels map[string]string, running bool) string
}

type realWorld struct{}

func (realWorld) add(t *testing.T, name string, labels map[string]string, running bool) string {
	return testenv.NewContainer(t, testenv.Docker(t), testenv.ContainerSpec{Name: name, Labels: labels, Start: running})
}

type fakeWorld struct{ e *dockertest.Engine }

func (w fakeWorld) add(_ *testing.T, name string, labels map[string]string, running bool) string {
	id := fmt.Sprintf("%064x", time.Now().UnixNano())
	state := "created"
	if running {
		state = "running"
	}
	w.e.Add(dockertest.Container{ID: id, Name: name, State: state, Labels: labels, Created: time.Now()})
	return id
}

// The adapter's contract, on a real engine and on the fake alike: the fake
// is only worth its unit tests if it answers as the engine does.
func TestContract(t *testing.T) {
	fake := &dockertest.Engine{}
	for _, c := range []struct {
		name   string
		engine func(t *testing.T) engine
		world  world
	}{
		{"fake", func(*testing.T) engine { return fake }, fakeWorld{fake}},
		{"real", func(t *testing.T) engine { return dockertest.Local(t) }, realWorld{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := c.engine(t)
			ctx := context.Background()
			instance := "contract-" + c.name + fmt.Sprint(time.Now().UnixNano())
			name := "contract-" + c.name + fmt.Sprint(time.Now().UnixNano()%1e6)
			stopped := c.world.add(t, name, map[string]string{stale.LabelInstanceID: instance}, false)
			running := c.world.add(t, "", map[string]string{stale.LabelInstanceID: instance + "-run"}, true)
			c.world.add(t, "", nil, false) // carries no instance label

			listed, err := e.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, l := range listed {
				if l.Labels[stale.LabelInstanceID] == "" {
					t.Errorf("listed a container without the instance label: %+v", l)
				}
				if l.ID == stopped {
					found = l.Found && l.State == "created" && !l.Created.IsZero() && l.FinishedAt.IsZero()
				}
			}
			if !found {
				t.Fatalf("the labelled stopped container is not listed as created: %+v", listed)
			}
			for _, ref := range []string{stopped, stopped[:12], name} {
				got, err := e.Inspect(ctx, ref)
				if err != nil || !got.Found || got.ID != stopped || got.State != "created" || got.Labels[stale.LabelInstanceID] != instance {
					t.Errorf("inspect %q: %+v %v, want the container by its full id", ref, got, err)
				}
			}
			if got, err := e.Inspect(ctx, strings.Repeat("0", 63)+"1"); err != nil || got.Found {
				t.Errorf("inspect an unknown id: %+v %v, want not found and no error", got, err)
			}
			if ids, err := e.Labelled(ctx, instance); err != nil || len(ids) != 1 || ids[0] != stopped {
				t.Errorf("labelled %s: %v %v", instance, ids, err)
			}
			if err := e.Remove(ctx, running, true); !errors.Is(err, docker.ErrConflict) {
				t.Errorf("remove a running container: %v, want ErrConflict", err)
			}
			if err := e.Remove(ctx, stopped, true); err != nil {
				t.Fatalf("remove: %v", err)
			}
			if err := e.Remove(ctx, stopped, true); !errors.Is(err, docker.ErrNotFound) {
				t.Errorf("remove again: %v, want ErrNotFound", err)
			}
			if got, err := e.Inspect(ctx, stopped); err != nil || got.Found {
				t.Errorf("inspect a removed container: %+v %v", got, err)
			}
		})
	}
}

func TestImageTag(t *testing.T) {
	for ref, want := range map[string]string{
		"registry:5000/shop/web:pr-17": "pr-17", "registry:5000/shop/web": "latest", "shop/web@sha256:0123": "latest",
		"shop/web:v2@sha256:0123": "v2", "web": "latest", "": "latest",
	} {
		if got := docker.ImageTag(ref); got != want {
			t.Errorf("ImageTag(%q) = %q, want %q", ref, got, want)
		}
	}
}

func TestRedactAddr(t *testing.T) {
	for addr, want := range map[string]string{
		"tcp://user:s3cret@10.0.0.1:2376": "tcp://user:xxxxx@10.0.0.1:2376",
		"unix:///var/run/docker.sock":     "unix:///var/run/docker.sock",
		"%zz":                             "(unparsable Docker address)",
	} {
		if got := docker.RedactAddr(addr); got != want {
			t.Errorf("RedactAddr(%q) = %q, want %q", addr, got, want)
		}
	}
	_, err := docker.Connect(context.Background(), "tcp://user:s3cret@127.0.0.1:1", time.Second)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("connect error %v: it must fail and never hold the password", err)
	}
}
