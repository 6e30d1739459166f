package app

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/mdlayher/vsock"
)

// listen binds what the exporter-toolkit's flags name, the way its
// ListenAndServe does (systemd's sockets with --web.systemd-socket, else
// each --web.listen-address, vsock://:PORT on vsock), but before anything
// else starts: a port taken is one line and exit 1, not a half-started
// exporter.
func (a *App) listen() error {
	flags := a.cfg.Web
	if flags == nil {
		return errors.New("no web flags")
	}
	if flags.WebSystemdSocket != nil && *flags.WebSystemdSocket {
		return a.listenSystemd()
	}
	if flags.WebListenAddresses == nil || len(*flags.WebListenAddresses) == 0 {
		return errors.New("no --web.listen-address (or --web.systemd-socket)")
	}
	for _, addr := range *flags.WebListenAddresses {
		ln, err := listenOn(addr)
		if err != nil {
			return err
		}
		a.listeners = append(a.listeners, ln)
	}
	return nil
}

// listenSystemd takes the sockets systemd passed (LISTEN_FDS), as a .socket
// unit or systemd-socket-activate does.
func (a *App) listenSystemd() error {
	lns, err := activation.Listeners()
	if err != nil {
		return fmt.Errorf("--web.systemd-socket: %w", err)
	}
	for _, ln := range lns {
		if ln != nil {
			a.listeners = append(a.listeners, ln)
		}
	}
	if len(a.listeners) == 0 {
		return errors.New("--web.systemd-socket: systemd passed no listening socket (start it from its .socket unit)")
	}
	a.logger.Info("listening on the sockets systemd passed", "sockets", len(a.listeners))
	return nil
}

func listenOn(addr string) (net.Listener, error) {
	if !strings.HasPrefix(addr, "vsock://") {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		return ln, nil
	}
	port, err := vsockPort(addr)
	if err != nil {
		return nil, err
	}
	ln, err := vsock.Listen(port, nil)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (vsock needs a virtual machine whose kernel has the vsock transport loaded)", addr, err)
	}
	return ln, nil
}

// vsockPort reads vsock://:PORT (a context id before the colon is ignored:
// vsock listens on the machine's own).
func vsockPort(addr string) (uint32, error) {
	u, err := url.Parse(addr)
	if err != nil {
		return 0, fmt.Errorf("listen address %s: %w", addr, err)
	}
	_, raw, err := net.SplitHostPort(u.Host)
	if err != nil {
		return 0, fmt.Errorf("listen address %s: want vsock://:PORT: %w", addr, err)
	}
	port, err := strconv.ParseUint(raw, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("listen address %s: port %q is not a number up to %d", addr, raw, uint32(1<<32-1))
	}
	return uint32(port), nil
}
