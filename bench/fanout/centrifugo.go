package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

const (
	cfSecret = "fanout-bench-hmac-secret-not-a-real-one"
	cfAPIKey = "fanout-bench-api-key"
	cfChan   = "news"
)

// centrifugoConfig returns a v6 configuration: HTTP on 127.0.0.1:port,
// unidirectional SSE on, HS256 connection tokens, the HTTP API behind a key.
func centrifugoConfig(port int) []byte {
	cfg := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": strconv.Itoa(port)},
		"log":         map[string]any{"level": "error"},
		"client": map[string]any{
			"token":           map[string]any{"hmac_secret_key": cfSecret},
			"allowed_origins": []string{"*"},
		},
		"http_api": map[string]any{"key": cfAPIKey},
		"uni_sse":  map[string]any{"enabled": true},
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return b
}

// connToken returns an HS256 connection JWT for user with a server-side
// subscription to the broadcast channel.
func connToken(user int) string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"sub": strconv.Itoa(user), "channels": []string{cfChan}, "exp": time.Now().Add(2 * time.Hour).Unix()})
	p := enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(cfSecret))
	mac.Write([]byte(h + "." + p))
	return h + "." + p + "." + enc.EncodeToString(mac.Sum(nil))
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// centrifugoTarget writes a config to dir and returns the target and the
// command line to start it with.
func centrifugoTarget(bin, dir string) (*target, []string, error) {
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	cfgPath := filepath.Join(dir, "centrifugo.json")
	if err := os.WriteFile(cfgPath, centrifugoConfig(port), 0o600); err != nil {
		return nil, nil, err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	api := &http.Client{Transport: newTransport(), Timeout: 30 * time.Second}
	t := &target{
		name: "Centrifugo",
		url: func(i int) string {
			c, _ := json.Marshal(map[string]string{"token": connToken(i + 1)})
			return base + "/connection/uni_sse?cf_connect=" + url.QueryEscape(string(c))
		},
		publish: func(ctx context.Context, data []byte) error {
			body, _ := json.Marshal(map[string]any{"channel": cfChan, "data": json.RawMessage(data)})
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/publish", bytes.NewReader(body))
			req.Header.Set("X-API-Key", cfAPIKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := api.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || bytes.Contains(b, []byte(`"error"`)) {
				return fmt.Errorf("centrifugo publish: %d %s", resp.StatusCode, b)
			}
			return nil
		},
		ready: func(ctx context.Context) error { return nil }, // subscribed at connect
	}
	return t, []string{bin, "--config", cfgPath}, nil
}

// waitPort waits until addr accepts TCP connections.
func waitPort(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not accepting connections after %s", addr, d)
}
