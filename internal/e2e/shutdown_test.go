package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// TestGracefulShutdownFinishesInFlightJob: stopping the process while a
// transcode runs lets the job finish and commit before the process exits.
func TestGracefulShutdownFinishesInFlightJob(t *testing.T) {
	p := startPlatform(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := p.user(t, "grace")
	clip := filepath.Join(clipDir(t), "grace.mp4")
	makeClip(t, clip, 1280, 720, 8, true)
	res, err := c.Upload(ctx, clip, client.UploadOptions{Title: "graceful"})
	if err != nil {
		t.Fatal(err)
	}
	waitTranscoding(ctx, t, c, res.VideoID)
	stopCtx, stopCancel := context.WithTimeout(ctx, 2*time.Minute)
	defer stopCancel()
	if err := p.app.Stop(stopCtx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	db, err := sqlstore.Open(ctx, filepath.Join(p.dir, "blueprint.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var status string
	var ready int
	db.R.QueryRow(`SELECT status FROM videos WHERE id = ?`, res.VideoID).Scan(&status)
	db.R.QueryRow(`SELECT COUNT(*) FROM events WHERE subject_id = ? AND kind = 'video.ready'`, res.VideoID).Scan(&ready)
	if status != "ready" || ready != 1 {
		t.Fatalf("after a graceful stop mid-transcode: status %q, ready events %d", status, ready)
	}
}
