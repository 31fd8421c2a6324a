// Package worker is the processing worker role. It takes media jobs from
// the queue, probes the source, transcodes videos into an HLS ABR ladder
// with a poster (or resizes images), stores the outputs in object storage
// and marks the item ready — or failed, with the reason, when the input is
// to blame.
//
// A job is acknowledged only after its outputs are stored and the item's
// row says ready or failed. Outputs go to deterministic keys
// (videos/<id>/...), so a job redelivered after a crash overwrites the same
// objects, and the ready transition is conditional on the row still being
// processing, so it happens once however often the job runs.
package worker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // image variants are JPEG
	_ "image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blueprint-media/blueprint/internal/abr"
	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/blueprint-media/blueprint/internal/media"
	"github.com/blueprint-media/blueprint/internal/queue"
)

// Config configures a Worker.
type Config struct {
	Concurrency    int
	AckWait        time.Duration
	MaxDeliver     int
	ScratchDir     string
	Tools          abr.Tools
	Limits         abr.Limits
	SegmentSeconds int
	Preset         string
	Threads        int
	LockWait       time.Duration // how long a job waits for its video's lock; default 1m
}

// Worker is the worker role.
type Worker struct {
	cfg    Config
	q      *queue.Queue
	blobs  blob.Store
	media  *media.Service
	logger *slog.Logger

	locker   lock.Locker // nil: no per-video lock (tests)
	consumer *queue.Consumer
	jobs     *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	busy     prometheus.Gauge
}

// New returns a Worker; reg and locker may be nil.
func New(cfg Config, q *queue.Queue, blobs blob.Store, m *media.Service, locker lock.Locker, logger *slog.Logger, reg prometheus.Registerer) *Worker {
	if cfg.LockWait <= 0 {
		cfg.LockWait = time.Minute
	}
	w := &Worker{
		cfg: cfg, q: q, blobs: blobs, media: m, locker: locker, logger: logger,
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blueprint", Subsystem: "worker", Name: "jobs_total", Help: "Processing jobs by result.",
		}, []string{"result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "blueprint", Subsystem: "worker", Name: "job_duration_seconds", Help: "Wall time of processing jobs.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 14),
		}, []string{"kind"}),
		busy: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "blueprint", Subsystem: "worker", Name: "busy", Help: "Jobs being processed now.",
		}),
	}
	if reg != nil {
		reg.MustRegister(w.jobs, w.seconds, w.busy)
	}
	return w
}

