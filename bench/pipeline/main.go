// Command pipeline measures Blueprint's upload pipeline end to end on this
// machine: it starts every role in-process on free ports (embedded engines,
// default settings), uploads a 10 s 1080p30 clip through the gateway with
// the client SDK, and times the upload and the span from the last byte to
// the video being ready. It repeats for several rounds and prints medians.
//
//	go run ./bench/pipeline            # 3 rounds
//	go run ./bench/pipeline -rounds 5 -seconds 10 -height 1080
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/blueprint-media/blueprint/client"
	"github.com/blueprint-media/blueprint/internal/app"
	"github.com/blueprint-media/blueprint/internal/config"
	"github.com/blueprint-media/blueprint/internal/telemetry"
)

func main() {
	rounds := flag.Int("rounds", 3, "uploads to time")
	seconds := flag.Int("seconds", 10, "clip length")
	height := flag.Int("height", 1080, "clip height (16:9)")
	preset := flag.String("preset", "veryfast", "x264 preset of the worker")
	flag.Parse()

	dir, err := os.MkdirTemp("", "bench-pipeline-")
	check(err)
	defer os.RemoveAll(dir)
	clip := filepath.Join(dir, "clip.mp4")
	w := *height * 16 / 9 / 2 * 2
	out, err := exec.Command("ffmpeg", "-v", "error", "-y",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=30:duration=%d", w, *height, *seconds),
		"-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=440:duration=%d", *seconds),
		"-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-shortest", clip).CombinedOutput()
	if err != nil {
		log.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	fi, _ := os.Stat(clip)

	cfg := config.Default()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.HTTPAddr, cfg.AdminAddr, cfg.Edge.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Worker.Preset = *preset
	cfg.Upload.MaxBytes = 1 << 30
	a := app.New(cfg, telemetry.NewLogger(io.Discard, "info", "json"))
	ctx := context.Background()
	check(a.Start(ctx))
	defer a.Stop(ctx)

	c := client.New(a.URLs().Gateway)
	_, err = c.SignUp(ctx, "bench", "bench@example.com", "bench-password")
	check(err)
	check(c.Login(ctx, "bench", "bench-password"))

	fmt.Printf("pipeline benchmark: %s, %.1f MB %dx%d %ds clip, preset %s, GOMAXPROCS %d, %d rounds\n",
		time.Now().Format("2006-01-02"), float64(fi.Size())/1e6, w, *height, *seconds, *preset, runtime.GOMAXPROCS(0), *rounds)
	fmt.Printf("%-6s %12s %12s %16s\n", "round", "upload s", "MB/s", "upload→ready s")
	var ups, readies []float64
	for i := range *rounds {
		t0 := time.Now()
		res, err := c.Upload(ctx, clip, client.UploadOptions{Title: fmt.Sprint("bench ", i)})
		check(err)
		t1 := time.Now()
		_, err = c.WaitReady(ctx, res.VideoID, 50*time.Millisecond)
		check(err)
		t2 := time.Now()
		up, ready := t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds()
		ups, readies = append(ups, up), append(readies, ready)
		fmt.Printf("%-6d %12.2f %12.1f %16.2f\n", i+1, up, float64(fi.Size())/1e6/up, ready)
	}
	fmt.Printf("%-6s %12.2f %12.1f %16.2f\n", "median", median(ups), float64(fi.Size())/1e6/median(ups), median(readies))
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
