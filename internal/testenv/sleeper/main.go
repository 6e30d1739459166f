// Command sleeper is the process inside the test image: it runs until it is
// told to stop, or exits at once with "exit". "exit N DIR" first writes N
// files of 4 KiB into DIR, so that a stopped container holds disk.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "exit" {
		if len(os.Args) == 4 {
			if err := fill(os.Args[2], os.Args[3]); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		return
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}

func fill(count, dir string) error {
	n, err := strconv.Atoi(count)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	page := make([]byte, 4096)
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), page, 0o644); err != nil {
			return err
		}
	}
	return nil
}
