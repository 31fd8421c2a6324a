package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/testenv"
)

// TestCoordinationOnEtcd: with lock.etcd set, the ID generator's worker
// lease, the maintenance leader lock and the per-video transcode lock live
// in a real etcd, and the walking skeleton works the same.
func TestCoordinationOnEtcd(t *testing.T) {
	endpoint := testenv.StartEtcd(t)
	p := startPlatform(t, func(c *config.Config) { c.Lock.Etcd = []string{endpoint} })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := p.user(t, "etta")
	img := filepath.Join(clipDir(t), "still.png")
	if out, err := runFFmpeg("-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360", "-frames:v", "1", img); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	res, err := c.Upload(ctx, img, client.UploadOptions{Title: "on etcd"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitReady(ctx, res.VideoID, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, prefix := range []string{"/blueprint/idgen/workers/", "/blueprint/lock/election/singleton/maintenance/"} {
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count == 0 {
			t.Errorf("no keys under %s in etcd", prefix)
		}
	}
	fences, err := openDB(t, p).countFences("video/" + res.VideoID)
	if err != nil || fences != 1 {
		t.Fatalf("fence rows for the video: %d, %v (the transition must be fenced with the etcd token)", fences, err)
	}
}
