package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/blueprint-media/blueprint/internal/errs"
	"github.com/blueprint-media/blueprint/internal/queue"
	"github.com/blueprint-media/blueprint/internal/realtime"
)

// serveBlueprint runs the Blueprint side as its own process: the embedded
// NATS broker, one Registry, one Router and one Hub — the real realtime
// components — behind an HTTP server with these endpoints:
//
//	GET  /sse?user=N[&channel=C] the hub's SSE stream for user N, subscribed to channel C
//	POST /broadcast?users=N      body = event data; Router.Send to users 1..N
//	POST /publish?channel=C      body = event data; one Router.Broadcast to channel C
//	GET  /ready?users=N[&channel=C] 204 once the registry routes every user 1..N
//	                             (or N streams are subscribed to C)
//
// It prints "listening <addr>" on stdout when it accepts connections and
// runs until SIGTERM.
//
// With FANOUT_CPUPROFILE=path it writes a CPU profile to path.<mode>.
func serveBlueprint(users int, mode string) error {
	raiseFDLimit()
	if path := os.Getenv("FANOUT_CPUPROFILE"); path != "" {
		f, err := os.Create(path + "." + mode)
		if err != nil {
			return err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	dir, err := os.MkdirTemp("", "fanout-broker-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := queue.NewBroker(queue.BrokerConfig{StoreDir: dir, Addr: "127.0.0.1:0"}, logger)
	if err := b.Start(ctx); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	defer b.Stop(context.Background())
	// One connection for the notifying side (registry + router) and one for
	// the frontend's hub, as in two processes.
	ncSend, err := nats.Connect(b.ClientURL())
	if err != nil {
		return err
	}
	defer ncSend.Close()
	ncHub, err := nats.Connect(b.ClientURL())
	if err != nil {
		return err
	}
	defer ncHub.Close()

	m := realtime.NewMetrics(nil)
	reg := realtime.NewRegistry(ncSend, m, logger)
	if err := reg.Start(ctx); err != nil {
		return err
	}
	defer reg.Stop()
	router := realtime.NewRouter(ncSend, reg, m)
	hub := realtime.NewHub(realtime.HubConfig{Name: "frontend-1", MaxConns: users + 1000}, ncHub, m, logger)
	if err := hub.Start(ctx); err != nil {
		return err
	}

	var subscribed atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		user, err := strconv.ParseInt(r.URL.Query().Get("user"), 10, 64)
		if err != nil || user <= 0 {
			http.Error(w, "bad user", http.StatusBadRequest)
			return
		}
		var backlog realtime.Backlog
		if ch := r.URL.Query().Get("channel"); ch != "" {
			// As the notification stream does: the backlog subscribes
			// the connection to its channels.
			backlog = func(ctx context.Context, _ int64, _ string) ([]realtime.Message, error) {
				err := realtime.SessionFrom(ctx).SetChannels(ctx, func(context.Context, int64) ([]string, error) { return []string{ch}, nil })
				if err == nil {
					subscribed.Add(1)
				}
				return nil, err
			}
		}
		if err := hub.Serve(w, r, user, backlog); err != nil {
			http.Error(w, errs.Message(err), errs.HTTPStatus(err))
		}
	})
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(io.LimitReader(r.Body, realtime.MaxDataBytes))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		msg := realtime.Message{Event: "bench", Data: json.RawMessage(data)}
		if err := router.Broadcast(r.Context(), r.URL.Query().Get("channel"), msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /broadcast", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("users"))
		data, err := io.ReadAll(io.LimitReader(r.Body, realtime.MaxDataBytes))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		msg := realtime.Message{Event: "bench", Data: json.RawMessage(data)}
		routed := 0
		for u := 1; u <= n; u++ {
			k, err := router.Send(r.Context(), int64(u), msg)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			routed += k
		}
		fmt.Fprintf(w, "%d", routed)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("users"))
		if r.URL.Query().Get("channel") != "" {
			if got := subscribed.Load(); got < int64(n) {
				http.Error(w, fmt.Sprintf("%d of %d streams subscribed", got, n), http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		missing := 0
		for u := 1; u <= n; u++ {
			if len(reg.Lookup(int64(u))) == 0 {
				missing++
			}
		}
		if missing > 0 {
			http.Error(w, fmt.Sprintf("%d users not routable yet", missing), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(hub.Stats())
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux}
	go func() {
		<-ctx.Done()
		hub.Stop(context.Background())
		srv.Close()
	}()
	fmt.Printf("listening %s\n", ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}
