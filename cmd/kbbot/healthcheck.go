package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// healthcheck asks the local server's /healthz, for container health checks
// (the image has no curl). It always goes to 127.0.0.1, whatever host
// KBBOT_ADDR names, since it runs beside the server.
func (a *app) healthcheck(ctx context.Context, args []string) error {
	_, port, err := net.SplitHostPort(a.cfg.Addr)
	if err != nil || port == "" || port == "0" {
		return fmt.Errorf("healthcheck: KBBOT_ADDR=%q has no fixed port", a.cfg.Addr)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort("127.0.0.1", port) + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return nil
}