// Start starts consuming jobs. Each worker process works in its own
// scratch subdirectory named after its process ID; at start it removes the
// subdirectories of processes that no longer exist (killed workers).
func (w *Worker) Start(ctx context.Context) error {
	if err := os.MkdirAll(w.cfg.ScratchDir, 0o755); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	w.sweepScratch()
	w.cfg.ScratchDir = filepath.Join(w.cfg.ScratchDir, "pid-"+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(w.cfg.ScratchDir, 0o755); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	// The broker delivers without limit; the worker counts deliveries
	// itself, so a job that kills its worker every time (and so never
	// returns an error) still ends as failed instead of processing forever.
	c, err := w.q.Consume(ctx, queue.ConsumeConfig{
		Name: "process", Kind: media.JobKind, AckWait: w.cfg.AckWait,
		MaxDeliver: -1, Concurrency: w.cfg.Concurrency,
	}, w.handle)
	if err != nil {
		return err
	}
	w.consumer = c
	w.logger.Info("worker started", "concurrency", w.cfg.Concurrency)
	return nil
}

// Stop stops taking jobs and waits for running ones until ctx ends; jobs
// still running then are abandoned and redelivered to another worker.
func (w *Worker) Stop(ctx context.Context) error {
	if w.consumer == nil {
		return nil
	}
	err := w.consumer.Stop(ctx)
	os.Remove(w.cfg.ScratchDir) // empty unless a job was abandoned
	return err
}

func (w *Worker) handle(ctx context.Context, d *queue.Delivery) error {
	var job media.Job
	if err := d.Decode(&job); err != nil || job.VideoID == 0 {
		w.jobs.WithLabelValues("malformed").Inc()
		return fmt.Errorf("worker: malformed job %q: %w", d.Data(), queue.ErrPermanent)
	}
	log := w.logger.With("video", job.VideoID, "delivery", d.NumDelivered)
	v, err := w.media.Get(ctx, job.VideoID)
	if errs.KindOf(err) == errs.NotFound {
		w.jobs.WithLabelValues("malformed").Inc()
		return fmt.Errorf("worker: job for unknown video %d: %w", job.VideoID, queue.ErrPermanent)
	}
	if err != nil {
		return err // the store may be briefly unavailable: retry
	}
	if v.Status != media.StatusProcessing {
		log.Info("job already done", "status", v.Status)
		w.jobs.WithLabelValues("duplicate").Inc()
		return nil
	}
	w.busy.Inc()
	defer w.busy.Dec()

	// Keep the queue lease while we work (and while we wait for the video
	// lock), from a goroutine CPU-bound ffmpeg cannot starve.
	hbCtx, stopHB := context.WithCancel(ctx)
	var hb sync.WaitGroup
	defer func() { stopHB(); hb.Wait() }()
	hb.Go(func() {
		t := time.NewTicker(max(w.cfg.AckWait/3, 100*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
				if err := d.InProgress(); err != nil {
					log.Warn("lease renewal failed", "err", err)
				}
			}
		}
	})

	// One worker per video at a time: a redelivered job waits for the
	// lock of a previous holder that is still running (or whose lease has
	// not yet expired after a crash), and every state change is fenced with
	// the lock's token, so a holder that lost its lock cannot write.
	jobCtx := ctx
	var fence media.Fence
	if w.locker != nil {
		lockCtx, cancel := context.WithTimeout(ctx, w.cfg.LockWait)
		lease, err := w.locker.Lock(lockCtx, "transcode/"+strconv.FormatInt(v.ID, 10))
		cancel()
		if err != nil {
			w.jobs.WithLabelValues("retry").Inc()
			return fmt.Errorf("worker: video %d is locked by another worker: %w", v.ID, err)
		}
		defer lease.Unlock(context.WithoutCancel(ctx))
		var stop context.CancelFunc
		jobCtx, stop = lease.Context(ctx)
		defer stop()
		fence = func(tx *sql.Tx) error {
			return lock.FencedUpdate(ctx, tx, "video/"+strconv.FormatInt(v.ID, 10), lease.Token)
		}
		// The holder before us may have finished while we waited.
		if v, err = w.media.Get(ctx, job.VideoID); err != nil {
			return err
		}
		if v.Status != media.StatusProcessing {
			w.jobs.WithLabelValues("duplicate").Inc()
			return nil
		}
	}
	if int(d.NumDelivered) > w.cfg.MaxDeliver {
		if _, err := w.media.MarkFailed(ctx, v.ID, fmt.Sprintf("processing failed after %d attempts", d.NumDelivered-1), fence); err != nil {
			return err
		}
		w.jobs.WithLabelValues("gave_up").Inc()
		log.Error("giving up: earlier attempts died without finishing")
		return nil
	}
	if err := w.media.StartAttempt(ctx, v.ID); err != nil {
		return err
	}
	start := time.Now()
	res, err := w.process(jobCtx, v, log)

	switch {
	case err == nil:
		made, err := w.media.MarkReady(ctx, v.ID, res, fence)
		if err != nil {
			return err
		}
		w.seconds.WithLabelValues(res.Kind).Observe(time.Since(start).Seconds())
		w.jobs.WithLabelValues("ready").Inc()
		log.Info("media ready", "kind", res.Kind, "renditions", len(res.Renditions), "took", time.Since(start).Round(time.Millisecond), "transition", made)
		return nil
	case errors.Is(err, abr.ErrInvalid):
		if _, err2 := w.media.MarkFailed(ctx, v.ID, reason(err), fence); err2 != nil {
			return err2
		}
		w.jobs.WithLabelValues("invalid").Inc()
		log.Info("media rejected", "reason", reason(err))
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case jobCtx.Err() != nil:
		w.jobs.WithLabelValues("retry").Inc()
		return fmt.Errorf("worker: video lock lost during processing: %w", jobCtx.Err())
	case int(d.NumDelivered) >= w.cfg.MaxDeliver:
		if _, err2 := w.media.MarkFailed(ctx, v.ID, fmt.Sprintf("processing failed after %d attempts", d.NumDelivered), fence); err2 != nil {
			return err2
		}
		w.jobs.WithLabelValues("gave_up").Inc()
		log.Error("giving up", "err", err)
		return nil
	default:
		w.jobs.WithLabelValues("retry").Inc()
		return err
	}
}

// sweepScratch removes the scratch directories of worker processes that no
// longer exist.
func (w *Worker) sweepScratch() {
	entries, err := os.ReadDir(w.cfg.ScratchDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "pid-"))
		if err != nil || !strings.HasPrefix(e.Name(), "pid-") || processAlive(pid) {
			continue
		}
		os.RemoveAll(filepath.Join(w.cfg.ScratchDir, e.Name()))
	}
}

// processAlive reports whether a process with this ID exists on this
// machine (signal 0 checks without signalling).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// reason turns an abr error into the text users see.
func reason(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "abr: ")
	if i := strings.Index(s, ": abr: invalid media"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 500 {
		s = s[:500]
	}
	return s
}

