package abr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// stderrKeep is how many bytes of stderr are kept from the head and from the
// tail of a run's output; the middle of a long error storm is dropped.
const stderrKeep = 16 << 10

// headTail keeps the first and the last stderrKeep bytes written to it.
type headTail struct {
	head, tail []byte
	dropped    bool
}

func (b *headTail) Write(p []byte) (int, error) {
	n := len(p)
	if room := stderrKeep - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	if len(p) > 0 {
		b.tail = append(b.tail, p...)
		if over := len(b.tail) - stderrKeep; over > 0 {
			b.tail = append(b.tail[:0], b.tail[over:]...)
			b.dropped = true
		}
	}
	return n, nil
}

func (b *headTail) String() string {
	if b.dropped {
		return string(b.head) + "\n" + string(b.tail)
	}
	return string(b.head) + string(b.tail)
}

// runResult is what a finished tool run left behind.
type runResult struct {
	stderr string
	// interrupted is non-nil when the run was stopped by the caller's context
	// or by the timeout; it is the error to return.
	interrupted error
	// exitErr is the process error (non-zero exit, signal) when not
	// interrupted.
	exitErr error
}

// runTool runs bin with args in dir with a minimal environment (LC_ALL=C only), no stdin, and
// a timeout. onStdout, if not nil, consumes stdout until EOF (it must read to
// EOF or return an error, after which the process is killed). name is used in
// error messages ("ffmpeg", "ffprobe").
func runTool(ctx context.Context, timeout time.Duration, name, bin, dir string, args []string, onStdout func(io.Reader) error) (runResult, error) {
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cmd := exec.CommandContext(runCtx, bin, args...)
	cmd.Dir = dir
	// A minimal environment: ffmpeg honours FFREPORT (writes a log file where
	// the variable says), http_proxy and friends; none of it is wanted.
	cmd.Env = []string{"LC_ALL=C"}
	cmd.Stdin = nil // /dev/null
	var stderr headTail
	cmd.Stderr = &stderr
	// If ffmpeg is killed but something keeps the pipes open, do not hang.
	cmd.WaitDelay = 5 * time.Second
	// If the worker process dies (even by SIGKILL), the kernel kills ffmpeg
	// too, so a crashed worker leaves no orphan encoding for nobody.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	var stdout io.ReadCloser
	if onStdout != nil {
		var err error
		stdout, err = cmd.StdoutPipe()
		if err != nil {
			return runResult{}, fmt.Errorf("abr: %s: %w", name, err)
		}
	}
	if err := cmd.Start(); err != nil {
		return runResult{}, fmt.Errorf("abr: start %s: %w", name, err)
	}
	var consumeErr error
	if onStdout != nil {
		consumeErr = onStdout(stdout)
		if consumeErr != nil {
			cancel() // kill the process; its output is unusable
		}
		// Drain whatever is left so the process never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, stdout)
	}
	waitErr := cmd.Wait()

	res := runResult{stderr: stderr.String()}
	switch {
	case ctx.Err() != nil:
		res.interrupted = fmt.Errorf("abr: %s stopped: %w", name, context.Cause(ctx))
	case errors.Is(runCtx.Err(), context.DeadlineExceeded):
		res.interrupted = fmt.Errorf("abr: %s timed out after %s: %w", name, timeout, context.DeadlineExceeded)
	case consumeErr != nil:
		return res, consumeErr
	case waitErr != nil:
		res.exitErr = waitErr
	}
	return res, nil
}

// failed reports whether the run did not succeed.
func (r runResult) failed() bool { return r.interrupted != nil || r.exitErr != nil }

// excerpt condenses tool stderr into one short, printable line fit for an
// end user: ffmpeg's "[demuxer @ 0x...]" prefixes are removed, file paths
// are replaced by neutral words, at most three distinct lines are kept
// (the first two and the last), and the result is capped at 240 bytes.
func excerpt(stderr string, paths map[string]string) string {
	var lines []string
	seen := map[string]bool{}
	for raw := range strings.SplitSeq(stderr, "\n") {
		l := cleanLine(raw, paths)
		if l == "" || seen[l] {
			continue
		}
		seen[l] = true
		lines = append(lines, l)
	}
	if len(lines) > 3 {
		lines = append(lines[:2], lines[len(lines)-1])
	}
	s := strings.Join(lines, "; ")
	if s == "" {
		s = "no error output"
	}
	const maxLen = 240
	if len(s) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func cleanLine(l string, paths map[string]string) string {
	l = strings.TrimSpace(l)
	// Strip "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d6697af380] " (possibly nested).
	for strings.HasPrefix(l, "[") {
		end := strings.Index(l, "] ")
		if end < 0 || !strings.Contains(l[:end], " @ ") {
			break
		}
		l = strings.TrimSpace(l[end+2:])
	}
	for p, word := range paths {
		if p == "" {
			continue
		}
		l = strings.ReplaceAll(l, "file:"+p, word)
		l = strings.ReplaceAll(l, p, word)
	}
	// Drop control characters (stderr can echo bytes from the input).
	l = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return -1
		}
		return r
	}, l)
	if l == "Conversion failed!" {
		return ""
	}
	return strings.TrimSpace(l)
}

// blamesInput reports whether a failed run's stderr points at the input
// rather than at the machine (disk, memory, permissions, a broken build).
func blamesInput(stderr string) bool {
	machineFault := []string{
		"no space left",
		"permission denied",
		"read-only file system",
		"cannot allocate memory",
		"out of memory",
		"unknown encoder",
		"too many open files",
		"disk quota",
	}
	inputFault := []string{
		"invalid data found",
		"moov atom not found",
		"error while decoding",
		"corrupt",
		"truncat",
		"invalid nal",
		"error splitting the input",
		"could not find codec parameters",
		"decoding error",
		"end of file",
		"picture size",
		"invalid image size",
		"error reading header",
		"does not contain any stream",
		"matches no streams",
		"not on whitelist",
		"unsupported codec",
		"decoder not found",
		"packet mismatch",
		"missing reference",
		"stream ends prematurely",
	}
	s := strings.ToLower(stderr)
	for _, m := range machineFault {
		if strings.Contains(s, m) {
			return false
		}
	}
	for _, m := range inputFault {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// exitedNormally reports whether err is a plain non-zero exit (as opposed to
// a signal, e.g. the OOM killer, or a failure to wait).
func exitedNormally(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.Exited()
}
