package e2e

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/config"
)

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestSeveralProcesses runs the platform as three processes sharing a data
// directory: gateway + frontends + origin + broker (in the test), the CDN
// edge, and a worker, and drives the walking skeleton through them.
func TestSeveralProcesses(t *testing.T) {
	edgeAddr := freeAddr(t)
	p := startPlatform(t, func(c *config.Config) {
		c.Roles = []string{"gateway", "frontend", "origin", "broker"}
		c.Broker.Addr = "127.0.0.1:0"
		c.Edge.PublicURL = "http://" + edgeAddr
	})
	startProcess(t, p, "edge", "--roles", "edge", "--edge-addr", edgeAddr, "--edge-origin", p.urls.Origin,
		"--data-dir", filepath.Join(p.dir, "edge-process"), "--admin-addr", "127.0.0.1:0")
	startWorker(t, p, "worker")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Wait for the edge process to listen.
	for {
		if resp, err := http.Get("http://" + edgeAddr + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if ctx.Err() != nil {
			t.Fatal("edge process never came up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c := p.user(t, "paula")
	clip := filepath.Join(clipDir(t), "mp.mp4")
	makeClip(t, clip, 854, 480, 3, true)
	res, err := c.Upload(ctx, clip, client.UploadOptions{Title: "three processes"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.WaitReady(ctx, res.VideoID, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v.HLSURL, "http://"+edgeAddr+"/") {
		t.Fatalf("hls_url %s is not on the edge process %s", v.HLSURL, edgeAddr)
	}
	resp, body := get(t, v.HLSURL)
	vars := variants(t, v.HLSURL, body)
	if resp.StatusCode != 200 || len(vars) < 3 {
		t.Fatalf("master through the edge process: %d, %d variants", resp.StatusCode, len(vars))
	}
	_, vbody := get(t, vars[len(vars)-1])
	seg := firstSegment(t, vars[len(vars)-1], vbody)
	get(t, seg)
	r2, _ := get(t, seg)
	if !strings.Contains(r2.Header.Get("Cache-Status"), "; hit") {
		t.Fatalf("second segment fetch from the edge process: Cache-Status %q", r2.Header.Get("Cache-Status"))
	}
}