func (w *Worker) process(ctx context.Context, v media.Video, log *slog.Logger) (media.Result, error) {
	dir, err := os.MkdirTemp(w.cfg.ScratchDir, "job-"+strconv.FormatInt(v.ID, 10)+"-")
	if err != nil {
		return media.Result{}, fmt.Errorf("worker: %w", err)
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "source")
	if err := w.fetch(ctx, v.SourceKey, src); err != nil {
		return media.Result{}, err
	}
	info, err := abr.Probe(ctx, w.cfg.Tools, w.cfg.Limits, src)
	if err != nil {
		return media.Result{}, err
	}
	prefix := "videos/" + strconv.FormatInt(v.ID, 10) + "/"
	out := filepath.Join(dir, "out")
	if info.Kind == abr.KindImage {
		files, err := abr.ImageVariants(ctx, w.cfg.Tools, w.cfg.Limits, src, info, out)
		if err != nil {
			return media.Result{}, err
		}
		res := media.Result{Kind: abr.KindImage, Width: info.Width, Height: info.Height}
		for _, f := range files {
			key := prefix + "img/" + f
			if err := w.store(ctx, filepath.Join(out, f), key); err != nil {
				return media.Result{}, err
			}
			wd, ht := dimensions(filepath.Join(out, f))
			res.Renditions = append(res.Renditions, media.Rendition{Name: strings.TrimSuffix(f, filepath.Ext(f)), Width: wd, Height: ht, Key: key})
		}
		if len(res.Renditions) > 0 {
			res.ThumbKey = res.Renditions[0].Key
		}
		return res, nil
	}

	rungs := abr.Ladder(info)
	var lastSave time.Time
	tr, err := abr.TranscodeHLS(ctx, abr.TranscodeOptions{
		Tools: w.cfg.Tools, Limits: w.cfg.Limits, Src: src, OutDir: filepath.Join(out, "hls"), Info: info, Rungs: rungs,
		SegmentSeconds: w.cfg.SegmentSeconds, Preset: w.cfg.Preset, Threads: w.cfg.Threads,
		Progress: func(f float64) {
			if time.Since(lastSave) > time.Second {
				lastSave = time.Now()
				if err := w.media.SetProgress(ctx, v.ID, f*0.95); err != nil {
					log.Warn("progress not saved", "err", err)
				}
			}
		},
	})
	if err != nil {
		return media.Result{}, err
	}
	poster := filepath.Join(out, "poster.jpg")
	if err := abr.Poster(ctx, w.cfg.Tools, src, info, poster); err != nil {
		return media.Result{}, err
	}
	// Variant playlists and segments first, the master playlist last: a
	// master that exists points only at objects that exist.
	for _, f := range tr.Files {
		if f == tr.Master {
			continue
		}
		if err := w.store(ctx, filepath.Join(out, "hls", f), prefix+"hls/"+f); err != nil {
			return media.Result{}, err
		}
	}
	if err := w.store(ctx, filepath.Join(out, "hls", tr.Master), prefix+"hls/"+tr.Master); err != nil {
		return media.Result{}, err
	}
	if err := w.store(ctx, poster, prefix+"poster.jpg"); err != nil {
		return media.Result{}, err
	}
	res := media.Result{
		Kind: abr.KindVideo, Duration: info.Duration, Width: info.Width, Height: info.Height,
		MasterKey: prefix + "hls/" + tr.Master, ThumbKey: prefix + "poster.jpg",
	}
	for _, vr := range tr.Variants {
		res.Renditions = append(res.Renditions, media.Rendition{
			Name: vr.Rung.Name, Width: vr.Rung.Width, Height: vr.Rung.Height, Bandwidth: vr.Bandwidth, Key: prefix + "hls/" + vr.Playlist,
		})
	}
	log.Debug("transcoded", "rungs", len(rungs), "files", len(tr.Files))
	return res, nil
}

// dimensions reads the size of an image we wrote from its header.
func dimensions(path string) (int, int) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	c, _, err := image.DecodeConfig(f)
	if err != nil {
		return 0, 0
	}
	return c.Width, c.Height
}

func (w *Worker) fetch(ctx context.Context, key, dst string) error {
	o, err := w.blobs.Open(ctx, key)
	if err != nil {
		return fmt.Errorf("worker: source %s: %w", key, err)
	}
	defer o.Close()
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	if _, err := io.Copy(f, o); err != nil {
		f.Close()
		return fmt.Errorf("worker: copy source: %w", err)
	}
	return f.Close()
}

func (w *Worker) store(ctx context.Context, path, key string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer f.Close()
	if _, err := w.blobs.Put(ctx, key, f); err != nil {
		return fmt.Errorf("worker: store %s: %w", key, err)
	}
	return nil
}
